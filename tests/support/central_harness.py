"""Run central in-process against a real database (and a real Kafka cluster when given)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from fastapi.testclient import TestClient

from central.api import create_app
from central.app import Central, bootstrap
from central.services import accounts
from central.settings import Settings, load
from central.uow import Clock
from harness.kafka_security import KafkaCluster
from harness.waiting import eventually

SECRET = "integration-test-secret-0123456789abcdef"
ADMIN_PASSWORD = "admin-password-1"


@dataclass
class Harness:
    central: Central
    client: TestClient

    def token(self, username: str, password: str) -> str:
        response = self.client.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def as_user(self, username: str, password: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username, password)}"}

    def admin(self) -> dict[str, str]:
        return self.as_user("admin", ADMIN_PASSWORD)

    def call(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        response = self.client.request(method, path, headers=headers, **kw)
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json() if response.content else None


@contextmanager
def running_central(
    database_url: str,
    kafka: KafkaCluster | None = None,
    prefix: str = "",
    clock: Clock | None = None,
    **settings: Any,
) -> Iterator[Harness]:
    """Central with a relay to `kafka` (e.g. the `kafka_cluster` fixture), logged in there as
    a central process would be: the cluster's admin as its admin, a relay user of its own;
    on `clock` (a test's FakeClock) when one is given."""
    central = bootstrap(central_settings(database_url, kafka, prefix, **settings), clock=clock)
    try:
        if not _has_admin(central):
            accounts.create_user(central.uow(), accounts.NewUser("admin", ADMIN_PASSWORD, "admin"))
        with TestClient(create_app(central)) as client:
            yield Harness(central, client)
    finally:
        central.close()


def central_settings(
    database_url: str, kafka: KafkaCluster | None = None, prefix: str = "", **settings: Any
) -> Settings:
    """Settings loaded and checked as `central serve` loads them, from `kafka`'s logins."""
    if isinstance(kafka, str):
        raise TypeError("pass the KafkaCluster (the kafka_cluster fixture), not a bootstrap string")
    overrides = {
        "database_url": database_url,
        "topic_prefix": prefix,
        "jwt_secret": SECRET,
        "relay": kafka is not None,
        "relay_poll_seconds": 0.2,
        **settings,
    }
    return load(overrides, env=kafka.central_env() if kafka is not None else {})


def _has_admin(central: Central) -> bool:
    return any(u["username"] == "admin" for u in accounts.list_users(central.uow()))


@contextmanager
def mariadb_database(base_url: str) -> Iterator[str]:
    """A fresh, uniquely named database on the test MariaDB server, dropped afterwards."""
    parsed = urlparse(base_url)
    name = "t_" + uuid.uuid4().hex[:12]
    with admin_connection(base_url) as connection:
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            yield (
                f"mysql://{parsed.username}:{parsed.password}@{parsed.hostname}:{parsed.port}/"
                f"{name}"
            )
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


@contextmanager
def admin_connection(url: str) -> Iterator[Any]:
    """A PyMySQL connection (autocommit) as the user in `url`, of its own: outside any pool
    under test."""
    import pymysql

    parsed = urlparse(url)
    connection = pymysql.connect(
        host=parsed.hostname,
        port=parsed.port or 3306,
        user=parsed.username,
        password=parsed.password or "",
        autocommit=True,
    )
    try:
        yield connection
    finally:
        connection.close()


def mysql_base_url() -> str:
    url = os.environ.get("INVCTL_TEST_MYSQL_URL", "")
    if not url:
        raise RuntimeError(
            "INVCTL_TEST_MYSQL_URL is not set: run the suite with `scripts/dev test`, "
            "which starts a throwaway MariaDB server"
        )
    return url


def read_events(
    kafka: KafkaCluster, topics: list[str], expected: int, timeout: float = 30.0
) -> list[tuple[str, str, dict[str, Any]]]:
    """Every record on the topics from the beginning, once at least `expected` arrived."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=500,
        **kafka.admin_config(),
    )

    def ids(topic: str) -> set[int]:
        return eventually(lambda: consumer.partitions_for_topic(topic), what=f"{topic} exists")

    try:
        partitions = [TopicPartition(topic, p) for topic in topics for p in sorted(ids(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []

        def arrived() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            return len(records) >= expected

        eventually(arrived, timeout, f"{expected} records on {topics}", interval=0)
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        records.sort(key=lambda r: (r.topic, r.partition, r.offset))
        return [(r.topic, r.key.decode(), json.loads(r.value)) for r in records]
    finally:
        consumer.close()


@contextmanager
def served(harness: Harness) -> Iterator[str]:
    """Serve the harness's central over real HTTP on a free loopback port; yields its URL."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(harness.central, manage_relay=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, 10, "uvicorn started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
