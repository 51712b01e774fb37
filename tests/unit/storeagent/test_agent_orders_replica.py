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

    assert SCHEMA_VERSION == 2
    assert replica.get_meta("schema_version") == "2"
    assert "local_orders" in replica.db.get_tables()
    assert replica.m.stock.get_by_id("MILK-1L").quantity == 40
    assert replica.local_orders(None, 10) == []
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
