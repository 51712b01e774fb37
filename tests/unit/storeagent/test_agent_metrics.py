"""The agent's /metrics (per-agent registry), the request id middleware and the JSON log lines
that carry it, with a temp replica, the fake central and the fake record source."""

import io
import json
import logging
import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from invwire.errors.agent import SourceUnavailable
from invwire.logs import configure_logging
from storeagent.app import build_sales
from storeagent.http.app import create_app
from storeagent.ops.metrics import AgentMetrics, WatchedState
from storeagent.ops.vitals import Vitals
from storeagent.replica.db import META_BOOTSTRAPPED, Replica
from storeagent.replica.local_orders import LocalOrders
from storeagent.sync.apply import apply_batch
from storeagent.sync.loop import LoopTuning, SyncLoop, topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record, TopicPartition
from storeagent.upstream.resilience import ResilientCentral
from tests.support.agent_fakes import (
    FakeCentral,
    FakeRecordSource,
    FixedClock,
    envelope,
    product_event,
    stock_data,
    stock_event,
)
from tests.support.terminal import TERMINAL_TOKEN, terminal_client

MILK = "MILK-1L"


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def load(replica: Replica, *events: tuple[str, bytes, bytes]) -> None:
    records = [Record(t, 0, offset, key, value) for offset, (t, key, value) in enumerate(events)]
    apply_batch(replica, records, prefix="", now=FixedClock()())


@pytest.fixture
def central(clock) -> FakeCentral:
    fake = FakeCentral(clock=clock)
    fake.set_stock(MILK, 40, 7)
    return fake


@pytest.fixture
def progress() -> SyncProgress:
    return SyncProgress()


@pytest.fixture
def metrics(replica, progress, clock) -> AgentMetrics:
    agent_metrics = AgentMetrics()
    agent_metrics.watch(
        WatchedState(
            Vitals(replica, LocalOrders(replica), progress),
            circuit=lambda: {"circuit": "closed", "consecutive_failures": 0, "last_error": None},
            clock=clock,
        )
    )
    return agent_metrics


@pytest.fixture
def client(replica, progress, central, clock, metrics) -> TestClient:
    load(replica, product_event(sku=MILK), stock_event(sku=MILK, quantity=40, stock_version=7))
    with replica.transaction():
        replica.set_meta({META_BOOTSTRAPPED: "1"})
    desk = build_sales(replica, ResilientCentral(central, sleep=lambda _: None), clock=clock).desk
    app = create_app(
        replica,
        progress,
        store_id="s1",
        topics=topic_names(""),
        orders=desk,
        metrics=metrics,
        terminal_token=TERMINAL_TOKEN,
    )
    return terminal_client(app)


def buy(client: TestClient, quantity: int, **headers: str):
    return client.post(
        "/orders", json={"lines": [{"sku": MILK, "quantity": quantity}]}, headers=headers
    )


def test_sales_are_counted_by_outcome(client, central):
    buy(client, 2, **{"Idempotency-Key": "sale-1"})
    buy(client, 2, **{"Idempotency-Key": "sale-1"})
    buy(client, 500)
    central.refuse_next(409, "stock.insufficient")
    buy(client, 1)

    samples = scrape(client)

    assert value(samples, "storeagent_orders_total", outcome="confirmed") == 1
    assert value(samples, "storeagent_orders_total", outcome="replayed") == 1
    assert value(samples, "storeagent_orders_total", outcome="stock.insufficient") == 2


def test_http_requests_are_counted_by_route_template_and_status(client):
    client.get(f"/stock/{MILK}")
    client.get("/stock/NOPE-1")
    buy(client, 1)

    samples = scrape(client)

    def requests(method: str, route: str, status: str) -> float:
        labels = {"method": method, "route": route, "status": status}
        return value(samples, "storeagent_http_requests_total", **labels)

    assert requests("GET", "/stock/{sku}", "200") == 1
    assert requests("GET", "/stock/{sku}", "404") == 1
    assert requests("POST", "/orders", "201") == 1
    latency = "storeagent_http_request_duration_seconds_count"
    assert value(samples, latency, method="POST", route="/orders") == 1
    assert not any(("route", f"/stock/{MILK}") in labels for _, labels in samples)


def test_state_gauges_are_read_at_scrape_time(client, replica, progress, clock):
    stock = TopicPartition("inventory-updated", 0)
    assert replica.stored_offsets()[stock] == 2
    progress.set_end_offsets({stock: 7})
    clock.advance(90)  # the newest event occurred at 10:00:00.123456, now is 10:01:30

    samples = scrape(client)

    assert value(samples, "storeagent_consumer_lag", topic=stock.topic, partition="0") == 5
    assert value(samples, "storeagent_replica_staleness_seconds") == pytest.approx(89.876544)
    assert value(samples, "storeagent_dead_letters") == 0
    assert value(samples, "storeagent_offline_queue_depth") == 0
    assert value(samples, "storeagent_offline_rejected_orders") == 0
    assert value(samples, "storeagent_central_circuit", state="closed") == 1
    assert value(samples, "storeagent_central_circuit", state="open") == 0
    assert value(samples, "storeagent_ready") == 0, "the loop is not running"


def test_offline_queue_and_offline_refusals_are_counted_from_local_orders(client, replica):
    orders = LocalOrders(replica)
    with replica.transaction():
        for n in range(4):
            orders.add_pending(f"ref-{n}", f"key-{n}", "f", [])
        for n in (0, 1, 2):
            orders.queue(f"ref-{n}", "central.unavailable", "central is down")
        for n in (2, 3):  # one queued first (offline), one not (online)
            orders.reject(f"ref-{n}", "stock.insufficient", "refused")

    samples = scrape(client)

    assert value(samples, "storeagent_offline_queue_depth") == 2
    assert value(samples, "storeagent_offline_rejected_orders") == 1, "online refusals are not"


