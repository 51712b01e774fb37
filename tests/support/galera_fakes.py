"""A database that answers the way a Galera node refuses work, for unit tests of the retry and
of the error mapping: commits lost to a conflicting write on another node (1213), and a node
that is out of its cluster (1047). It is SQLite underneath; only the refusals are Galera's."""

from __future__ import annotations

from typing import Any

import peewee
import pymysql

from central import migrations, models

DEADLOCK = "Deadlock found when trying to get lock; try restarting transaction"
NOT_PREPARED = "WSREP has not yet prepared node for application use"


def mysql_error(errno: int, message: str) -> peewee.OperationalError:
    """The error as peewee raises it over PyMySQL: the driver's error kept as `orig`, and
    (errno, message) as args."""
    return peewee.OperationalError(pymysql.err.OperationalError(errno, message), errno, message)


class GaleraLikeSqlite(peewee.SqliteDatabase):
    """`conflicts`: how many of the next commits fail certification (the transaction is
    rolled back, as Galera's is); `out_of_cluster`: every statement is refused with 1047.
    `commits` and `refused` count what happened."""

    def __init__(self, path: str) -> None:
        super().__init__(path, pragmas={"journal_mode": "wal", "foreign_keys": 1})
        self.conflicts = 0
        self.out_of_cluster = False
        self.commits = 0
        self.refused = 0

    def commit(self) -> None:
        if self.conflicts > 0:
            self.conflicts -= 1
            self.refused += 1
            raise mysql_error(1213, DEADLOCK)
        super().commit()
        self.commits += 1

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        if self.out_of_cluster:
            raise mysql_error(1047, NOT_PREPARED)
        return super().execute_sql(sql, params)


def galera_like_database(path: str) -> GaleraLikeSqlite:
    """A migrated database with central's models bound to it (as central.app does)."""
    db = GaleraLikeSqlite(path)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    migrations.migrate(db)
    return db
