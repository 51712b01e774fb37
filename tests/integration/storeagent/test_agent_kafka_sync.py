"""The real sync loop against the real broker: final state, restarts, replays, poison, groups."""

import statistics
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from harness.waiting import eventually
from storeagent.replica.db import Replica, open_replica
from storeagent.replica.queries import ReplicaReads
from storeagent.sync.source import TopicPartition
from tests.support.agent_fakes import (
    category_event,
    envelope,
    product_event,
    stock_data,
    stock_event,
)

pytestmark = pytest.mark.usefixtures("wire_topics")

SKUS = [f"SKU-{n}" for n in range(12)]


def history() -> list[tuple[str, bytes, bytes]]:
    """Several versions per entity, with a duplicate and a stale replay mixed in."""
    events = [category_event(id=1, name="Dairy", version=1), category_event(id=2, version=1)]
    events.append(category_event(id=1, name="Dairy & eggs", version=2))
    for n, sku in enumerate(SKUS):
        events.append(product_event(sku=sku, name=f"Item {n}", price=f"{n}.50", version=1))
        for version in range(1, 4):
            events.append(stock_event(sku=sku, quantity=10 * n + version, stock_version=version))
        events.append(stock_event(sku=sku, quantity=999, stock_version=2))
        events.append(stock_event(sku=sku, quantity=10 * n + 3, stock_version=3))
    events.append(product_event(sku="SKU-0", name="Renamed", price="7.00", version=2))
    return events


def expected_state() -> dict[str, object]:
    return {
        "categories": {1: ("Dairy & eggs", 2), 2: ("Dairy", 1)},
        "products": {
            sku: ("Renamed", "7.00", 2) if sku == "SKU-0" else (f"Item {n}", f"{n}.50", 1)
            for n, sku in enumerate(SKUS)
        },
        "stock": {sku: (10 * n + 3, 3) for n, sku in enumerate(SKUS)},
    }


def state(replica: Replica) -> dict[str, object]:
    reads = ReplicaReads(replica)
    return {
        "categories": {c.id: (c.name, c.version) for c in reads.categories().values()},
        "products": {p.sku: (p.name, p.price, p.version) for p in reads.products().values()},
        "stock": {s.sku: (s.quantity, s.stock_version) for s in reads.stock_levels().values()},
    }


def forget_offsets(db_path: Path) -> None:
    replica = open_replica(db_path)
    replica.db.execute_sql("DELETE FROM offsets")
    replica.close()


def test_replica_ends_equal_to_the_produced_final_state(publish, agent_loop):
    publish.send(*history())
    runner = agent_loop()

    replica = runner.start()
    runner.wait_applied(publish.ends)

    assert state(replica) == expected_state()
    assert runner.progress.totals()["dead_lettered"] == 0
    runner.stop()


def test_restart_resumes_from_stored_offsets_and_reapplies_nothing(publish, agent_loop):
    publish.send(*history())
    first = agent_loop()
    replica = first.start()
    first.wait_applied(publish.ends)
    applied = replica.get_meta("events_applied")
    first.stop()

    second = agent_loop()
    replica = second.start()
    publish.send(stock_event(sku="SKU-1", quantity=5, stock_version=4))
    second.wait_applied(publish.ends)
    # The loop counts a batch just after committing it with its offsets: wait for the count.
    eventually(lambda: sum(second.progress.totals().values()), 5, "the batch counted")

    assert second.progress.totals() == {"applied": 1, "stale": 0, "dead_lettered": 0}
    assert int(replica.get_meta("events_applied")) == int(applied) + 1
    second.stop()


def test_replay_from_offset_zero_into_an_up_to_date_replica_changes_nothing(publish, agent_loop):
    events = history()
    publish.send(*events)
    first = agent_loop()
    replica = first.start()
    first.wait_applied(publish.ends)
    before = (state(replica), replica.get_meta("events_applied"), replica.get_meta("last_event_at"))
    first.stop()
    forget_offsets(first.db_path)

    replay = agent_loop()
    replica = replay.start()
    replay.wait_applied(publish.ends)
    # The loop counts a batch just after committing it with its offsets: wait for the count.
    eventually(
        lambda: sum(replay.progress.totals().values()) >= len(events), 5, "every batch counted"
    )

    after = (state(replica), replica.get_meta("events_applied"), replica.get_meta("last_event_at"))
    assert after == before
    assert replay.progress.totals() == {"applied": 0, "stale": len(events), "dead_lettered": 0}
    replay.stop()


def test_poison_record_is_dead_lettered_and_later_good_records_are_applied(publish, agent_loop):
    runner = agent_loop()
    replica = runner.start()
    publish.send(
        stock_event(sku="MILK-1L", quantity=10, stock_version=1),
        ("inventory-updated", b"MILK-1L", b"\x00not json"),
        ("inventory-updated", b"MILK-1L", envelope("stock.changed", stock_data(quantity=-3))),
        stock_event(sku="MILK-1L", quantity=8, stock_version=2),
    )

    runner.wait_applied(publish.ends)

    reads = ReplicaReads(replica)
    letters = [(d.offset, d.reason, d.value) for d in reads.dead_letters()]
    assert [(offset, reason) for offset, reason, _ in letters] == [
        (1, "json.invalid"),
        (2, "field.invalid"),
    ]
    assert letters[0][2] == b"\x00not json"
    assert reads.stock_level("MILK-1L").quantity == 8
    runner.stop()


def test_group_shows_the_offsets_stored_in_the_replica(
    publish, agent_loop, admin: KafkaAdminClient
):
    publish.send(*history())
    runner = agent_loop()
    replica = runner.start()
    runner.wait_applied(publish.ends)
    runner.stop()

    committed = admin.list_group_offsets(runner.group_id)[runner.group_id]

    assert {TopicPartition(tp.topic, tp.partition): om.offset for tp, om in committed.items()} == (
        replica.stored_offsets()
    )
    assert replica.stored_offsets() == publish.ends


def test_a_new_event_reaches_the_replica_within_milliseconds(publish, agent_loop):
    runner = agent_loop()
    replica = runner.start()
    runner.wait_applied({})
    latencies = []
    reads = ReplicaReads(replica)

    for version in range(1, 21):
        sent = time.perf_counter()
        publish.send(stock_event(sku="FAST-1", quantity=version, stock_version=version))
        eventually(
            lambda v=version: getattr(reads.stock_level("FAST-1"), "stock_version", 0) >= v,
            what=f"stock_version {version} applied",
            interval=0.001,
        )
        latencies.append(time.perf_counter() - sent)

    median_ms = statistics.median(latencies) * 1000
    print(f"sync latency: median {median_ms:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert median_ms < 250
    runner.stop()
