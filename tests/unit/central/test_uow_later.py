"""UnitOfWork.later: writes handed to it are made at the commit, before the outbox rows and
in the same transaction; a check that refuses its write's result rolls everything back."""

from datetime import UTC, datetime

import peewee
import pytest

from central.models import Movement, Outbox
from central.services.inventory import LEDGER_ROWS
from central.uow import UnitOfWork
from invwire.events import StockChanged
from tests.support.central_fakes import FakeClock

NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


def _movement(sku: str) -> dict[str, object]:
    return {
        "sku": sku,
        "delta": -1,
        "quantity": 9,
        "stock_version": 2,
        "reason": "order",
        "order_id": None,
        "actor": "store:s1",
        "note": "",
        "created_at": NOW,
    }


def _event(sku: str) -> StockChanged:
    return StockChanged(sku=sku, quantity=9, delta=-1, reason="order", stock_version=2)


@pytest.fixture
def db(tmp_path):
    database = peewee.SqliteDatabase(str(tmp_path / "central.db"))
    with database.bind_ctx([Movement, Outbox]):
        database.create_tables([Movement, Outbox])
        yield database


def _stored(db: peewee.Database) -> tuple[list[str], int]:
    with db.connection_context():
        skus = [row.sku for row in Movement.select().order_by(Movement.id)]
        return skus, Outbox.select().count()


def test_a_later_write_is_made_at_the_commit_with_the_outbox_rows(db):
    uow = UnitOfWork(db, FakeClock())
    seen: list[int] = []

    def work() -> None:
        uow.later(
            LEDGER_ROWS.call([_movement("EGGS-12")]), lambda result: seen.append(result.rowcount)
        )
        LEDGER_ROWS.insert([_movement("MILK-1L")])
        uow.record(_event("EGGS-12"))
        assert Movement.select().count() == 1  # not made yet: only at the commit

    uow.run(work)
    assert seen == [1]
    assert _stored(db) == (["MILK-1L", "EGGS-12"], 1)


def test_a_check_that_refuses_its_result_rolls_back_the_whole_unit_of_work(db):
    uow = UnitOfWork(db, FakeClock())

    def refuse(result: object) -> None:
        raise RuntimeError("a row changed under its lock")

    def work() -> None:
        LEDGER_ROWS.insert([_movement("MILK-1L")])
        uow.later(LEDGER_ROWS.call([_movement("EGGS-12")]), refuse)
        uow.record(_event("EGGS-12"))

    with pytest.raises(RuntimeError, match="under its lock"):
        uow.run(work)
    assert _stored(db) == ([], 0)


def test_later_writes_of_a_failed_attempt_are_not_made_by_the_next_one(db):
    uow = UnitOfWork(db, FakeClock())
    with pytest.raises(ValueError), uow:
        uow.later(LEDGER_ROWS.call([_movement("EGGS-12")]))
        raise ValueError("refused before the commit")
    uow.run(lambda: uow.later(LEDGER_ROWS.call([_movement("MILK-1L")])))
    assert _stored(db) == (["MILK-1L"], 0)


def test_many_events_are_written_to_the_outbox_whole_and_in_order(db):
    uow = UnitOfWork(db, FakeClock())
    skus = [f"SKU-{n:04d}" for n in range(1201)]  # three INSERTs of at most 500 rows
    uow.run(lambda: uow.record(*(_event(sku) for sku in skus)))
    with db.connection_context():
        assert [row.key for row in Outbox.select().order_by(Outbox.id)] == skus
