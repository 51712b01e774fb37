"""The local_orders table arrives through the replica's schema versioning."""

import peewee
import pytest

from storeagent.models import bind_models
from storeagent.replica import PRAGMAS, SCHEMA_VERSION, open_replica


def make_v1_replica(path) -> None:
    """A replica file as the previous storeagent release left it."""
    db = peewee.SqliteDatabase(str(path), pragmas=PRAGMAS)
    models = bind_models(db)
    db.create_tables(models.schema_v1())
    models.meta.insert(key="schema_version", value="1").execute()
    models.stock.insert(sku="MILK-1L", quantity=40, stock_version=7, updated_at="t").execute()
    db.close()


def test_a_version_1_replica_gains_local_orders_and_keeps_its_rows(tmp_path):
    make_v1_replica(tmp_path / "r.db")

    replica = open_replica(tmp_path / "r.db")

    assert SCHEMA_VERSION == 3
    assert replica.get_meta("schema_version") == "3"
    assert "local_orders" in replica.db.get_tables()
    assert replica.m.stock.get_by_id("MILK-1L").quantity == 40
    assert replica.local_orders(None, 10) == []
    replica.close()


def test_a_version_2_replica_gains_the_offline_columns_and_keeps_its_sales(tmp_path):
    db = peewee.SqliteDatabase(str(tmp_path / "r.db"), pragmas=PRAGMAS)
    models = bind_models(db)
    db.create_tables(models.schema_v1())
    models.meta.insert(key="schema_version", value="2").execute()
    db.execute_sql(
        "CREATE TABLE local_orders (seq INTEGER PRIMARY KEY, local_ref TEXT UNIQUE, "
        "idempotency_key TEXT UNIQUE, fingerprint TEXT, lines TEXT, status TEXT, "
        "order_id TEXT, central_order TEXT, reason_code TEXT, reason_message TEXT, "
        "attempts INTEGER, created_at TEXT, updated_at TEXT)"
    )
    db.execute_sql(
        "INSERT INTO local_orders VALUES (1, 'r1', 'k1', 'f', '[]', 'failed', NULL, NULL, "
        "NULL, NULL, 1, 't', 't')"
    )
    db.close()

    replica = open_replica(tmp_path / "r.db")

    [row] = replica.local_orders(None, 10)
    assert (row.local_ref, row.status, row.queued_at, row.outcome_unknown) == (
        "r1",
        "failed",
        None,
        False,
    )
    assert replica.get_meta("schema_version") == "3"
    replica.close()


def test_idempotency_key_is_unique_in_local_orders(replica):
    row = {
        "local_ref": "r1",
        "idempotency_key": "k",
        "fingerprint": "f",
        "lines": "[]",
        "status": "pending",
        "created_at": "t",
        "updated_at": "t",
    }
    replica.add_local_order(**row)

    with pytest.raises(peewee.IntegrityError):
        replica.add_local_order(**{**row, "local_ref": "r2"})


def test_versioned_stock_upsert_keeps_the_newer_row(replica):
    with replica.transaction():
        assert replica.set_stock("A", 5, 3, updated_at="t1")
        assert not replica.set_stock("A", 9, 3, updated_at="t2")
        assert not replica.set_stock("A", 9, 2, updated_at="t2")
        assert replica.set_stock("A", 4, 4, updated_at="t3")

    assert (
        replica.m.stock.get_by_id("A").quantity,
        replica.m.stock.get_by_id("A").stock_version,
    ) == (4, 4)
