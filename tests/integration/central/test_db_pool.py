"""The MariaDB pool's check-in: a connection that left no transaction open goes back as it is
(no ROLLBACK round trip at the end of every request); one that did is rolled back, so the next
user never inherits another's uncommitted changes. Its check-out: a connection back for less
than its `fresh_s` goes out without a ping, and one its server closed meanwhile is replaced without
the caller seeing it."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import peewee
import pytest

from central.db import connect
from tests.support.central_harness import admin_connection, mariadb_database, mysql_base_url


@pytest.fixture
def db() -> Iterator[peewee.Database]:
    with mariadb_database(mysql_base_url()) as url:
        database = connect(url)
        with database.connection_context():
            database.execute_sql("CREATE TABLE notes (id INT PRIMARY KEY)")
        yield database
        database.close_all()


def session(db: peewee.Database) -> tuple[int, int]:
    """This pooled connection's id and the ROLLBACKs it has received, read on a check-out."""
    with db.connection_context():
        connection_id = db.execute_sql("SELECT CONNECTION_ID()").fetchone()[0]
        status = db.execute_sql("SHOW SESSION STATUS LIKE 'Com_rollback'").fetchone()
    return int(connection_id), int(status[1])


def test_a_connection_that_read_or_committed_goes_back_without_a_rollback(db):
    connection_id, rollbacks = session(db)

    with db.connection_context():
        db.execute_sql("SELECT COUNT(*) FROM notes")
    with db.connection_context(), db.atomic():
        db.execute_sql("INSERT INTO notes (id) VALUES (1)")

    assert session(db) == (connection_id, rollbacks), "same connection, no ROLLBACK sent"
    with db.connection_context():
        assert db.execute_sql("SELECT COUNT(*) FROM notes").fetchone()[0] == 1


def test_a_transaction_left_open_is_rolled_back_at_check_in(db):
    connection_id, rollbacks = session(db)

    with db.connection_context():
        db.execute_sql("BEGIN")
        db.execute_sql("INSERT INTO notes (id) VALUES (2)")
        # Handed back with the transaction still open, neither committed nor rolled back.

    assert session(db) == (connection_id, rollbacks + 1)
    with db.connection_context():
        assert db.execute_sql("SELECT COUNT(*) FROM notes").fetchone()[0] == 0


def test_a_server_without_galera_gets_no_causal_read_setting(db):
    with db.connection_context():
        wait = db.execute_sql("SELECT @@SESSION.wsrep_sync_wait").fetchone()[0]
    assert int(wait) == 0
    assert "init_command" not in db.connect_params


def pings(db: peewee.Database) -> tuple[int, int]:
    """This pooled connection's id and the pings it has received (COM_PING is counted as an
    admin command), read on a check-out."""
    with db.connection_context():
        connection_id = db.execute_sql("SELECT CONNECTION_ID()").fetchone()[0]
        status = db.execute_sql("SHOW SESSION STATUS LIKE 'Com_admin_commands'").fetchone()
    return int(connection_id), int(status[1])


def test_a_connection_back_a_moment_ago_goes_out_without_a_ping(db):
    db.fresh_s = 3600.0  # "a moment" however slow this machine
    connection_id, before = pings(db)

    assert pings(db) == (connection_id, before), "checked in just now: no ping"


def test_a_connection_idle_for_longer_is_pinged_before_use(db):
    connection_id, before = pings(db)
    db.fresh_s = 0.0

    assert pings(db) == (connection_id, before + 1)


@contextmanager
def admin_cursor(url: str) -> Iterator[Any]:
    """A cursor on a connection of its own, outside the pool under test."""
    with admin_connection(url) as admin, admin.cursor() as cursor:
        yield cursor


def kill(url: str, connection_ids: list[int]) -> None:
    """Close these connections from the server's side, as a restarted server would, and wait
    until the server lists them no more (KILL returns before that)."""
    marks = ", ".join(["%s"] * len(connection_ids))
    listed = f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID IN ({marks})"
    with admin_cursor(url) as cursor:
        for connection_id in connection_ids:
            cursor.execute("KILL CONNECTION %s", (connection_id,))
        deadline = time.monotonic() + 30
        while cursor.execute(listed, connection_ids) and cursor.fetchone()[0]:
            assert time.monotonic() < deadline, "the killed connections are still listed"
            time.sleep(0.01)


def two_idle_connections(db: peewee.Database) -> list[int]:
    """Two connections in the pool, both checked in just now."""
    ids: list[int] = []
    held = threading.Barrier(2)

    def use() -> None:
        with db.connection_context():
            ids.append(int(db.execute_sql("SELECT CONNECTION_ID()").fetchone()[0]))
            held.wait(timeout=30)

    threads = [threading.Thread(target=use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(set(ids)) == 2
    return ids


@pytest.mark.parametrize("first", ["statement", "transaction"])
def test_fresh_connections_the_server_closed_are_replaced_unseen(first):
    with mariadb_database(mysql_base_url()) as url:
        database = connect(url)
        try:
            dead = two_idle_connections(database)
            kill(url, dead)

            with database.connection_context():
                if first == "transaction":
                    with database.atomic():
                        now = database.execute_sql("SELECT CONNECTION_ID()").fetchone()[0]
                else:
                    now = database.execute_sql("SELECT CONNECTION_ID()").fetchone()[0]

            assert int(now) not in dead
        finally:
            database.close_all()
