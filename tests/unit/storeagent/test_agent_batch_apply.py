"""The batch fast path (sync.batch_apply) against record-by-record apply: the same batches
give the same rows, meta, dead letters and BatchResult, and a batch the fast path cannot
take is applied record by record."""

import json
import random
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import peewee
import pytest

from invwire.events import StockChanged
from invwire.orders import STATUS_VERSIONS
from invwire.topics import TOPIC_INVENTORY
from storeagent.replica.db import Replica, VersionedTable, open_replica
from storeagent.sync.apply import BatchResult, apply_batch
from storeagent.sync.batch_apply import parse_batch
from storeagent.sync.epochs import EpochWatch
from storeagent.sync.source import Record
from tests.support.agent_fakes import (
    FixedClock,
    category_event,
    envelope,
    epoch_headers,
    order_event,
    product_event,
    stock_event,
)

NOW = FixedClock()()
STORE = "s1"
PREFIX = "p."
SKUS = ("A-1", "B-2", "C-3")
ORDERS = (
    "5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13",
    "0b6f7c2e-1a4d-4f7b-8e3c-5d9a2b1c0e47",
)
TABLES = ("categories", "products", "stock", "order_status", "offsets", "dead_letters")


class RecordByRecord(Replica):
    """A replica with a per-record upsert of its own (the same one), so that apply_batch
    takes no batch on the fast path: the reference the fast path is compared with."""

    def upsert_stock(self, event: StockChanged, occurred_at: datetime) -> bool:
        return super().upsert_stock(event, occurred_at)


class CountingBulk(Replica):
    """Counts the fast path's set-based writes, per table."""

    def __init__(self, replica: Replica) -> None:
        super().__init__(replica.db)
        self.bulk_writes: list[str] = []

    def upsert_rows(self, table: VersionedTable, rows: Sequence[tuple[Any, ...]]) -> int:
        self.bulk_writes.append(table.name)
        return super().upsert_rows(table, rows)


class FailingBulk(Replica):
    """The fast path's stock write fails with `error`; the per-record upserts work."""

    def __init__(self, replica: Replica, error: Exception) -> None:
        super().__init__(replica.db)
        self.error = error

    def upsert_rows(self, table: VersionedTable, rows: Sequence[tuple[Any, ...]]) -> int:
        if table.name == "stock":
            raise self.error
        return super().upsert_rows(table, rows)


class RandomLog:
    """Random records over a few keys: duplicates in a batch, versions out of order, epochs
    that go back, other stores' orders, and now and then a poison record."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.offsets = [0, 0]

    def batch(self) -> list[Record]:
        return [self.record() for _ in range(self.rng.randint(1, 25))]

    def record(self) -> Record:
        rng = self.rng
        partition = rng.randrange(2)
        offset = self.offsets[partition]
        self.offsets[partition] += 1
        topic, key, value = self.event()
        return Record(PREFIX + topic, partition, offset, key, value, self.headers())

    def headers(self) -> tuple[tuple[str, bytes | None], ...]:
        roll = self.rng.random()
        if roll < 0.2:
            return ()  # before central had epochs: epoch 0
        if roll < 0.22:
            return (("invctl-epoch", b"not-a-number"),)  # poison: header.invalid
        return epoch_headers(self.rng.choice((1, 1, 1, 2, 2, 3)))

    def event(self) -> tuple[str, bytes, bytes]:
        rng = self.rng
        kind = rng.random()
        occurred = {"occurred_at": self.moment()}
        if kind < 0.03:
            return TOPIC_INVENTORY, b"A-1", b"{not json"
        if kind < 0.05:
            return TOPIC_INVENTORY, b"B-2", envelope("stock.changed", {"sku": "B-2"}, **occurred)
        if kind < 0.55:
            return self.with_time(stock_event(**self.stock()), occurred)
        if kind < 0.75:
            product = product_event(
                sku=rng.choice(SKUS), name=f"P{rng.randrange(9)}", version=rng.randrange(5)
            )
            return self.with_time(product, occurred)
        if kind < 0.85:
            category = category_event(
                id=rng.randint(1, 2), name=f"C{rng.randrange(9)}", version=rng.randrange(5)
            )
            return self.with_time(category, occurred)
        status = rng.choice(tuple(STATUS_VERSIONS))
        data = {"order_id": rng.choice(ORDERS), "store_id": rng.choice((STORE, "s2"))}
        event = order_event(**data, status=status, version=STATUS_VERSIONS[status])
        return self.with_time(event, occurred)

    def moment(self) -> str:
        """A time in a form the rules accept: central's own (UTC, microseconds when any,
        which the fast path stores as sent), all six digits, `Z`, or another offset."""
        rng = self.rng
        minutes, micros = rng.randrange(600), rng.choice((0, 0, 123456))
        moment = datetime(2026, 11, 29, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes)
        moment += timedelta(microseconds=micros)
        form = rng.randrange(4)
        if form == 0:
            return moment.isoformat()
        if form == 1:
            return moment.isoformat(timespec="microseconds")
        if form == 2:
            return moment.isoformat().replace("+00:00", "Z")
        return moment.astimezone(timezone(timedelta(hours=2))).isoformat()

    def stock(self) -> dict[str, Any]:
        rng = self.rng
        return {
            "sku": rng.choice(SKUS),
            "quantity": rng.randrange(50),
            "stock_version": rng.randrange(6),
        }

    def with_time(
        self, event: tuple[str, bytes, bytes], occurred: dict[str, str]
    ) -> tuple[str, bytes, bytes]:
        """The event's record with another occurred_at (and so its own stock time)."""
        topic, key, value = event
        body = json.loads(value)
        body.update(occurred)
        return topic, key, json.dumps(body).encode()


