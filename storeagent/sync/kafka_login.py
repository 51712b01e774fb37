"""How the agent logs in to Kafka, and a check of that login made without kafka-python's
connection machinery.

With SASL_SSL the agent is the Kafka user `invwire.identity.kafka_username(store, key)` and
its password is the store's API key: one secret per store. `KafkaLogin` never shows the
password (repr, summary) and `client_config()` is the only place it leaves.

Why check_login() exists: kafka-python 3.0.12 does not say why it could not connect. A login
the broker refuses while the consumer bootstraps ends as "KafkaTimeoutError: Unable to
bootstrap" (the bootstrap retries every failure until its deadline), and the broker's error
answer, which it sends just before closing the connection, is often dropped with the close.
So when a secured connection fails, the adapter asks the broker itself: TLS, SaslHandshake,
the SCRAM exchange, reading each answer to its end, and nothing else.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kafka.errors import KafkaError, for_code
from kafka.net.sasl import get_sasl_mechanism
from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

from invwire.identity import kafka_username
from invwire.kafka import PLAINTEXT, SASL_SSL, login_config

SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class KafkaLogin:
    """PLAINTEXT (no login), or SASL_SSL: TLS verified against `ca_file` (the system's CAs
    when None), with the broker's host name checked, and SCRAM as `username`."""

    protocol: str = PLAINTEXT
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    mechanism: str = SCRAM_MECHANISM

    @classmethod
    def for_store(
        cls, protocol: str, store_id: str, api_key: str | None, ca_file: str | None = None
    ) -> KafkaLogin:
        if protocol != SASL_SSL:
            return cls()
        if not api_key:
            raise ValueError("SASL_SSL needs the store's API key")
        return cls(SASL_SSL, kafka_username(store_id, api_key), api_key, ca_file)

    @property
    def secure(self) -> bool:
        return self.protocol == SASL_SSL

    def client_config(self) -> dict[str, Any]:
        """kafka-python's connection settings. The result holds the password: never log it."""
        return login_config(
            self.protocol,
            mechanism=self.mechanism,
            username=self.username,
            password=self.password,
            ca_file=self.ca_file,
        )


class LoginCheck(NamedTuple):
    refused: bool  # the broker answered, and its answer was no
    reason: str


def check_login(
    server: str, login: KafkaLogin, *, client_id: str, timeout_s: float = 3.0
) -> LoginCheck:
    """Log in to `server` (HOST:PORT) once and tell whether the broker refused the login.
    Not refused means accepted, or no answer (unreachable, TLS failed): `reason` says which."""
    host, port = _host_port(server)
    try:
        context = ssl.create_default_context(cafile=login.ca_file)
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            return _authenticate(_Exchange(tls, client_id), login)
    except ssl.SSLCertVerificationError as exc:
        return LoginCheck(False, f"TLS: {exc.verify_message or exc}")
    except (OSError, KafkaError, ValueError) as exc:
        return LoginCheck(False, f"{type(exc).__name__}: {exc}")


def _authenticate(exchange: _Exchange, login: KafkaLogin) -> LoginCheck:
    offered = exchange.call(SaslHandshakeRequest(mechanism=login.mechanism, version=1))
    if offered.error_code or login.mechanism not in offered.mechanisms:
        return LoginCheck(True, f"the broker does not offer {login.mechanism}")
    scram = get_sasl_mechanism(login.mechanism)(**login.client_config())
    while not scram.is_done():
        request = SaslAuthenticateRequest(auth_bytes=scram.auth_bytes(), version=1)
        answer = exchange.call(request)
        if answer.error_code:
            return LoginCheck(True, answer.error_message or for_code(answer.error_code).__name__)
        scram.receive(answer.auth_bytes)
    return LoginCheck(False, "the broker accepted the login")


class _Exchange:
    """Blocking request/answer over one socket, framed by kafka-python's protocol parser."""

    def __init__(self, sock: socket.socket, client_id: str) -> None:
        self._sock = sock
        self._protocol = KafkaProtocol(client_id=client_id)

    def call(self, request: Any) -> Any:
        self._protocol.send_request(request)
        self._sock.sendall(self._protocol.send_bytes())
        while True:
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError("the broker closed the connection without an answer")
            answers = self._protocol.receive_bytes(data)
            if answers:
                return answers[0][1]


def _host_port(server: str) -> tuple[str, int]:
    host, _, port = server.strip().rpartition(":")
    return host.strip("[]"), int(port)
