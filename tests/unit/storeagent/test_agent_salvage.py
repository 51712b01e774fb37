"""`storeagent salvage` on real replica files, sound and damaged: the sales to replay (queued,
left pending) and to void (in the doubt journal, failed with their outcome unknown) come out
with their keys and lines; the replica is never changed; a truncated file, a broken page of
the sales table, and a table only `.recover` could rebuild are each read as far as they go."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from invwire.errors.agent import ConfigError
from invwire.orders import Line
from storeagent.cli import app as storeagent_cli
from storeagent.replica.db import Replica, open_replica
from storeagent.replica.identity import claim_store
from storeagent.replica.local_orders import LocalOrders
from storeagent.sales.doubt import Doubt, DoubtJournal, journal_path
from storeagent.salvage import SalvageFailed, salvage, write_salvage
from tests.support.replica_pages import cut_after_the_sales

MILK = "MILK-1L"
PAGE = 4096


def sale(replica: Replica, key: str, *, status: str, quantity: int = 1, unknown=False) -> None:
    """A sale of store-a in `replica` in the state `status`."""
    orders = LocalOrders(replica, store_id="store-a")
    ref = f"ref-{key}"
    with replica.transaction():
        orders.add_pending(ref, key, "print", [Line(MILK, quantity)], instance_id="gone")
        if status == "queued":
            orders.queue(ref, "central.unavailable", "down")
        elif status == "confirmed":
            orders.confirm(ref, f"order-{key}", {"id": f"order-{key}"})
        elif status == "failed":
            orders.fail(ref, "central.unavailable", "timeout", outcome_unknown=unknown)


def a_replica(db: Path, *, queued: int = 3, padding: int = 0) -> None:
    """Store a's replica with `queued` sales queued offline (and `padding` confirmed sales
    after them, to fill pages), closed: its write-ahead log checkpointed into the file."""
    replica = open_replica(db)
    claim_store(replica, "store-a")
    for n in range(queued):
        sale(replica, f"queued-{n}", status="queued", quantity=n + 1)
    for n in range(padding):
        sale(replica, f"done-{n:04d}", status="confirmed")
    replica.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def keys(found) -> list[str]:
    return [s.idempotency_key for s in found.sales]


def test_the_sales_to_replay_and_to_void_come_out_and_the_replica_is_unchanged(tmp_path):
    db = tmp_path / "replica.db"
    replica = open_replica(db)
    claim_store(replica, "store-a")
    sale(replica, "queued", status="queued", quantity=2)
    sale(replica, "orphan", status="pending")
    sale(replica, "journaled", status="pending")
    sale(replica, "in-doubt", status="failed", unknown=True)
    sale(replica, "failed", status="failed")
    sale(replica, "confirmed", status="confirmed")
    replica.close()
    doubt = Doubt("ref-journaled", "journaled", True, None, "not recorded", "gone", "t")
    DoubtJournal(journal_path(db)).add(doubt)
    before = digest(db), digest(journal_path(db))

    found = salvage(db)

    assert (digest(db), digest(journal_path(db))) == before
    assert found.method == "read" and found.problem is None and found.store_id == "store-a"
    by_key = {s.idempotency_key: s for s in found.sales}
    assert keys(found) == ["queued", "orphan", "journaled", "in-doubt"]
    queued = by_key["queued"]
    assert (queued.replay, queued.voided, queued.status, queued.store_id) == (
        True,
        False,
        "queued",
        "store-a",
    )
    assert queued.lines == [{"sku": MILK, "quantity": 2}]
    assert queued.local_ref == "ref-queued" and queued.created_at and queued.queued_at
    assert by_key["orphan"].replay
    assert (by_key["journaled"].replay, by_key["journaled"].voided) == (False, True)
    assert by_key["journaled"].reason.startswith("order.not_recorded")
    assert (by_key["in-doubt"].voided, by_key["in-doubt"].at_central) == (True, True)
    assert found.counts() == {"sales": 4, "to_replay": 2, "voided": 2, "unreadable": 0}


def test_a_sale_only_the_doubt_journal_names_is_voided(tmp_path):
    db = tmp_path / "replica.db"
    a_replica(db, queued=0)
    doubt = Doubt("ref-lost", "lost-key", True, "order-9", "not recorded", "gone", "t")
    DoubtJournal(journal_path(db)).add(doubt)

    [found] = salvage(db).sales

    assert (found.idempotency_key, found.status, found.voided, found.replay) == (
        "lost-key",
        "unknown",
        True,
        False,
    )


def test_a_replica_truncated_after_a_checkpoint_gives_up_its_queued_sales(tmp_path):
    db = tmp_path / "replica.db"
    a_replica(db)
    cut_after_the_sales(db, pages=2)  # the last pages are gone

    found = salvage(db)

    assert keys(found) == ["queued-0", "queued-1", "queued-2"]
    assert all(s.replay for s in found.sales)
    assert found.method == "read"
    assert found.problem is not None  # SQLite's own check names the damage


def leaf_pages(db: Path, table: str) -> list[int]:
    connection = sqlite3.connect(db)
    try:
        rows = connection.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
            (table,),
        ).fetchall()
    finally:
        connection.close()
    return [int(page) for (page,) in rows]


def overwrite_page(db: Path, page: int) -> None:
    with db.open("r+b") as file:
        file.seek((page - 1) * PAGE)
        file.write(b"\xa5" * PAGE)


def test_a_broken_page_of_the_sales_table_costs_only_the_sales_on_it(tmp_path):
    db = tmp_path / "replica.db"
    a_replica(db, queued=3, padding=300)
    pages = leaf_pages(db, "local_orders")
    assert len(pages) > 3, "the sales fill several pages"
    overwrite_page(db, pages[-2])  # a page of confirmed sales, not the queued ones

    found = salvage(db)

    assert found.method == "rowid"
    assert keys(found) == ["queued-0", "queued-1", "queued-2"]
    assert found.unreadable > 0
    assert "malformed" in str(found.problem)


FAKE_RECOVER = """
import sys
print("BEGIN;")
print("CREATE TABLE local_orders (seq INTEGER PRIMARY KEY, local_ref TEXT, "
      "idempotency_key TEXT, lines TEXT, status TEXT, store_id TEXT);")
