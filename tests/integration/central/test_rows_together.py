"""central.rows.together: several statements in one round trip on MariaDB (one by one on
SQLite) answer as the same statements sent one by one would, errors included, and leave the
connection in step for the next statement."""

from collections.abc import Iterator

import peewee
import pytest

from central.db import connect
from central.rows import Statement, together
from tests.support.central_harness import mariadb_database, mysql_base_url

ADD = Statement('INSERT INTO "notes" ("id", "body") VALUES (?, ?)')
READ = Statement('SELECT "id", "body" FROM "notes" WHERE "id" IN ({marks}) ORDER BY "id"')
COUNT = Statement('SELECT COUNT(*) FROM "notes"')
CREATE = Statement('CREATE TABLE "notes" ("id" INT PRIMARY KEY, "body" VARCHAR(40) NOT NULL)')
RENAME = Statement('UPDATE "notes" SET "body" = ? WHERE "id" = ?')


@pytest.fixture
def db(database_url) -> Iterator[peewee.Database]:
    database = _with_notes(connect(database_url))
    yield database
    database.close_all()


def _with_notes(database: peewee.Database) -> peewee.Database:
    with database.connection_context():
        CREATE.run(database, [])
    return database


def count(database: peewee.Database) -> int:
    return int(COUNT.run(database, []).fetchone()[0])


def test_each_statement_answers_in_order(db, database_url):
    # one query on a MariaDB server (not a Galera node: test_orders_galera), one by one on SQLite
    assert getattr(db, "multi_statements", False) == database_url.startswith("mysql")
    with db.connection_context(), db.atomic():
        added, read, renamed, missing = together(
            db,
            [
                ADD.call(db, [1, "milk; DROP TABLE notes"]),  # a ';' inside a value is a value
                READ.call(db, [1, 2], size=2),
                RENAME.call(db, ["eggs", 1]),
                RENAME.call(db, ["bread", 7]),
            ],
        )
    assert added.rowcount == 1
    assert read.rows == [(1, "milk; DROP TABLE notes")]
    assert (renamed.rowcount, missing.rowcount) == (1, 0)
    with db.connection_context():
        assert list(READ.run(db, [1], size=1).fetchall()) == [(1, "eggs")]


def test_a_failing_statement_raises_peewees_error_and_those_after_it_do_not_run(db):
    with db.connection_context():
        ADD.run(db, [1, "milk"])
        with db.atomic() as transaction:
            with pytest.raises(peewee.IntegrityError):
                together(
                    db,
                    [
                        ADD.call(db, [2, "eggs"]),
                        ADD.call(db, [1, "again"]),  # the primary key refuses it
                        ADD.call(db, [3, "bread"]),
                    ],
                )
            # the connection answers its next statement (no result left unread), and the
            # statement after the failing one never ran
            assert list(READ.run(db, [1, 2, 3], size=3).fetchall()) == [(1, "milk"), (2, "eggs")]
            transaction.rollback()
        assert count(db) == 1


def test_a_transaction_rolled_back_undoes_every_statement_sent_together(db):
    with db.connection_context():
        with db.atomic() as transaction:
            together(db, [ADD.call(db, [1, "milk"]), ADD.call(db, [2, "eggs"])])
            transaction.rollback()
        assert count(db) == 0


def test_many_statements_go_in_several_bounded_queries(db):
    calls = [ADD.call(db, [n, f"note {n}"]) for n in range(40)]
    with db.connection_context(), db.atomic():
        results = together(db, calls, max_chars=200)
    assert [result.rowcount for result in results] == [1] * 40
    with db.connection_context():
        assert count(db) == 40


def test_a_transaction_ended_in_the_middle_of_the_statements_is_not_taken_as_open():
    """MariaDB only: SQLite sends each statement alone, so its transaction cannot end unseen."""
    end = Statement("COMMIT")  # as a server ending it on its own would (Galera's abort)
    with mariadb_database(mysql_base_url()) as url:
        db = _with_notes(connect(url))
        try:
            with db.connection_context():
                ended = pytest.raises(peewee.InterfaceError, match="ended the transaction")
                with ended, db.atomic():
                    calls = [ADD.call(db, [1, "milk"]), end.call(db, [])]
                    together(db, [*calls, ADD.call(db, [2, "eggs"])])
                # what ran after the end was committed on its own; the caller was told
                assert count(db) == 2
        finally:
            db.close_all()
