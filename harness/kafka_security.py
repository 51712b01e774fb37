"""How tests, benchmarks and the processes they start reach a Kafka cluster: its client
settings (scripts/kafka's DIR/client.env), kafka-python arguments for its admin, and the logins
central and the store agents get, with store users made the way central makes them."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invwire.identity import kafka_username
from invwire.kafka import PLAINTEXT, SASL_SSL, login_config

if TYPE_CHECKING:
    from central.kafka import KafkaAdminIdentities

RELAY_USER = "central-relay"


def read_client_env(path: Path) -> dict[str, str]:
    """A client.env as a dict: `#` comment lines, then KEY=VALUE with shell-quoted values."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = " ".join(shlex.split(value))
    return env


@dataclass(frozen=True)
class KafkaCluster:
    """A running cluster as its clients see it.

    `env` holds its client.env (INVCTL_KAFKA_SECURITY_PROTOCOL and, for SASL_SSL, the
    mechanism, the CA file and the admin's username and password file); `home` is a private
    directory for files made for its clients, such as the relay's password file.
    """

    bootstrap: str
    env: Mapping[str, str]
    home: Path

    @classmethod
    def from_client_env(cls, path: Path, home: Path, bootstrap: str = "") -> KafkaCluster:
        """The cluster described by `path` (its INVCTL_KAFKA unless `bootstrap` is given)."""
        env = read_client_env(path)
        return cls(bootstrap or env["INVCTL_KAFKA"], env, home)

    @classmethod
    def plaintext(cls, bootstrap: str, home: Path) -> KafkaCluster:
        return cls(bootstrap, {"INVCTL_KAFKA_SECURITY_PROTOCOL": PLAINTEXT}, home)

    @property
    def protocol(self) -> str:
        return self.env.get("INVCTL_KAFKA_SECURITY_PROTOCOL", PLAINTEXT).upper()

    @property
    def secure(self) -> bool:
        return self.protocol == SASL_SSL

    @property
    def ca_file(self) -> str:
        return self.env.get("INVCTL_KAFKA_CA_FILE", "")

    @property
    def mechanism(self) -> str:
        return self.env.get("INVCTL_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")

    def admin_config(self) -> dict[str, Any]:
        """kafka-python arguments (all but bootstrap_servers) to log in as the cluster's admin."""
        if not self.secure:
            return {"security_protocol": PLAINTEXT}
        password = Path(self.env["INVCTL_KAFKA_PASSWORD_FILE"]).read_text().strip()
        return self.login_config(self.env["INVCTL_KAFKA_USERNAME"], password)

    def login_config(self, username: str, password: str) -> dict[str, Any]:
        """kafka-python arguments to log in as `username` (nothing to log in on PLAINTEXT)."""
        return login_config(
            self.protocol,
            mechanism=self.mechanism,
            username=username,
            password=password,
            ca_file=self.ca_file or None,
        )

    def store_config(self, store_id: str, api_key: str) -> dict[str, Any]:
        """kafka-python arguments to log in as a store's key, as its agent does."""
        return self.login_config(kafka_username(store_id, api_key), api_key)

    def central_env(self) -> dict[str, str]:
        """Central's Kafka settings: the cluster's admin as its admin credential, and a relay
        user of its own (RELAY_USER, its password in a 0600 file under `home`), whose SCRAM
        credential and ACLs central makes itself."""
        env = {"INVCTL_KAFKA": self.bootstrap, "INVCTL_KAFKA_SECURITY_PROTOCOL": self.protocol}
        if not self.secure:
            return env
        return {
            **env,
            "INVCTL_KAFKA_SASL_MECHANISM": self.mechanism,
            "INVCTL_KAFKA_CA_FILE": self.ca_file,
            "INVCTL_KAFKA_ADMIN_USERNAME": self.env["INVCTL_KAFKA_USERNAME"],
            "INVCTL_KAFKA_ADMIN_PASSWORD_FILE": self.env["INVCTL_KAFKA_PASSWORD_FILE"],
            "INVCTL_KAFKA_USERNAME": RELAY_USER,
            "INVCTL_KAFKA_PASSWORD_FILE": str(self.relay_password_file()),
        }

    def agent_env(self) -> dict[str, str]:
        """A store agent's Kafka settings but the bootstrap servers (its --kafka): the protocol
        and the CA. It logs in with its API key, whose user central made with the store."""
        env = {"STOREAGENT_KAFKA_SECURITY_PROTOCOL": self.protocol}
        if self.secure and self.ca_file:
            env["STOREAGENT_KAFKA_CA_FILE"] = self.ca_file
        return env

    def relay_password_file(self) -> Path:
        """The relay user's password, the same for every client of this cluster: each central
        sets RELAY_USER's SCRAM credential to it when it starts, so test processes sharing a
        broker (pytest-xdist workers) with passwords of their own would lock each other's
        relays out. Derived from the admin's password, which only the cluster's clients hold."""
        path = self.home / "relay.password"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self._relay_password() + "\n")
        return path

    def _relay_password(self) -> str:
        if not self.secure:
            return secrets.token_hex(16)
        admin = Path(self.env["INVCTL_KAFKA_PASSWORD_FILE"]).read_text().strip()
        return hmac.new(admin.encode(), RELAY_USER.encode(), hashlib.sha256).hexdigest()[:32]

    def identities(self, prefix: str = "") -> KafkaAdminIdentities | None:
        """Central's adapter that makes store users and ACLs as the admin; None on PLAINTEXT,
        where central makes none either."""
        if not self.secure:
            return None
        from central.kafka import KafkaAdminIdentities

        return KafkaAdminIdentities(self.bootstrap, self.admin_config(), self.mechanism, prefix)

    def provision_store(self, store_id: str, api_key: str, prefix: str = "") -> str:
        """Make the key's SCRAM user and its ACLs on the `prefix` topics as central does when a
        store is added (nothing on PLAINTEXT); the username."""
        from central.domain.kafka_access import store_grants

        username = kafka_username(store_id, api_key)
        identities = self.identities(prefix)
        if identities is not None:
            identities.provision(username, api_key, store_grants(store_id, prefix))
        return username