def test_a_scrape_during_a_database_failure_still_answers(client, replica):
    replica.db.close()
    replica.db.init(str(replica.db.database) + ".missing/nope.db")

    samples = scrape(client)

    assert ("storeagent_dead_letters", ()) not in samples
    assert value(samples, "storeagent_central_circuit", state="closed") == 1


def test_two_agents_in_one_process_have_separate_registries():
    first, second = AgentMetrics(), AgentMetrics()
    first.order("confirmed")

    assert first.registry.get_sample_value("storeagent_orders_total", {"outcome": "confirmed"})
    assert (
        second.registry.get_sample_value("storeagent_orders_total", {"outcome": "confirmed"})
        is None
    )


# --- the sync loop ------------------------------------------------------------------------


def run_steps(loop: SyncLoop, source: FakeRecordSource, steps: int = 1) -> None:
    loop.progress.started()
    loop.start(source)
    for _ in range(steps):
        assert loop.step(source)


def test_applied_batches_feed_the_apply_and_sync_latency_histograms(replica, clock):
    source = FakeRecordSource.with_wire_topics()
    occurred = clock() - timedelta(seconds=2)
    for version in (1, 2, 3):
        value_ = envelope(
            "stock.changed",
            stock_data(stock_version=version),
            occurred_at=occurred.isoformat(),
        )
        source.produce("inventory-updated", MILK, value_)
    source.produce("new-product", MILK, product_event(sku=MILK)[2])
    source.produce(
        "inventory-updated", MILK, envelope("stock.changed", stock_data(stock_version=2))
    )
    metrics = AgentMetrics()
    progress = SyncProgress()
    metrics.watch(WatchedState(Vitals(replica, LocalOrders(replica), progress), clock=clock))
    loop = SyncLoop(
        replica, lambda: source, prefix="", stop=threading.Event(), progress=progress,
        clock=clock, metrics=metrics,
    )  # fmt: skip

    run_steps(loop, source)

    registry = metrics.registry
    assert registry.get_sample_value("storeagent_apply_batch_duration_seconds_count") == 1
    assert registry.get_sample_value("storeagent_sync_latency_seconds_count") == 3
    assert registry.get_sample_value("storeagent_sync_latency_seconds_sum") == pytest.approx(6)
    assert registry.get_sample_value("storeagent_events_applied_total") == 4
    assert registry.get_sample_value("storeagent_events_stale_total") == 1


class BrokerGoesAway(FakeRecordSource):
    """kafka-python's way: poll() answers nothing while requests to the broker time out."""

    down = False

    def end_offsets(self, partitions):
        if self.down:
            raise SourceUnavailable("KafkaTimeoutError")
        return super().end_offsets(partitions)

    def poll(self, timeout_ms, max_records):
        return [] if self.down else super().poll(0, max_records)


def test_the_loop_probes_the_broker_and_readiness_follows_it(replica):
    source = BrokerGoesAway.with_wire_topics()
    progress = SyncProgress()
    loop = SyncLoop(
        replica, lambda: source, prefix="", stop=threading.Event(), progress=progress,
        tuning=LoopTuning(broker_probe_s=0),
    )  # fmt: skip
    run_steps(loop, source)
    assert progress.broker_reachable() and progress.is_assigned()

    source.down = True
    assert loop.step(source)
    assert not progress.broker_reachable()
    assert progress.broker_error() == "KafkaTimeoutError"

    source.down = False
    assert loop.step(source)
    assert progress.broker_reachable()


def test_broker_counts_as_reachable_only_while_its_last_answer_is_recent():
    now = [100.0]
    progress = SyncProgress(clock=lambda: now[0], broker_stale_after=20)
    progress.started()
    progress.broker_answered()
    now[0] += 19
    assert progress.broker_reachable()
    now[0] += 2
    assert not progress.broker_reachable()
    progress.stopped()
    progress.broker_answered()
    assert not progress.broker_reachable(), "a stopped loop reaches no broker"


# --- request ids and logs ------------------------------------------------------------------


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    configure_logging(logging.DEBUG, stream, fields={"store_id": "s1"})
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    configure_logging()


def test_the_request_id_is_echoed_forwarded_to_central_and_on_every_line(
    client, central, log_lines
):
    response = buy(client, 1, **{"X-Request-ID": "till-7.req_42"})

    assert response.headers["X-Request-ID"] == "till-7.req_42"
    assert central.calls[0].request_id == "till-7.req_42"
    lines = [line for line in log_lines() if line.get("request_id") == "till-7.req_42"]
    events = {line["event"] for line in lines}
    assert {"order.confirmed", "http.request"} <= events
    access = next(line for line in lines if line["event"] == "http.request")
    assert (access["route"], access["status"], access["store_id"]) == ("/orders", 201, "s1")


def test_an_unusable_request_id_is_replaced_and_the_new_one_reaches_central(client, central):
    response = buy(client, 1, **{"X-Request-ID": "x" * 65})

    new_id = response.headers["X-Request-ID"]
    assert new_id != "x" * 65 and len(new_id) == 32
    assert central.calls[0].request_id == new_id


def test_lines_outside_a_request_carry_no_request_id(client, log_lines):
    client.get("/healthz")
    logging.getLogger("storeagent.test").info("outside")

    outside = [line for line in log_lines() if line.get("message") == "outside"]
    assert outside and "request_id" not in outside[0]
    assert outside[0]["store_id"] == "s1"
