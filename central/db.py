"""Database construction from INVCTL_DATABASE_URL and the model binding."""

from __future__ import annotations

import fcntl
import os
import queue
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import peewee
from playhouse.pool import PooledMySQLDatabase, PooledSqliteDatabase
from playhouse.shortcuts import ReconnectMixin
from pymysql.constants import CLIENT, SERVER_STATUS

from invwire.errors.central import ConfigError, DatabaseConfigError
from invwire.files import UnusableFile, prepare_sqlite_file
from invwire.logs import EventLog

M = TypeVar("M", bound=peewee.Model)
log = EventLog("central.db")
CONNECT_TIMEOUT_S = 5  # a database that does not answer at start is a configuration error
FRESH_S = 1.0  # a MySQL connection used this recently is handed out without a ping

BUSY_TIMEOUT_MS = 10_000
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout": BUSY_TIMEOUT_MS,
    "foreign_keys": 1,
}


class WriterTurn:
    """The turn to write an SQLite database, which allows one writer at a time.

    Threads of this process queue on a lock, and processes on the same file (the workers of
    `central serve --workers N`, a command run beside them) on an exclusive flock of a lock
    file next to it. Left to SQLite, a writer that finds the file locked polls it with its
    busy handler's growing sleeps (1, 2, 5, 10 ms and on): with two workers, orders' p99 was
    88 ms. Here a waiting process waits in the kernel (FileWaiter), handed the file the
    moment it is let go, and gives up like SQLite would after `timeout_s` ("database is
    locked", 503). Reentrant: a transaction nested in one this thread holds is in the same
    turn."""

    def __init__(self, lock_path: str | None, timeout_s: float) -> None:
        self.lock_path = lock_path
        self.timeout_s = timeout_s
        self._threads = threading.RLock()
        self._depth = 0  # how deep the holder is: only the thread holding _threads changes it
        self._fd: int | None = None
        self._pid = 0
        self._waiter: FileWaiter | None = None

    def __enter__(self) -> WriterTurn:
        self._threads.acquire()
        try:
            if self._depth == 0 and self.lock_path is not None:
                self._take_file()
        except BaseException:
            self._threads.release()
            raise
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _take_file(self) -> None:
        fd = self._file()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self._waiter is None:  # made at the first wait: most processes never wait
                self._waiter = FileWaiter(fd)
            self._waiter.take(self.timeout_s)

    def close(self) -> None:
        """Let the lock file go (the database was closed; a later write opens it again)."""
        with self._threads:
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.stop():
                return  # still blocked on a wait given up: its descriptor must stay open
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def _file(self) -> int:
        """The lock file, opened once per process (a forked child opens its own: a flock
        held through a shared descriptor would be held by both)."""
        if self._fd is None or self._pid != os.getpid():
            assert self.lock_path is not None
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
            self._waiter = None
        return self._fd


@dataclass
class _Ask:
    done: threading.Event = field(default_factory=threading.Event)
    granted: bool = False
    abandoned: bool = False


class FileWaiter:
    """Takes an exclusive flock of `fd` in a blocking call, on a thread of its own, for one
    writer at a time (the one holding its process's lock), who waits for it at most a
    timeout: a blocking flock cannot be given up, so a wait given up is finished here, and
    the file let go at once."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._asks: queue.SimpleQueue[_Ask | None] = queue.SimpleQueue()
        self._mutex = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="sqlite-writer", daemon=True)
        self._thread.start()

    def take(self, timeout_s: float) -> None:
        """The flock taken, or "database is locked" after `timeout_s`."""
        ask = _Ask()
        self._asks.put(ask)
        if ask.done.wait(timeout_s):
            return
        with self._mutex:
            if ask.granted:
                return  # taken between the timeout and here
            ask.abandoned = True
        raise peewee.OperationalError("database is locked")

    def stop(self, timeout_s: float = 1.0) -> bool:
        """Whether the thread ended (it is still blocked if a wait given up goes on)."""
        self._asks.put(None)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _serve(self) -> None:
        while True:
            ask = self._asks.get()
            if ask is None:
                return
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            with self._mutex:
                if ask.abandoned:
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
                    continue
                ask.granted = True
            ask.done.set()


class SerializedSqlite(PooledSqliteDatabase):
    """SQLite with its writers taking turns (WriterTurn) instead of meeting its busy
    handler; readers never wait (WAL)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        path = str(self.database)
        lock_path = None if path == ":memory:" else f"{path}-writer.lock"
        self.writer = WriterTurn(lock_path, BUSY_TIMEOUT_MS / 1000)

    def close_all(self) -> None:
        super().close_all()
        self.writer.close()