print("INSERT INTO local_orders VALUES (1, 'ref-r', 'recovered', "
      "'[{\\"sku\\": \\"MILK-1L\\", \\"quantity\\": 4}]', 'queued', 'store-a');")
print("COMMIT;")
"""


def unreadable_sales_table(db: Path) -> None:
    """The sales table's root page overwritten: neither a scan nor a lookup reads it."""
    a_replica(db)
    connection = sqlite3.connect(db)
    [(root,)] = connection.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'local_orders'"
    ).fetchall()
    connection.close()
    overwrite_page(db, int(root))


def test_a_table_nothing_else_reads_is_rebuilt_by_sqlite_recover(tmp_path):
    db = tmp_path / "replica.db"
    unreadable_sales_table(db)
    fake = tmp_path / "sqlite3"
    fake.write_text(f"#!{sys.executable}\n{FAKE_RECOVER}")
    fake.chmod(0o700)

    found = salvage(db, sqlite_cli=str(fake))

    assert found.method == "recover"
    [recovered] = found.sales
    assert (recovered.idempotency_key, recovered.lines, recovered.replay) == (
        "recovered",
        [{"sku": MILK, "quantity": 4}],
        True,
    )


def test_a_recover_that_fails_is_reported_not_taken_half_way(tmp_path):
    db = tmp_path / "replica.db"
    unreadable_sales_table(db)
    fake = tmp_path / "sqlite3"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\nprint('BEGIN;')\n"
        "sys.stderr.write('Error: no such table: sqlite_dbpage')\nsys.exit(1)\n"
    )
    fake.chmod(0o700)

    with pytest.raises(SalvageFailed) as failed:
        salvage(db, sqlite_cli=str(fake))

    assert "sqlite_dbpage" in failed.value.message


def test_the_salvage_file_is_new_and_private(tmp_path):
    db, out = tmp_path / "replica.db", tmp_path / "sales.jsonl"
    a_replica(db, queued=2)
    found = salvage(db)

    write_salvage(found, out)
    with pytest.raises(ConfigError):
        write_salvage(found, out)

    assert out.stat().st_mode & 0o777 == 0o600
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["idempotency_key"] for line in lines] == ["queued-0", "queued-1"]
    assert set(lines[0]) >= {"lines", "local_ref", "status", "store_id", "created_at", "replay"}


def test_the_command_writes_the_file_and_refuses_a_missing_replica(tmp_path):
    db = tmp_path / "replica.db"
    a_replica(db, queued=1)
    runner = CliRunner()

    done = runner.invoke(storeagent_cli, ["salvage", "--db", str(db)])
    missing = runner.invoke(storeagent_cli, ["salvage", "--db", str(tmp_path / "none.db")])
    again = runner.invoke(storeagent_cli, ["salvage", "--db", str(db)])

    assert done.exit_code == 0, done.output
    assert "salvaged 1 sales" in done.output
    assert (tmp_path / "replica.db.salvage.jsonl").is_file()
    assert (missing.exit_code, again.exit_code) == (2, 2)


def test_sales_still_in_the_write_ahead_log_of_a_killed_agent_come_out(tmp_path):
    db = tmp_path / "replica.db"
    live = open_replica(db)  # never closed before the salvage: as a SIGKILLed agent leaves it
    claim_store(live, "store-a")
    sale(live, "in-the-log", status="queued")
    assert db.with_name("replica.db-wal").stat().st_size > 0

    found = salvage(db)
    live.close()

    assert keys(found) == ["in-the-log"]
