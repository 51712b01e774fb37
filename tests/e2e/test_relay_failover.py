"""Two `central serve` processes on one database (SQLite, MariaDB) and the shared Kafka: the
relay lease's holder is SIGKILLed while stock keeps changing; the other process takes the
lease over and publishes, and no event is lost or overtaken by an older one."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from harness.relay_lease import Lease, log_events, read_lease
from harness.waiting import eventually
from tests.support.central_harness import mariadb_database, mysql_base_url, read_events
from tests.support.processes import (
    ADMIN,
    ADMIN_PASSWORD,
    BIN,
    Service,
    Stack,
    free_port,
    stack,
    wait_http,
)

SKUS = ("MILK-1L", "EGGS-12")
BEFORE, AFTER = 4, 6  # stock changes of each SKU before and after the kill


def two_centrals(s: Stack) -> tuple[Service, Service]:
    """Two `central serve` processes of the stack, on one database (the stack stops them)."""
    first = s.start_central()
    port = free_port()
    second = s.spawn(
        "central-2",
        [str(BIN / "central"), "serve", "--port", str(port)],
        f"http://127.0.0.1:{port}",
        s.central_env(),
    )
    wait_http(f"{second.url}/readyz", process=second.process)
    return first, second


def admin_client(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    answer = client.post("/api/v1/auth/token", data={"username": ADMIN, "password": ADMIN_PASSWORD})
    answer.raise_for_status()
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return client


def set_stock(client: httpx.Client, sku: str, quantity: int) -> None:
    client.put(f"/api/v1/stock/{sku}", json={"quantity": quantity}).raise_for_status()


def held_lease(database_url: str) -> Lease | None:
    lease = read_lease(database_url)
    return lease if lease is not None and lease.held else None


def first_seen_in_order(versions: list[int]) -> bool:
    """Every record is a version already seen (a re-publish) or newer than all seen before:
    a consumer that drops stale versions never drops one it has not had."""
    newest = 0
    for version in versions:
        if version > newest + 1:
            return False
        newest = max(newest, version)
    return True


@pytest.fixture(params=["sqlite", "mariadb"])
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'central.db'}"
        return
    with mariadb_database(mysql_base_url()) as url:
        yield url


def test_the_lease_holder_killed_the_other_central_publishes_every_event_in_order(
    tmp_path, kafka_cluster, topic_prefix, database_url
):
    with stack(tmp_path, kafka_cluster, topic_prefix, database_url) as s:
        first, second = two_centrals(s)
        s.login_admin()
        category = s.invctl_json("category", "add", "Dairy")
        for sku in SKUS:
            s.invctl(
                "product",
                "add",
                sku,
                "--name",
                sku,
                "--price",
                "1.00",
                "--category",
                str(category["id"]),
            )
        by_pid = {first.process.pid: first, second.process.pid: second}
        client = admin_client(first.url)
        for quantity in range(1, BEFORE + 1):
            for sku in SKUS:
                set_stock(client, sku, quantity)
        holder_lease = eventually(lambda: held_lease(database_url), what="a relay holds the lease")
        holder = by_pid[holder_lease.pid]
        survivor = second if holder is first else first

        killed_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        holder.stop(signal.SIGKILL)
        client = admin_client(survivor.url)
        for quantity in range(BEFORE + 1, BEFORE + AFTER + 1):
            for sku in SKUS:
                set_stock(client, sku, quantity)

        def taken_over() -> bool:
            lease = read_lease(database_url)
            return lease is not None and lease.pid == survivor.process.pid and lease.held

        eventually(taken_over, 60, "the surviving central holds the lease")
        total = len(SKUS) * (BEFORE + AFTER)
        records = read_events(kafka_cluster, [f"{topic_prefix}inventory-updated"], total, 60)
        for sku in SKUS:
            versions = [e["data"]["stock_version"] for _, key, e in records if key == sku]
            assert set(versions) == set(range(1, BEFORE + AFTER + 1)), f"{sku}: none lost"
            assert first_seen_in_order(versions), f"{sku}: {versions}"
        took = [r for r in log_events(survivor.log_lines(), "relay.lease") if r["leader"]]
        assert took[-1]["owner"] == read_lease(database_url).owner
        assert took[-1]["ts"] > killed_at, "taken over after the kill, not held before it"