class ReconnectingMySQL(ReconnectMixin, PooledMySQLDatabase):
    """Pooled MySQL/MariaDB that reconnects after a server restart or idle timeout.

    Its connections take several statements in one query (CLIENT_MULTI_STATEMENTS), which
    central.rows.together uses on the order path: an order's locked reads go in one round
    trip and its writes in another, where each statement was one. What that risks is a
    value read as SQL ending one statement and starting another; no statement central sends
    is built from input (values are bound, by the driver's escaping, as before)."""

    multi_statements = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_flag"] = kwargs.get("client_flag", 0) | CLIENT.MULTI_STATEMENTS
        super().__init__(*args, **kwargs)
        self._returned: dict[int, float] = {}  # connection key -> when it was checked in
        self.fresh_s = FRESH_S

    def _reconnect(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        # A reconnect resets the thread's connection state, open connection_context()s
        # included; put them back so their exits stay balanced, whether or not it worked.
        contexts = list(self._state.ctx)
        try:
            return super()._reconnect(func, *args, **kwargs)
        finally:
            if contexts and not self._state.ctx:
                self._state.ctx.extend(contexts)

    def _is_closed(self, conn: Any) -> bool:
        """peewee's pool pings every connection it hands out: a round trip per request and
        per relay round. One checked in less than `fresh_s` ago answered then, and is handed
        out unpinged; if its server has gone since, its first statement fails outside any
        transaction and ReconnectMixin runs it again on another connection, pinged (a lost
        connection makes every idle one suspect: see _can_reuse)."""
        if not getattr(conn, "open", False):
            return True
        returned = self._returned.get(self.conn_key(conn))
        if returned is not None and time.monotonic() - returned < self.fresh_s:
            return False
        return bool(super()._is_closed(conn))

    def _close_raw(self, conn: Any) -> None:
        self._returned.pop(self.conn_key(conn), None)
        super()._close_raw(conn)

    def _can_reuse(self, conn: Any) -> bool:
        """On check-in, peewee's pool sends ROLLBACK whatever the connection did (PyMySQL does
        not say whether a transaction is open): a round trip at the end of every request and
        relay round. The server says it in every answer (SERVER_STATUS_IN_TRANS), so the
        rollback is sent only when a transaction was left open, or the status is in doubt
        (a closed connection, another driver)."""
        status = getattr(conn, "server_status", None)
        idle = isinstance(status, int) and not status & SERVER_STATUS.SERVER_STATUS_IN_TRANS
        reusable = idle and getattr(conn, "open", False)
        if not reusable:
            if not getattr(conn, "open", False):
                self._returned.clear()  # its server may be gone: ping the idle ones first
            reusable = bool(super()._can_reuse(conn))
        if reusable:  # (called on check-in, under the pool's lock)
            self._returned[self.conn_key(conn)] = time.monotonic()
        return reusable


def connect(url: str) -> peewee.Database:
    """The database of INVCTL_DATABASE_URL, connected once: a URL, file or server that cannot
    be used is a DatabaseConfigError (exit 2 at the command line), not a later failure."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        where = _sqlite_path(parsed.path)
        db = _sqlite(where)
    elif parsed.scheme in {"mysql", "mariadb"}:
        db, where = _mysql(url), _server(url)
    else:
        raise ConfigError(
            f"unsupported database URL scheme {parsed.scheme!r}: use sqlite:///PATH or "
            "mysql://USER:PASSWORD@HOST:PORT/DB"
        )
    _try_connection(db, where)
    if isinstance(db, ReconnectingMySQL) and _is_galera_node(db):
        _as_galera_node(db)
    return db


def _is_galera_node(db: ReconnectingMySQL) -> bool:
    with db.connection_context():
        row = db.execute_sql("SHOW VARIABLES LIKE 'wsrep_on'").fetchone()
    return row is not None and str(row[1]).upper() == "ON"


def _as_galera_node(db: ReconnectingMySQL) -> None:
    """Connections to a Galera node differ in two ways.

    They read their own writes. Galera applies another node's commit asynchronously: behind
    a load balancer a product created through one node could be 'not found' by the next
    request on another. So every new connection waits, before each read, until the node has
    applied every commit the cluster had certified when the read began (wsrep_sync_wait=1:
    causal reads). A server without Galera does not pay for it.

    They send one statement a query. A transaction that loses to another node's commit is
    rolled back by the node while it runs (a brute-force abort); in the middle of a query
    of several statements, the statements after that point ran on outside any transaction,
    committed one by one, and the COMMIT after them answered OK
    (tests/integration/central/test_orders_galera.py caught an order whose lines and ledger
    rows were written without it, its till told it was confirmed). One by one, the
    statement after the abort is refused (error 1213) and the unit of work runs it all
    again."""
    db.connect_params["init_command"] = "SET SESSION wsrep_sync_wait = 1"
    db.connect_params["client_flag"] &= ~CLIENT.MULTI_STATEMENTS
    db.multi_statements = False
    db.close_idle()  # the connection that asked was made without it
    log.info("database.galera_node", wsrep_sync_wait=1, multi_statements=False)


def _try_connection(db: peewee.Database, where: str) -> None:
    try:
        with db.connection_context():
            db.execute_sql("SELECT 1")
    except (peewee.DatabaseError, peewee.InterfaceError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseConfigError(f"cannot use the database {where}: {reason}") from None


def _server(url: str) -> str:
    """HOST:PORT/DB of a MySQL URL, for messages: never its user or password."""
    parsed = urlparse(url)
    return f"{parsed.hostname or '127.0.0.1'}:{_port(url)}/{parsed.path.lstrip('/')}"


def _port(url: str) -> int:
    try:
        return urlparse(url).port or 3306
    except ValueError:
        raise DatabaseConfigError(
            "the port in INVCTL_DATABASE_URL is not a number from 1 to 65535: "
            "mysql://USER:PASSWORD@HOST:PORT/DB"
        ) from None


def _sqlite_path(raw_path: str) -> str:
    path = raw_path[1:] if raw_path.startswith("//") else raw_path
    if not path:
        raise ConfigError("the sqlite URL has no path: use sqlite:///relative.db or sqlite:////abs")
    return path


def _sqlite(path: str) -> peewee.Database:
    if path != ":memory:":
        _private_file(Path(path))
    # BEGIN IMMEDIATE takes the write lock up front, so two writers never deadlock on upgrade.
    return SerializedSqlite(
        path,
        pragmas=SQLITE_PRAGMAS,
        lock_type="IMMEDIATE",
        max_connections=64,
        stale_timeout=300,
        check_same_thread=False,
    )


def _private_file(path: Path) -> None:
    """A new database file is made 0600; a wider existing one is tightened, with a warning
    (refusing to start would be harsher for the same result)."""
    try:
        was = prepare_sqlite_file(path)
    except UnusableFile as exc:
        raise DatabaseConfigError(exc.message, path=str(path)) from None
    if was is not None:
        log.warning("database.mode_tightened", path=str(path), mode_was=f"{was:o}", mode="600")


def _mysql(url: str) -> peewee.Database:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    if not name:
        raise ConfigError("the mysql URL names no database: mysql://USER:PW@HOST:PORT/DB")
    return ReconnectingMySQL(
        name,
        user=unquote(parsed.username or ""),
        password=unquote(parsed.password or ""),
        host=parsed.hostname or "127.0.0.1",
        port=_port(url),
        charset="utf8mb4",
        max_connections=64,
        stale_timeout=300,
        timeout=10,
        connect_timeout=CONNECT_TIMEOUT_S,
    )


def is_mysql(db: peewee.Database) -> bool:
    return isinstance(db, peewee.MySQLDatabase)


def locked(query: peewee.ModelSelect[M]) -> peewee.ModelSelect[M]:
    """SELECT ... FOR UPDATE where the backend has row locks; SQLite's BEGIN IMMEDIATE
    already serialises writers, so there it is a plain SELECT."""
    database = query.model._meta.database
    return query.for_update() if getattr(database, "for_update", False) else query


def write_turn(db: peewee.Database) -> AbstractContextManager[Any]:
    """Hold while a write transaction runs: a queue for SQLite, nothing for MySQL's row locks."""
    writer = getattr(db, "writer", None)
    return writer if writer is not None else nullcontext()


class DatabaseClock:
    """The database server's clock (naive UTC), for what several hosts must agree on: the
    relay's lease. Each host's own clock may be seconds off; the one database is the same
    for all of them. Needs a connection (opened here when the caller holds none)."""

    def __init__(self, db: peewee.Database) -> None:
        self.db = db

    def now(self) -> datetime:
        sql = "SELECT UTC_TIMESTAMP(6)" if is_mysql(self.db) else SQLITE_NOW
        with self.db.connection_context():
            value = self.db.execute_sql(sql).fetchone()[0]
        return value if isinstance(value, datetime) else datetime.fromisoformat(value)


# SQLite's 'now' is its host's clock in UTC, to the millisecond.
SQLITE_NOW = "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"


# MySQL error numbers central tells apart (PyMySQL and peewee keep them as args[0]).
ER_LOCK_DEADLOCK = 1213  # InnoDB deadlock; on Galera also a write that lost certification
ER_UNKNOWN_COM_ERROR = 1047  # on Galera: "WSREP has not yet prepared node for application use"


def mysql_errno(exc: BaseException) -> int | None:
    """The MySQL error number of a database error, or None (SQLite, a lost connection)."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_write_conflict(exc: BaseException) -> bool:
    """A transaction refused for a concurrent one and rolled back, to be run again from the
    start: an InnoDB deadlock, or on Galera a commit certified after a conflicting one made
    on another node ("Deadlock found ..." / "WSREP detected deadlock/conflict")."""
    return isinstance(exc, peewee.OperationalError) and mysql_errno(exc) == ER_LOCK_DEADLOCK


def is_node_unavailable(exc: BaseException) -> bool:
    """A Galera node that is not part of the primary component (cut off, joining, or
    desynced) refuses statements with 1047; another node may answer."""
    return isinstance(exc, peewee.OperationalError) and mysql_errno(exc) == ER_UNKNOWN_COM_ERROR
