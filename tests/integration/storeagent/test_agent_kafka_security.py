"""`storeagent run` against a real TLS + SCRAM-SHA-512 broker with ACLs (scripts/kafka
--security sasl_ssl): the store logs in as its own Kafka user with its API key; a wrong key,
a key revoked while it runs and missing ACLs are reported by /readyz and /sync/status as
`kafka.auth_failed` / `kafka.not_authorized`, never as a crash, and a restored credential
brings the sync back.

The store's SCRAM credential is made here as central makes it when it issues a key, and its
ACLs are central's own (central.domain.kafka_access.store_grants): READ and DESCRIBE on the
three prefixed topics, READ on the group storeagent.<id>."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import UserScramCredentialDeletion, UserScramCredentialUpsertion

from central.domain.kafka_access import store_grants
from central.kafka import grant_acl
from harness.kafka_security import read_client_env
from harness.topics import create_topics
from harness.waiting import eventually
from invwire.identity import kafka_username
from tests.support.agent_fakes import product_event, stock_event

MECHANISM = "SCRAM-SHA-512"
REVOCATION_DEADLINE_S = 90  # the broker re-authenticates every 60 s; then the agent says so


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class SecureKafka:
    bootstrap: str
    ca_file: str
    admin_config: dict[str, Any]
    prefix: str

    def admin(self) -> KafkaAdminClient:
        return KafkaAdminClient(bootstrap_servers=self.bootstrap, **self.admin_config)

    def provision(self, store_id: str, api_key: str, *, acls: bool = True) -> str:
        """The key's SCRAM user and (unless `acls` is False) its ACLs, as central makes them."""
        user = kafka_username(store_id, api_key)
        with self.admin() as admin:
            failed = admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(user, MECHANISM, api_key)]
            )
            assert failed == {user: None}
            if acls:
                grants = store_grants(store_id, self.prefix)
                result = admin.create_acls([grant_acl(user, grant) for grant in grants])
                assert not result["failed"]
        return user

    def delete_credential(self, user: str) -> None:
        with self.admin() as admin:
            admin.alter_user_scram_credentials([UserScramCredentialDeletion(user, MECHANISM)])

    def publish(self, *events: tuple[str, bytes, bytes]) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, **self.admin_config)
        try:
            for topic, key, value in events:
                producer.send(self.prefix + topic, key=key, value=value).get(timeout=10)
        finally:
            producer.close()


@pytest.fixture(scope="module")
def secure_kafka(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_script: Callable[..., subprocess.CompletedProcess[str]],
    free_kafka_port: Callable[[int], int],
) -> Iterator[SecureKafka]:
    """Our own 1-node TLS + SCRAM broker with ACLs, and the wire topics on it."""
    port = next(p for p in iter(lambda: free_kafka_port(1), None) if port_free(p + 200))
    cluster = tmp_path_factory.mktemp("kafka-sasl-ssl")
    started = kafka_script(
        "start", "--dir", str(cluster), "--port", str(port), "--security", "sasl_ssl"
    )
    if started.returncode != 0:
        pytest.fail(f"scripts/kafka start --security sasl_ssl failed:\n{started.stderr}")
    try:
        env = read_client_env(cluster / "client.env")
        admin_config = {
            "security_protocol": env["INVCTL_KAFKA_SECURITY_PROTOCOL"],
            "sasl_mechanism": env["INVCTL_KAFKA_SASL_MECHANISM"],
            "sasl_plain_username": env["INVCTL_KAFKA_USERNAME"],
            "sasl_plain_password": Path(env["INVCTL_KAFKA_PASSWORD_FILE"]).read_text().strip(),
            "ssl_cafile": env["INVCTL_KAFKA_CA_FILE"],
        }
        kafka = SecureKafka(env["INVCTL_KAFKA"], env["INVCTL_KAFKA_CA_FILE"], admin_config, "sec.")
        create_topics(kafka.bootstrap, kafka.prefix, **admin_config)
        yield kafka
    finally:
        kafka_script("stop", "--dir", str(cluster))