def state(replica: Replica) -> dict[str, Any]:
    """Every row of the tables apply writes (dead letters with their ids: the same records
    dead-lettered in the same order), and the meta."""
    tables = {
        name: sorted(replica.db.execute_sql(f"SELECT * FROM {name}").fetchall(), key=repr)
        for name in TABLES
    }
    return {"tables": tables, "meta": replica.meta()}


def rec(event: tuple[str, bytes, bytes], offset: int, partition: int = 0) -> Record:
    topic, key, value = event
    return Record(PREFIX + topic, partition, offset, key, value)


def apply(replica: Replica, records: Sequence[Record], epoch_floor: int = 0) -> BatchResult:
    return apply_batch(
        replica, records, prefix=PREFIX, now=NOW, store_id=STORE, epoch_floor=epoch_floor
    )


def is_clean(records: Sequence[Record], replica: Replica, epoch_floor: int) -> bool:
    """No poison among the records the replica's epoch admits: no bad header, no value that
    fails to parse."""
    epochs = EpochWatch(replica.epoch(), epoch_floor)
    return parse_batch(records, PREFIX, epochs, BatchResult()) is not None


@pytest.mark.parametrize("seed", range(12))
def test_random_batches_give_what_record_by_record_apply_gives(tmp_path: Path, seed: int) -> None:
    fast = CountingBulk(open_replica(tmp_path / "fast.db"))
    slow = RecordByRecord(open_replica(tmp_path / "slow.db").db)
    log = RandomLog(seed)
    floor = seed % 3  # a rebuild's epoch floor, for some seeds
    fast_batches = 0

    for _ in range(40):
        records = log.batch()
        writes_before = len(fast.bulk_writes)
        clean = is_clean(records, fast, floor)

        assert apply(fast, records, floor) == apply(slow, records, floor)
        assert state(fast) == state(slow)

        took_fast_path = len(fast.bulk_writes) > writes_before
        assert took_fast_path == clean
        fast_batches += took_fast_path

    assert fast_batches >= 10  # the comparison was mostly about the fast path


def test_in_batch_duplicates_count_each_change_once(replica: Replica) -> None:
    records = [
        rec(stock_event(sku="A-1", **fields), n)
        for n, fields in enumerate(
            [
                {"quantity": 5, "stock_version": 3},
                {"quantity": 4, "stock_version": 2},  # older than the one before: stale
                {"quantity": 9, "stock_version": 3},  # the same version again: stale
                {"quantity": 7, "stock_version": 4},
            ]
        )
    ]

    result = apply(replica, records)

    assert (result.applied, result.stale) == (2, 2)
    assert len(result.stock_event_times) == 2
    row = replica.db.execute_sql("SELECT quantity, stock_version FROM stock").fetchall()
    assert row == [(7, 4)]
    assert replica.get_meta("events_applied") == "2"


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.IntegrityError("CHECK constraint failed: quantity >= 0"),
        peewee.IntegrityError("UNIQUE constraint failed: stock.sku"),
        OverflowError("Python int too large to convert to SQLite INTEGER"),
    ],
    ids=["sqlite3_integrity", "peewee_integrity", "overflow"],
)
def test_a_record_fault_in_the_bulk_write_falls_back_to_record_by_record(
    tmp_path: Path, error: Exception
) -> None:
    failing = FailingBulk(open_replica(tmp_path / "fast.db"), error)
    reference = RecordByRecord(open_replica(tmp_path / "slow.db").db)
    records = [
        rec(product_event(sku="A-1", version=1), 0),
        rec(stock_event(sku="A-1", stock_version=1), 1),
        rec(stock_event(sku="A-1", stock_version=2), 2),
    ]

    result = apply(failing, records)

    assert result == apply(reference, records)
    assert (result.applied, result.dead_lettered) == (3, 0)
    assert state(failing) == state(reference)  # the product was written once, not twice


def test_a_database_error_in_the_bulk_write_stores_nothing_of_the_batch(tmp_path: Path) -> None:
    failing = FailingBulk(
        open_replica(tmp_path / "r.db"), sqlite3.OperationalError("disk I/O error")
    )
    before = state(failing)
    records = [
        rec(product_event(sku="A-1", version=1), 0),
        rec(stock_event(sku="A-1", stock_version=1), 1),
    ]

    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        apply(failing, records)

    assert state(failing) == before
