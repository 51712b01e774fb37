"""No record can stall the replica: whatever a record carries, it is dead-lettered on its own
and the next change of the same partition is applied in the same batch."""

import json
import sqlite3
import threading
from datetime import datetime

import peewee
import pytest

from invwire.events import StockChanged
from storeagent.replica.db import Replica, is_record_fault
from storeagent.replica.queries import ReplicaReads
from storeagent.sync.loop import LoopTuning, SyncLoop
from storeagent.sync.progress import SyncProgress
from tests.support.agent_fakes import (
    FakeRecordSource,
    envelope,
    product_data,
    product_event,
    stock_data,
    stock_event,
)

TOPIC = "inventory-updated"
SKU = "MILK-1L"


def stock_value(**data: object) -> bytes:
    return envelope("stock.changed", stock_data(**data))


POISON_STOCK = {
    "stock_version_2_pow_64": stock_value(stock_version=2**64),
    "quantity_a_string": stock_value(quantity="12"),
    "quantity_a_float": stock_value(quantity=1.5),
    "unknown_type": envelope("stock.exploded", stock_data()),
    "truncated_json": stock_value()[:-10],
    "not_json": b"\xff\xfe not json",
    "empty_value": b"",
    "json_array": json.dumps([1, 2]).encode(),
}


def batch_loop(replica: Replica, fake: FakeRecordSource) -> SyncLoop:
    loop = SyncLoop(
        replica,
        lambda: fake,
        prefix="",
        stop=threading.Event(),
        progress=SyncProgress(),
        tuning=LoopTuning(poll_timeout_ms=20, max_records=500),
    )
    loop.start(fake)
    return loop


def stock_of(replica: Replica, sku: str = SKU) -> tuple[int, int] | None:
    row = ReplicaReads(replica).stock_level(sku)
    return None if row is None else (row.quantity, row.stock_version)


@pytest.fixture
def fake() -> FakeRecordSource:
    return FakeRecordSource.with_wire_topics()


@pytest.mark.parametrize("value", POISON_STOCK.values(), ids=POISON_STOCK.keys())
def test_a_poison_stock_record_is_dead_lettered_and_the_next_change_applies_in_the_batch(
    replica, fake, value
):
    fake.produce(*stock_event(quantity=40, stock_version=1))
    poison = fake.produce(TOPIC, SKU, value)
    fake.produce(*stock_event(quantity=38, stock_version=2))
    loop = batch_loop(replica, fake)

    assert loop.step(fake)

    [letter] = ReplicaReads(replica).dead_letters()
    assert (letter.partition, letter.offset, letter.value) == (poison.partition, 1, value)
    assert stock_of(replica) == (38, 2)
    assert replica.stored_offsets()[poison.tp] == 3


def test_a_lone_surrogate_in_a_product_name_is_dead_lettered(replica, fake):
    value = envelope("product.updated", product_data(name="Milk \ud800", version=2))
    assert b"\\ud800" in value  # JSON escapes it; parsing would bring it back
    poison = fake.produce("new-product", SKU, value)
    fake.produce(*product_event(name="Milk", version=3))
    loop = batch_loop(replica, fake)

    assert loop.step(fake)

    [letter] = ReplicaReads(replica).dead_letters()
    assert (letter.topic, letter.offset) == (poison.topic, poison.offset)
    assert ReplicaReads(replica).products()[SKU].name == "Milk"


def test_every_kind_of_poison_in_one_partition_in_one_batch(replica, fake):
    for value in POISON_STOCK.values():
        fake.produce(TOPIC, SKU, value)
    fake.produce(*stock_event(quantity=7, stock_version=9))
    loop = batch_loop(replica, fake)

    assert loop.step(fake)

    assert replica.dead_letter_count() == len(POISON_STOCK)
    assert stock_of(replica) == (7, 9)
    assert loop.progress.totals() == {
        "applied": 1,
        "stale": 0,
        "dead_lettered": len(POISON_STOCK),
    }


class RefusingReplica(Replica):
    """Writing stock version 13 fails with `error`, as a constraint or a value SQLite cannot
    store would; every other write works."""

    def __init__(self, replica: Replica, error: Exception) -> None:
        super().__init__(replica.db)
        self.error = error

    def upsert_stock(self, event: StockChanged, occurred_at: datetime) -> bool:
        super().upsert_stock(event, occurred_at)  # written, then rolled back with the record
        if event.stock_version == 13:
            raise self.error
        return True


