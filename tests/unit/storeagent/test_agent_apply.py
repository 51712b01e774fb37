from datetime import UTC, datetime

import pytest

from invwire.events import StockChanged
from storeagent.replica.db import Replica, open_replica
from storeagent.replica.queries import ReplicaReads
from storeagent.sync.apply import apply_batch
from storeagent.sync.source import Record, TopicPartition
from tests.support.agent_fakes import (
    FixedClock,
    category_event,
    envelope,
    product_event,
    stock_event,
)

NOW = FixedClock()()


def rec(event: tuple[str, bytes, bytes | None], offset: int, partition: int = 0) -> Record:
    topic, key, value = event
    return Record(topic, partition, offset, key, value)


def apply(replica: Replica, *records: Record, prefix: str = ""):
    return apply_batch(replica, records, prefix=prefix, now=NOW)


def stock_row(replica: Replica, sku: str = "MILK-1L") -> tuple[int, int] | None:
    row = ReplicaReads(replica).stock_level(sku)
    return None if row is None else (row.quantity, row.stock_version)


def test_newer_stock_version_replaces_the_row(replica):
    apply(replica, rec(stock_event(quantity=40, stock_version=7), 0))
    result = apply(replica, rec(stock_event(quantity=38, stock_version=8), 1))

    assert (result.applied, result.stale) == (1, 0)
    assert stock_row(replica) == (38, 8)


def test_duplicate_or_older_stock_event_changes_nothing(replica):
    apply(replica, rec(stock_event(quantity=40, stock_version=7), 0))

    result = apply(
        replica,
        rec(stock_event(quantity=40, stock_version=7), 1),
        rec(stock_event(quantity=99, stock_version=3), 2),
    )

    assert (result.applied, result.stale) == (0, 2)
    assert stock_row(replica) == (40, 7)
    assert replica.get_meta("events_applied") == "1"


def test_stock_updated_at_is_the_event_occurred_at(replica):
    apply(replica, rec(stock_event(), 0))

    row = ReplicaReads(replica).stock_level("MILK-1L")
    assert row is not None
    assert row.updated_at == "2026-11-29T10:00:00.123456+00:00"


def test_product_and_category_upserts_are_versioned(replica):
    apply(
        replica,
        rec(category_event(id=3, name="Dairy", version=2), 0),
        rec(product_event(name="Milk", price="1.25", version=5), 0, partition=1),
    )

    result = apply(
        replica,
        rec(category_event(id=3, name="Old dairy", version=1), 1),
        rec(product_event(name="Old milk", price="9.99", version=5), 1, partition=1),
        rec(product_event(name="Whole milk", price="1.30", version=6), 2, partition=1),
    )

    assert (result.applied, result.stale) == (1, 2)
    reads = ReplicaReads(replica)
    assert reads.categories()[3].name == "Dairy"
    product = reads.products()["MILK-1L"]
    assert (product.name, product.price, product.version) == ("Whole milk", "1.30", 6)


def test_batch_stores_last_offset_plus_one_per_partition(replica):
    apply(
        replica,
        rec(stock_event(sku="A", stock_version=1), 4, partition=0),
        rec(stock_event(sku="A", stock_version=2), 5, partition=0),
        rec(stock_event(sku="B", stock_version=1), 9, partition=2),
    )

    assert replica.stored_offsets() == {
        TopicPartition("inventory-updated", 0): 6,
        TopicPartition("inventory-updated", 2): 10,
    }


def test_offsets_keep_the_full_prefixed_topic_name(replica):
    topic, key, value = stock_event()

    apply(replica, rec(("p1." + topic, key, value), 0), prefix="p1.")

    assert replica.stored_offsets() == {TopicPartition("p1.inventory-updated", 0): 1}
    assert stock_row(replica) == (40, 7)


def test_poison_record_is_dead_lettered_and_the_batch_carries_on(replica):
    poison = ("inventory-updated", b"MILK-1L", b"{broken")

    result = apply(
        replica,
        rec(stock_event(sku="A", stock_version=1), 0),
        rec(poison, 1),
        rec(stock_event(sku="B", stock_version=1), 2),
    )

    assert (result.applied, result.dead_lettered) == (2, 1)
    [letter] = ReplicaReads(replica).dead_letters()
    assert (letter.topic, letter.partition, letter.offset) == ("inventory-updated", 0, 1)
    assert (letter.key, letter.value, letter.reason) == (b"MILK-1L", b"{broken", "json.invalid")
    assert letter.detail.startswith("the value is not UTF-8 JSON")
    assert letter.created_at == "2026-11-29T10:00:00.000000+00:00"
    assert replica.stored_offsets() == {TopicPartition("inventory-updated", 0): 3}


def test_replayed_poison_record_is_stored_once(replica):
    poison = rec(("inventory-updated", b"X", envelope("stock.changed", {}, schema=9)), 0)

    apply(replica, poison)
    apply(replica, poison)

    assert replica.dead_letter_count() == 1
    assert [letter.reason for letter in ReplicaReads(replica).dead_letters()] == [
        "schema.unsupported"
    ]


def test_counters_track_applied_events_and_the_newest_event_time(replica):
    later = envelope(
        "stock.changed",
        {
            "sku": "B",
            "quantity": 1,
            "delta": 1,
            "reason": "set",
            "order_id": None,
            "stock_version": 1,
        },
        occurred_at="2026-11-29T12:00:00+00:00",
    )
    apply(replica, rec(("inventory-updated", b"B", later), 0), rec(stock_event(), 1))
    apply(replica, rec(stock_event(stock_version=8), 2))

    meta = replica.meta()
    assert meta["events_applied"] == "3"
    assert meta["last_event_at"] == "2026-11-29T12:00:00.000000+00:00"
    assert meta["last_applied_at"] == "2026-11-29T10:00:00.000000+00:00"


class ExplodingReplica(Replica):
    """Fails while writing the stock row of one SKU, as a full disk or a bug would."""

    def upsert_stock(self, event: StockChanged, occurred_at: datetime) -> bool:
        if event.sku == "BOOM":
            raise OSError("disk I/O error")
        return super().upsert_stock(event, occurred_at)


def test_failure_mid_batch_stores_nothing_of_the_batch_nor_its_offsets(tmp_path):
    replica = ExplodingReplica(open_replica(tmp_path / "r.db").db)
    apply(replica, rec(stock_event(sku="A", quantity=1, stock_version=1), 0))
    before = (replica.meta(), replica.stored_offsets())

    with pytest.raises(OSError):
        apply(
            replica,
            rec(stock_event(sku="A", quantity=2, stock_version=2), 1),
            rec(("inventory-updated", b"A", b"poison"), 2),
            rec(category_event(id=5, version=1), 0),
            rec(stock_event(sku="BOOM", stock_version=1), 3),
        )

    assert (replica.meta(), replica.stored_offsets()) == before
    assert stock_row(replica, "A") == (1, 1)
    assert replica.dead_letter_count() == 0
    assert ReplicaReads(replica).categories() == {}


def test_apply_timestamps_use_the_given_clock(replica):
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    apply_batch(replica, [rec(stock_event(), 0)], prefix="", now=moment)

    assert replica.get_meta("last_applied_at") == "2030-01-02T03:04:05.000000+00:00"
