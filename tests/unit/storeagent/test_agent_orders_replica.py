"""The local_orders table arrives through the replica's schema versioning."""

import sqlite3

import peewee
import pytest

from storeagent.replica.db import SCHEMA_VERSION, open_replica
from storeagent.replica.local_orders import LocalOrders
from storeagent.replica.queries import ReplicaReads
from storeagent.sales import rules


def make_old_replica(path, version: int) -> None:
    """A replica file as an older storeagent release left it: the version 1 tables (with one
    stock row), and for version 2 its local_orders table (with one failed sale)."""
    replica = open_replica(path)
    with replica.transaction():
        replica.set_stock("MILK-1L", 40, 7, updated_at="t")
        replica.set_meta({"schema_version": str(version)})
    replica.db.execute_sql("DROP TABLE local_orders")
    if version == 2:
        replica.db.execute_sql(
            "CREATE TABLE local_orders (seq INTEGER PRIMARY KEY, local_ref TEXT UNIQUE, "
            "idempotency_key TEXT UNIQUE, fingerprint TEXT, lines TEXT, status TEXT, "
            "order_id TEXT, central_order TEXT, reason_code TEXT, reason_message TEXT, "
            "attempts INTEGER, created_at TEXT, updated_at TEXT)"
        )
        replica.db.execute_sql(
            "INSERT INTO local_orders VALUES (1, 'r1', 'k1', 'f', '[]', 'failed', NULL, NULL, "
            "NULL, NULL, 1, 't', 't')"
        )
    replica.close()


def test_a_version_1_replica_gains_local_orders_and_keeps_its_rows(tmp_path):
    make_old_replica(tmp_path / "r.db", version=1)

    replica = open_replica(tmp_path / "r.db")

    assert SCHEMA_VERSION == 9
    assert replica.get_meta("schema_version") == "9"
    assert "local_orders" in replica.db.get_tables()
    assert ReplicaReads(replica).stock_level("MILK-1L").quantity == 40
    assert LocalOrders(replica).newest_first(None, 10) == []
    replica.close()


def test_a_version_2_replica_gains_the_offline_columns_and_keeps_its_sales(tmp_path):
    make_old_replica(tmp_path / "r.db", version=2)

    replica = open_replica(tmp_path / "r.db")

    [row] = LocalOrders(replica).newest_first(None, 10)
    assert (row.local_ref, row.status, row.queued_at, row.outcome_unknown, row.instance_id) == (
        "r1",
        "failed",
        None,
        False,
        None,
    )
    assert replica.get_meta("schema_version") == "9"
    replica.close()


def test_a_version_3_replica_gains_the_instance_column_and_its_pending_sales_are_orphans(
    tmp_path,
):
    make_old_replica(tmp_path / "r.db", version=2)
    open_replica(tmp_path / "r.db").close()  # to version 6, then back to 3 as released
    old = sqlite3.connect(tmp_path / "r.db")
    with old:
        old.execute("ALTER TABLE local_orders DROP COLUMN instance_id")
        old.execute("UPDATE local_orders SET status = 'pending'")
        old.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    old.close()

    replica = open_replica(tmp_path / "r.db")

    [row] = LocalOrders(replica).newest_first(None, 10)
    assert (row.status, row.instance_id) == ("pending", None)
    assert rules.orphaned(row.instance_id, "this-process")
    assert replica.get_meta("schema_version") == "9"
    replica.close()


def test_idempotency_key_is_unique_in_local_orders(replica):
    orders = LocalOrders(replica)
    orders.add_pending("r1", "k", "f", [])

    with pytest.raises(peewee.IntegrityError):
        orders.add_pending("r2", "k", "f", [])


def test_versioned_stock_upsert_keeps_the_newer_row(replica):
    with replica.transaction():
        assert replica.set_stock("A", 5, 3, updated_at="t1")
        assert not replica.set_stock("A", 9, 3, updated_at="t2")
        assert not replica.set_stock("A", 9, 2, updated_at="t2")
        assert replica.set_stock("A", 4, 4, updated_at="t3")

    level = ReplicaReads(replica).stock_level("A")
    assert level is not None and (level.quantity, level.stock_version) == (4, 4)