class Agent:
    """`storeagent run` on the secure broker, as the store `store_id` with `api_key`."""

    def __init__(self, kafka: SecureKafka, store_id: str, api_key: str, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        key_file = home / "api.key"
        key_file.write_text(api_key + "\n")
        key_file.chmod(0o600)
        self.api_key = api_key
        command = [
            *(sys.executable, "-c", "from storeagent.cli import main; main()", "run"),
            *("--store-id", store_id, "--kafka", kafka.bootstrap, "--topic-prefix", kafka.prefix),
            *("--db", str(home / "replica.db"), "--listen", "127.0.0.1:0"),
            *("--api-key-file", str(key_file), "--heartbeat-seconds", "0"),
        ]
        env = {
            **os.environ,
            "STOREAGENT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "STOREAGENT_KAFKA_CA_FILE": kafka.ca_file,
        }
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        started = eventually(lambda: self._event("agent.started"), 30, "agent.started logged")
        self.url = f"http://127.0.0.1:{started['port']}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines)]

    def _event(self, name: str) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            pytest.fail(f"the agent exited with {self.proc.returncode}: {self.lines}")
        return next((e for e in self.events() if e["event"] == name), None)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def readyz(self) -> httpx.Response:
        return httpx.get(f"{self.url}/readyz", timeout=5)

    def problems(self) -> list[str]:
        status = httpx.get(f"{self.url}/sync/status", timeout=5).json()
        return [problem["code"] for problem in status["problems"]]

    def failures(self) -> int:
        """Attempts refused so far in the current problem."""
        status = httpx.get(f"{self.url}/sync/status", timeout=5).json()
        return int(status["problems"][0]["failures"])

    def readyz_problems(self) -> list[str]:
        response = self.readyz()
        if response.status_code == 200:
            return []
        return [p["code"] for p in response.json()["error"]["details"]["problems"]]

    def quantity(self, sku: str) -> int | None:
        response = httpx.get(f"{self.url}/stock/{sku}", timeout=5)
        return response.json()["quantity"] if response.status_code == 200 else None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        return self.proc.returncode


@pytest.fixture
def start_agent(secure_kafka: SecureKafka, tmp_path: Path) -> Iterator[Callable[[str, str], Agent]]:
    agents: list[Agent] = []

    def start(store_id: str, api_key: str) -> Agent:
        agent = Agent(secure_kafka, store_id, api_key, tmp_path / store_id)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()
        assert agent.api_key not in "".join(agent.lines)


def assert_stays(check: Callable[[], bool], seconds: float, what: str) -> None:
    """`check` holds throughout `seconds` (for something that must not happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.2)


def new_store() -> tuple[str, str]:
    return f"s-{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(32)


def test_with_its_key_the_agent_syncs_and_a_revoked_key_is_reported_then_recovered(
    secure_kafka: SecureKafka, start_agent: Callable[[str, str], Agent]
):
    store_id, api_key = new_store()
    user = secure_kafka.provision(store_id, api_key)
    sku = f"SEC-{store_id.upper()}"
    secure_kafka.publish(product_event(sku=sku), stock_event(sku=sku, quantity=5, stock_version=1))
    agent = start_agent(store_id, api_key)

    eventually(lambda: agent.readyz().status_code == 200, 60, "ready over TLS + SCRAM")
    assert agent.quantity(sku) == 5
    started = agent._event("agent.started") or {}
    assert (started["kafka_security_protocol"], started["kafka_user"]) == ("SASL_SSL", user)

    secure_kafka.delete_credential(user)
    revoked_at = time.monotonic()
    eventually(
        lambda: agent.readyz_problems() == ["kafka.auth_failed"],
        REVOCATION_DEADLINE_S,
        "the revoked key reported by /readyz",
        interval=0.5,
        ignoring=(httpx.HTTPError,),
    )
    reported_s = time.monotonic() - revoked_at
    print(f"revocation reported {reported_s:.1f} s after the credential was deleted")
    assert agent.problems() == ["kafka.auth_failed"]
    assert agent.alive()

    secure_kafka.publish(stock_event(sku=sku, quantity=4, stock_version=2))
    assert_stays(lambda: agent.quantity(sku) == 5, 3, "no event reaches a revoked store")
    auth_lines = [e for e in agent.events() if e["event"] == "kafka.auth_failed"]
    assert 1 <= len(auth_lines) <= 2  # at most once a minute, not once per attempt

    secure_kafka.provision(store_id, api_key, acls=False)  # the key restored; ACLs were kept
    eventually(lambda: agent.quantity(sku) == 4, 60, "the sync back once the key works again")
    eventually(lambda: agent.readyz().status_code == 200, 30, "ready again")
    assert agent.alive()


def test_a_wrong_key_is_reported_as_kafka_auth_failed_and_the_agent_keeps_running(
    secure_kafka: SecureKafka, start_agent: Callable[[str, str], Agent]
):
    store_id, api_key = new_store()
    secure_kafka.provision(store_id, api_key)
    agent = start_agent(store_id, api_key + "-wrong")

    eventually(lambda: agent.readyz_problems() == ["kafka.auth_failed"], 60, "auth failure")
    response = agent.readyz()
    assert response.status_code == 503
    body = response.json()["error"]
    assert body["details"]["checks"]["kafka_access"] is False
    assert "kafka.auth_failed" in body["message"]
    failures = agent.failures()
    eventually(lambda: agent.failures() > failures, 40, "another attempt, refused again")
    assert agent.alive()
    events = [e["event"] for e in agent.events()]
    assert events.count("kafka.auth_failed") == 1  # logged once, not once per attempt
    assert "consumer.started" not in events and "consumer.crashed" not in events


def test_a_key_without_acls_is_reported_as_kafka_not_authorized(
    secure_kafka: SecureKafka, start_agent: Callable[[str, str], Agent]
):
    store_id, api_key = new_store()
    secure_kafka.provision(store_id, api_key, acls=False)
    agent = start_agent(store_id, api_key)

    eventually(
        lambda: agent.readyz_problems() == ["kafka.not_authorized"], 60, "missing ACLs reported"
    )
    assert agent.problems() == ["kafka.not_authorized"]
    assert agent.alive()
