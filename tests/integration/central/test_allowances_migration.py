"""Migration 12 sets aside room for allowances: the stock row's `held` column, a ledger
reason wide enough for `allowance.returned`, and the allowances table; stock is kept."""

from typing import Any

import pytest

from central import migrations, models
from central.db import connect

pytestmark = pytest.mark.integration


def columns(db: Any, table: str) -> list[str]:
    with db.connection_context():
        return [column.name for column in db.get_columns(table)]


def test_migration_12_adds_held_and_allowances_and_keeps_the_stock(database_url):
    db = connect(database_url)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    migrations.migrate(db)
    with db.connection_context():  # back to schema 11: no allowances, no held stock
        db.execute_sql("DROP TABLE allowances")
        db.execute_sql("ALTER TABLE stock DROP COLUMN held")
        models.SchemaMigration.delete().where(models.SchemaMigration.version == 12).execute()
        db.execute_sql(
            "INSERT INTO stock (sku, quantity, version, updated_at) "
            "VALUES ('MILK', 7, 3, '2026-12-01 10:00:00')"
        )

    assert migrations.migrate(db) == [12]

    assert "held" in columns(db, "stock")
    with db.connection_context():
        stock = models.Stock.get_by_id("MILK")
        assert (stock.quantity, stock.held, stock.version) == (7, 0, 3)
        assert db.table_exists("allowances")
        models.Movement.create(
            sku="MILK",
            delta=-1,
            quantity=6,
            stock_version=4,
            reason="allowance.returned",
            actor="admin:root",
        )
        assert models.Movement.get().reason == "allowance.returned"
    assert migrations.migrate(db) == []
    db.close()