APPLY_ERRORS = {
    "sqlite3_integrity": sqlite3.IntegrityError("CHECK constraint failed: quantity >= 0"),
    "peewee_integrity": peewee.IntegrityError("UNIQUE constraint failed: stock.sku"),
    "overflow": OverflowError("Python int too large to convert to SQLite INTEGER"),
    "value": ValueError("could not convert"),
    "binding": peewee.ProgrammingError("Error binding parameter 2: type 'dict' is not supported"),
    "a_bug_some_records_reach": KeyError("price"),
}


@pytest.mark.parametrize("error", APPLY_ERRORS.values(), ids=APPLY_ERRORS.keys())
def test_a_record_whose_write_fails_is_rolled_back_alone_and_dead_lettered(replica, fake, error):
    refusing = RefusingReplica(replica, error)
    fake.produce(*stock_event(quantity=40, stock_version=12))
    bad = fake.produce(*stock_event(quantity=99, stock_version=13))
    fake.produce(*stock_event(quantity=38, stock_version=14))
    loop = batch_loop(refusing, fake)

    assert loop.step(fake)

    [letter] = ReplicaReads(replica).dead_letters()
    assert (letter.offset, letter.reason) == (bad.offset, "record.not_applied")
    assert letter.detail.startswith(type(error).__name__ + ": ")
    assert stock_of(replica) == (38, 14)
    assert replica.get_meta("events_applied") == "2"
    assert replica.stored_offsets()[bad.tp] == 3


def test_only_the_failed_records_writes_are_undone(replica, fake):
    fake.produce(*stock_event(quantity=40, stock_version=12))
    fake.produce(*stock_event(quantity=99, stock_version=13))
    loop = batch_loop(RefusingReplica(replica, OverflowError("too big")), fake)

    assert loop.step(fake)

    assert stock_of(replica) == (40, 12)  # version 13 was written, then rolled back alone


def test_an_error_message_quoting_a_lone_surrogate_still_dead_letters(replica, fake):
    fake.produce(*stock_event(stock_version=13))
    fake.produce(*stock_event(quantity=1, stock_version=14))
    loop = batch_loop(RefusingReplica(replica, ValueError("bad name 'Milk \ud800'")), fake)

    assert loop.step(fake)

    [letter] = ReplicaReads(replica).dead_letters()
    assert letter.detail == "ValueError: bad name 'Milk \\ud800'"
    assert stock_of(replica) == (1, 14)


def test_the_dead_letter_log_line_counts_reasons(replica, fake, caplog):
    fake.produce(TOPIC, SKU, b"{")
    fake.produce(TOPIC, SKU, stock_value(stock_version=2**64))
    loop = batch_loop(replica, fake)

    loop.step(fake)

    [line] = [r for r in caplog.records if r.getMessage() == "consumer.dead_lettered"]
    assert line.__dict__["event_fields"]["reasons"] == {"json.invalid": 1, "field.invalid": 1}


@pytest.mark.parametrize(
    ("error", "records_fault"),
    [
        (peewee.IntegrityError("NOT NULL constraint failed: stock.sku"), True),
        (sqlite3.IntegrityError("UNIQUE constraint failed"), True),
        (peewee.DataError("string or blob too big"), True),
        (peewee.ProgrammingError("Error binding parameter 1: type 'dict' is not supported"), True),
        (OverflowError("Python int too large to convert to SQLite INTEGER"), True),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), True),
        (TypeError("unsupported operand"), True),
        (peewee.OperationalError("database is locked"), False),
        (sqlite3.OperationalError("disk I/O error"), False),
        (peewee.OperationalError("database or disk is full"), False),
        (peewee.OperationalError("no such table: stock"), False),
        (peewee.OperationalError("attempt to write a readonly database"), False),
        (peewee.DatabaseError("database disk image is malformed"), False),
        (peewee.ProgrammingError("Cannot operate on a closed database."), False),
        (peewee.InterfaceError("Query must be bound to a database"), False),
        (OSError("No space left on device"), False),
        (MemoryError(), False),
    ],
    ids=lambda value: value if isinstance(value, bool) else f"{type(value).__name__}:{value}"[:50],
)
def test_whose_fault_a_write_error_is(error, records_fault):
    assert is_record_fault(error) is records_fault
