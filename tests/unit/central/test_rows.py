"""central.rows writes the statements peewee would: the same rows, in each backend's dialect."""

from datetime import UTC, datetime
from decimal import Decimal

import peewee
import pytest

from central import rows
from central.models import Movement, OrderLine
from central.rows import RowInsert, Statement
from central.services.inventory import LEDGER_ROWS
from central.services.orders import LEVELS, ORDER_LINES

NOW = datetime(2026, 12, 3, 6, 30, 15, 123456, tzinfo=UTC)


def _ledger_row(sku: str, order_id: str | None) -> dict[str, object]:
    return {
        "sku": sku,
        "delta": -1,
        "quantity": 9,
        "stock_version": 4,
        "reason": "order",
        "order_id": order_id,
        "actor": "store:s1",
        "note": "",
        "created_at": NOW,
    }


def _stored(model: type[peewee.Model]) -> list[tuple[object, ...]]:
    query = model.select().order_by(model._meta.primary_key)
    return [tuple(v for k, v in row.items() if k != "id") for row in query.dicts()]


def test_row_insert_stores_what_insert_many_stores(tmp_path):
    database = peewee.SqliteDatabase(str(tmp_path / "rows.db"))
    rows = [_ledger_row("MILK-1L", "o-1"), _ledger_row("EGGS-12", None)]
    lines = [
        {"order_id": "o-1", "sku": "MILK-1L", "quantity": 2, "unit_price": Decimal("1.255")}
        | {"stock_after": 9, "stock_version": 4}
    ]
    with database.bind_ctx([Movement, OrderLine]):
        database.create_tables([Movement, OrderLine])
        Movement.insert_many(rows).execute()
        OrderLine.insert_many(lines).execute()
        by_peewee = _stored(Movement), _stored(OrderLine)
        Movement.delete().execute()
        OrderLine.delete().execute()
        LEDGER_ROWS.insert(rows)
        ORDER_LINES.insert(lines)
        ORDER_LINES.insert([])  # nothing to write: no statement
        assert (_stored(Movement), _stored(OrderLine)) == by_peewee
    assert by_peewee[1][0][3] == Decimal("1.26")  # the field's own rounding applied


def test_statements_speak_each_backends_dialect():
    sqlite = peewee.SqliteDatabase(None)
    mysql = peewee.MySQLDatabase(None)
    insert = RowInsert(OrderLine, ["order_id", "sku"])
    assert insert._build(sqlite, 2) == (
        'INSERT INTO "order_lines" ("order_id", "sku") VALUES (?, ?), (?, ?)'
    )
    assert (
        insert._build(mysql, 1) == "INSERT INTO `order_lines` (`order_id`, `sku`) VALUES (%s, %s)"
    )
    assert LEVELS._build(sqlite, lock=False, size=2) == (
        'SELECT "sku", "quantity", "version", "held" FROM "stock" WHERE "sku" IN (?, ?) '
        'ORDER BY "sku"'
    )
    assert LEVELS._build(mysql, lock=True, size=1) == (
        "SELECT `sku`, `quantity`, `version`, `held` FROM `stock` WHERE `sku` IN (%s) "
        "ORDER BY `sku` FOR UPDATE"
    )


def test_a_statement_runs_in_the_callers_transaction(tmp_path):
    database = peewee.SqliteDatabase(str(tmp_path / "rows.db"))
    count = Statement('SELECT COUNT(*) FROM "stock_movements" WHERE "sku" IN ({marks})')
    with database.bind_ctx([Movement]):
        database.create_tables([Movement])
        with database.atomic() as transaction:
            LEDGER_ROWS.insert([_ledger_row("MILK-1L", None)])
            assert count.run(database, ["MILK-1L", "EGGS-12"], size=2).fetchone() == (1,)
            transaction.rollback()
        assert count.run(database, ["MILK-1L"], size=1).fetchone() == (0,)


def test_run_many_runs_a_statement_per_row_in_the_callers_transaction(tmp_path):
    database = peewee.SqliteDatabase(str(tmp_path / "rows.db"))
    relabel = Statement('UPDATE "stock_movements" SET "note" = ? WHERE "sku" = ?')
    with database.bind_ctx([Movement]):
        database.create_tables([Movement])
        LEDGER_ROWS.insert([_ledger_row("MILK-1L", None), _ledger_row("EGGS-12", None)])
        with database.atomic() as transaction:
            relabel.run_many(database, [("counted", "MILK-1L"), ("broken", "EGGS-12")])
            relabel.run_many(database, [])  # nothing to write: no statement
            notes = dict(Movement.select(Movement.sku, Movement.note).tuples())
            assert notes == {"MILK-1L": "counted", "EGGS-12": "broken"}
            transaction.rollback()
        assert set(Movement.select(Movement.note).tuples()) == {("",)}


def test_run_many_raises_peewees_errors():
    database = peewee.SqliteDatabase(":memory:")
    with database.bind_ctx([Movement]):
        database.create_tables([Movement])
        LEDGER_ROWS.insert([_ledger_row("MILK-1L", None)])
        broken = Statement('UPDATE "stock_movements" SET "delta" = ? WHERE "sku" = ?')
        with pytest.raises(peewee.IntegrityError):
            broken.run_many(database, [(None, "MILK-1L")])


def test_statements_sent_together_go_in_queries_of_a_bounded_size():
    texts = ["aaa", "bbb", "ccccccccccccc", "dd", "ee", "ff"]
    groups = list(rows._queries(texts, max_chars=10))
    assert [text for group in groups for text in group] == texts  # in order, none lost
    assert groups == [["aaa", "bbb"], ["ccccccccccccc"], ["dd", "ee", "ff"]]
    assert all(len(";".join(g)) <= 10 for g in groups if len(g) > 1)


def test_statements_together_on_sqlite_answer_one_by_one():
    database = peewee.SqliteDatabase(":memory:")
    count = Statement('SELECT COUNT(*) FROM "stock_movements"')
    with database.bind_ctx([Movement]):
        database.create_tables([Movement])
        call = LEDGER_ROWS.call([_ledger_row("MILK-1L", None), _ledger_row("EGGS-12", None)])
        assert call is not None
        added, counted = rows.together(database, [call, count.call(database, [])])
        assert (added.rowcount, counted.rows) == (2, [(2,)])
        assert LEDGER_ROWS.call([]) is None  # nothing to write: no statement
