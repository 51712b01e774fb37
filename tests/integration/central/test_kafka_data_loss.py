"""Kafka lost central's topics: the relay says it is failing, re-creates the topics, drains
its backlog, republishes central's whole state by itself, and a store bootstrapped afterwards
holds every category, product and stock row central holds. `central republish` does the same
on demand. Real broker, real databases, a real `storeagent run`."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from central.models import Outbox
from central.services.republish import Republished, republish
from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from invwire.events import parse_record
from invwire.topics import TOPICS
from tests.support.central_harness import SECRET, Harness, running_central, served
from tests.support.processes import BIN, stack

SKUS = [f"SKU-{n:02d}" for n in range(10)]


def seed(h: Harness, admin: dict[str, str]) -> None:
    """Two categories, ten products, eight of them stocked (two never had stock set)."""
    ids = [h.call("POST", "/api/v1/categories", admin, json={"name": n})["id"] for n in "AB"]
    for n, sku in enumerate(SKUS):
        product = {"sku": sku, "name": sku, "price": f"{n + 1}.50", "category_id": ids[n % 2]}
        h.call("POST", "/api/v1/products", admin, json=product)
        if n < 8:
            h.call("PUT", f"/api/v1/stock/{sku}", admin, json={"quantity": 10 + n})
    h.call("PATCH", f"/api/v1/products/{SKUS[0]}", admin, json={"price": "9.99"})


def delete_topics(kafka: KafkaCluster, prefix: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=kafka.bootstrap, client_id="test-data-loss", **kafka.admin_config()
    )
    names = {prefix + topic for topic in TOPICS}
    try:
        admin.delete_topics(sorted(names))
        eventually(lambda: not names & set(admin.list_topics()), 60, "topics deleted")
    finally:
        admin.close()


def relay_word(h: Harness) -> tuple[int, str]:
    answer = h.client.get("/readyz")
    return answer.status_code, answer.json()["checks"]["relay"]


def relay_failing_metric(h: Harness) -> float:
    text = h.client.get("/metrics").text
    return next(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "invctl_relay_failing"
    )


def central_state(h: Harness, admin: dict[str, str]) -> dict[str, Any]:
    products = h.call("GET", "/api/v1/products?limit=1000", admin)["items"]
    categories = h.call("GET", "/api/v1/categories?limit=1000", admin)["items"]
    return _state(products, categories)


def replica_state(agent_url: str) -> dict[str, Any]:
    products = httpx.get(agent_url + "/products", timeout=10).json()["items"]
    categories = httpx.get(agent_url + "/categories", timeout=10).json()["items"]
    return _state(products, categories)


def _state(products: list[dict[str, Any]], categories: list[dict[str, Any]]) -> dict[str, Any]:
    fields = ("name", "price", "category_id", "active", "version", "quantity", "stock_version")
    return {
        "products": {p["sku"]: tuple(p[f] for f in fields) for p in products},
        "categories": {c["id"]: (c["name"], c["version"]) for c in categories},
    }


def test_topics_deleted_under_central_are_refilled_and_a_new_store_bootstraps_everything(
    database_url, kafka_cluster, topic_prefix, tmp_path
):
    settings = {"relay_failing_after_seconds": 1.0}
    with (
        running_central(database_url, kafka_cluster, topic_prefix, **settings) as h,
        served(h) as url,
        stack(tmp_path, kafka_cluster, topic_prefix) as processes,
    ):
        admin = h.admin()
        seed(h, admin)
        eventually(lambda: h.central.relay.backlog() == 0, 60, "the seed published")
        assert relay_word(h) == (200, "leader")
        assert h.central.relay.stats.republishes == 0  # the topics were new, the rows too

        delete_topics(kafka_cluster, topic_prefix)
        h.call("PUT", f"/api/v1/stock/{SKUS[1]}", admin, json={"quantity": 99})

        eventually(lambda: relay_word(h) == (200, "failing"), 60, "relay: failing")
        assert relay_failing_metric(h) == 1.0
        eventually(lambda: h.central.relay.stats.republishes == 1, 90, "a republish")
        eventually(lambda: h.central.relay.backlog() == 0, 90, "the backlog drained")
        eventually(lambda: relay_word(h) == (200, "leader"), 30, "relay: leader")
        assert relay_failing_metric(h) == 0.0

        store = h.call("POST", "/api/v1/stores", admin, json={"id": "north", "name": "North"})
        processes.central_url = url
        agent = processes.start_agent("north", store["api_key"])
        expected = central_state(h, admin)
        assert len(expected["products"]) == 10 and len(expected["categories"]) == 2
        eventually(lambda: replica_state(agent.url) == expected, 60, "the replica equals central")
        assert h.central.relay.stats.republishes == 1  # once, not in a loop


def test_republish_puts_one_event_per_row_at_its_current_version_in_the_outbox(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        seed(h, admin)
        with h.central.db.connection_context():
            before = Outbox.select().count()

        done = republish(h.central.uow, batch_rows=3)

        assert done == Republished(categories=2, products=10, stock=10)
        with h.central.db.connection_context():
            rows = list(Outbox.select().order_by(Outbox.id).offset(before))
        events = [parse_record(r.topic, r.key.encode(), r.payload.encode()).event for r in rows]
        assert len(events) == 22
        stock = {e.key: (e.quantity, e.stock_version) for e in events if e.type == "stock.changed"}
        expected = {sku: (10 + n, 1) if n < 8 else (0, 0) for n, sku in enumerate(SKUS)}
        assert stock == expected
        versions = {e.key: e.version for e in events if e.type == "product.updated"}
        assert versions == {sku: 2 if sku == SKUS[0] else 1 for sku in SKUS}


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'central.db'}"


def run_central(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "central"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_central_republish_prints_its_counts_and_fails_with_one_line(sqlite_url, tmp_path):
    with running_central(sqlite_url) as h:
        seed(h, h.admin())
    env = {"INVCTL_DATABASE_URL": sqlite_url, "INVCTL_JWT_SECRET": SECRET, "PATH": str(BIN)}

    done = run_central("republish", env=env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "republished 2 categories, 10 products and 10 stock rows: 22 events in the outbox "
        "for the relay"
    )
    a_directory = f"sqlite:///{tmp_path}"
    failed = run_central("republish", env={**env, "INVCTL_DATABASE_URL": a_directory})
    assert failed.returncode == 2
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("central: "), failed.stderr
    assert lines[0].endswith("]"), lines  # the message, then its [code]
