"""The MariaDB pool's check-in: a connection that left no transaction open goes back as it is
(no ROLLBACK round trip at the end of every request); one that did is rolled back, so the next
user never inherits another's uncommitted changes."""

from collections.abc import Iterator

import peewee
import pytest

from central.db import connect
from tests.support.central_harness import mariadb_database, mysql_base_url


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
