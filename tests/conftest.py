"""Shared test setup: markers by folder, the session Kafka cluster and small id helpers."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.kafka_security import KafkaCluster
from tests.support.processes import port_free

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS_DIR = REPO_ROOT / "scripts"
KAFKA_SCRIPT = SCRIPTS_DIR / "kafka"
TESTS_DIR = REPO_ROOT / "tests"
FOLDER_MARKERS = frozenset({"unit", "integration", "e2e"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(TESTS_DIR):
            folder = item.path.relative_to(TESTS_DIR).parts[0]
            if folder in FOLDER_MARKERS:
                item.add_marker(folder)


class KafkaScript:
    """Runs scripts/kafka with this interpreter, so its readiness check can use kafka-python."""

    path = KAFKA_SCRIPT

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(self.path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def free_base_port(nodes: int = 1) -> int:
    """A base port P with P..P+nodes-1 (brokers), P+100.. (controllers) and P+200..
    (inter-broker, sasl_ssl) free on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        ports = [base + offset + i for offset in (0, 100, 200) for i in range(nodes)]
        if all(port_free(port) for port in ports):
            return base
    raise RuntimeError("no free port range for a Kafka cluster")


@pytest.fixture(scope="session")
def kafka_script() -> KafkaScript:
    """`kafka_script("status", "--dir", d)` runs scripts/kafka; `.path` is the script itself."""
    return KafkaScript()


@pytest.fixture(scope="session")
def free_kafka_port() -> Callable[[int], int]:
    """`free_kafka_port(nodes)` picks a base port for a cluster of that many nodes."""
    return free_base_port


@pytest.fixture(scope="session")
def kafka_cluster(
    tmp_path_factory: pytest.TempPathFactory, kafka_script: KafkaScript
) -> Iterator[KafkaCluster]:
    """One single-node cluster shared by the test run, secure like production (TLS,
    SCRAM-SHA-512 logins, ACLs): `.bootstrap`, `.env` (its client.env), `.admin_config()`.

    INVCTL_TEST_KAFKA_ENV=DIR/client.env uses a running cluster instead (its INVCTL_KAFKA, or
    INVCTL_TEST_KAFKA if set); INVCTL_TEST_KAFKA=host:port alone, a running plaintext broker.
    """
    home = tmp_path_factory.mktemp("kafka-clients")
    external = os.environ.get("INVCTL_TEST_KAFKA", "")
    env_file = os.environ.get("INVCTL_TEST_KAFKA_ENV", "")
    if env_file:
        yield KafkaCluster.from_client_env(Path(env_file), home, external)
        return
    if external:
        yield KafkaCluster.plaintext(external, home)
        return
    cluster_dir = tmp_path_factory.mktemp("kafka")
    started = kafka_script("start", "--dir", str(cluster_dir), "--port", str(free_base_port()))
    if started.returncode != 0:
        pytest.fail(
            f"scripts/kafka start failed (exit {started.returncode}):\n{started.stderr}",
            pytrace=False,
        )
    try:
        yield KafkaCluster.from_client_env(cluster_dir / "client.env", home)
    finally:
        kafka_script("stop", "--dir", str(cluster_dir))


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_cluster: KafkaCluster) -> str:
    """The session cluster's bootstrap servers; its clients need `kafka_cluster`'s logins."""
    return kafka_cluster.bootstrap


@pytest.fixture(scope="session")
def galera_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """One 3-node MariaDB Galera cluster for the test run (scripts/mariadb start --nodes 3, on
    a free port range), stopped at the end: its nodes' server URLs, node 1 first. Tests make
    their own database on it (tests.support.galera.galera_database).

    INVCTL_TEST_GALERA_URLS=url1,url2,url3 uses a running cluster instead.
    """
    from tests.support.galera import free_galera_port, mariadb_script, start_cluster

    external = os.environ.get("INVCTL_TEST_GALERA_URLS", "")
    if external:
        yield [url.strip() for url in external.split(",") if url.strip()]
        return
    cluster_dir = tmp_path_factory.mktemp("galera")
    try:
        yield start_cluster(cluster_dir, free_galera_port())
    finally:
        mariadb_script("stop", "--dir", str(cluster_dir))


@pytest.fixture
def unique_id() -> str:
    """12 random hex characters, for names that must not collide across tests and runs."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def topic_prefix(unique_id: str) -> str:
    """A topic name prefix like `t1a2b3c4d.`, isolating this test's topics on a shared broker."""
    return f"t{unique_id[:8]}."
