"""`central restore`: replace central's database with a backup, and start a new epoch.

Refused while central runs against the database. "Runs" is read two ways, as neither alone
sees every process:
- any backend: the outbox relay's lease (central.outbox) is held and not yet expired. It
  covers `central serve` and `central relay` on any host, but not `serve --no-relay` or a
  central without Kafka; after a crash it holds for up to its 3 s (relay_lease_seconds).
- SQLite: another process has the database open. SQLite's unix VFS holds a shared lock on
  the DMS byte of the `-shm` file for as long as a connection of a WAL database is open
  (https://www.sqlite.org/walformat.html, "the DMS lock"); a lock taken or refused here
  says whether anyone else does. It sees processes of this host only (SQLite's files are
  local); a crashed process holds nothing.
- MariaDB: another connection to the database (information_schema.PROCESSLIST). Central
  keeps its pooled connections open while it runs. A user without the PROCESS privilege
  sees only its own connections: a central logged in as another user goes unseen.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import peewee

from central import migrations, models
from central.backup import (
    CLIENT_TOOLS,
    Manifest,
    MariadbLogin,
    client_options,
    database_kind,
    extract_payload,
    find_tool,
    read_manifest,
    run_tool,
    sqlite_path,
)
from central.db import connect
from central.epochs import RestoredFrom, current_epoch, start_restored_epoch
from central.outbox import LEASE_NAME
from invwire.errors.central import (
    BackupInvalid,
    BackupSchemaTooNew,
    BackupWrongDatabase,
    CentralRunning,
    RestoreUnconfirmed,
)

# The unix VFS's "dead man switch" byte of the -shm file: UNIX_SHM_BASE (120) + 8 locks.
SQLITE_SHM_DMS_BYTE = 128


@dataclass(frozen=True)
class Restored:
    manifest: Manifest
    epoch: int
    previous_epoch: int | None  # of the database replaced; None when it was lost
    kept_aside: Path | None  # SQLite: the replaced database, kept under this name


class Target(Protocol):
    where: str

    def refuse_if_in_use(self, now: datetime) -> None: ...

    def previous_epoch(self) -> int | None: ...

    def scratch(self) -> Path: ...

    def replace(self, payload: Path, now: datetime) -> Path | None: ...


def restore_backup(
    database_url: str,
    archive: Path,
    now: datetime,
    confirm: Callable[[Manifest, str], bool],
) -> Restored:
    """Check the backup, refuse while central runs, ask `confirm`, replace the content,
    bring the schema up to date and record the restore as a new epoch."""
    manifest = read_manifest(archive)
    kind = database_kind(database_url)
    if manifest.database != kind:
        raise BackupWrongDatabase(
            f"the backup is of a {manifest.database} database; the configured one is {kind}"
        )
    latest = max(version for version, _, _ in migrations.MIGRATIONS)
    if manifest.facts.schema_version > latest:
        raise BackupSchemaTooNew(
            f"the backup has schema version {manifest.facts.schema_version}; this central "
            f"knows up to {latest}: restore it with the central that made it"
        )
    target: Target = (
        SqliteTarget(sqlite_path(database_url)) if kind == "sqlite" else MariadbTarget(database_url)
    )
    target.refuse_if_in_use(now)
    previous = target.previous_epoch()
    if not confirm(manifest, target.where):
        raise RestoreUnconfirmed(
            f"nothing was changed: run again with --yes to replace {target.where}"
        )
    scratch = target.scratch()
    try:
        payload = extract_payload(archive, manifest, scratch)
        target.refuse_if_in_use(now)  # again: the confirmation may have taken a while
        kept = target.replace(payload, now)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    epoch = _record(database_url, manifest, previous, now)
    return Restored(manifest, epoch, previous, kept)


def _record(database_url: str, manifest: Manifest, previous: int | None, now: datetime) -> int:
    """Migrate the restored database and start its epoch: one more than both the backup's
    and the replaced database's, so it never repeats one that was published from."""
    db = connect(database_url)
    try:
        with db.bind_ctx(models.ALL_MODELS, bind_refs=False, bind_backrefs=False):
            migrations.migrate(db)
            epoch = max(current_epoch(db), previous or 0) + 1
            source = RestoredFrom(
                created_at=manifest.created_at,
                epoch=manifest.facts.epoch,
                outbox_position=manifest.facts.outbox_position,
                sha256=manifest.sha256,
            )
            start_restored_epoch(db, epoch, source, now)
    finally:
        close_database(db)
    return epoch


def close_database(db: peewee.Database) -> None:
    if hasattr(db, "close_all"):
        db.close_all()
    elif not db.is_closed():
        db.close()


def _lease_refusal(owner: str, expires_at: datetime | str | None, now: datetime) -> None:
    if isinstance(expires_at, str):
        try:
            expires_at = datetime.fromisoformat(expires_at)
        except ValueError:
            return
    if expires_at is not None and expires_at > now:
        raise CentralRunning(
            f"central's outbox relay (owner {owner}: host:pid:random) holds its lease until "
            f"{expires_at.isoformat(timespec='seconds')}Z: stop every central process first "
            "(a stopped one's lease runs out by then)",
            owner=owner,
        )


# --- SQLite ----------------------------------------------------------------------------------


class SqliteTarget:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def refuse_if_in_use(self, now: datetime) -> None:
        if sqlite_in_use(self.path):
            raise CentralRunning(
                f"another process has the database {self.path} open (central?): stop it first"
            )
        with self._current() as connection:
            if connection is not None:
                row = _fetch_lease(connection)
                if row is not None:
                    _lease_refusal(*row, now=now)

    def previous_epoch(self) -> int | None:
        with self._current() as connection:
            if connection is None:
                return None
            try:
                return int(connection.execute("SELECT MAX(epoch) FROM epochs").fetchone()[0])
            except (sqlite3.Error, TypeError):
                return None  # before migration 9: epoch 1, which the backup's covers

    @contextmanager
    def _current(self) -> Iterator[sqlite3.Connection | None]:
        """The database being replaced, when it is there and readable: it may be lost."""
        if not self.path.is_file():
            yield None
            return
        try:
            connection = sqlite3.connect(self.path, timeout=10)
            connection.execute("SELECT 1 FROM sqlite_master").fetchall()
        except sqlite3.Error:
            yield None
            return
        with closing(connection):
            yield connection

    def scratch(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{self.path.name}.restore-", dir=self.path.parent))

    def replace(self, payload: Path, now: datetime) -> Path | None:
        """The replaced database, its -wal and -shm are renamed together (the -wal may hold
        committed changes) to NAME.before-restore-TIME; the restored file takes the name."""
        _check_sqlite_payload(payload)
        kept = None
        if self.path.exists():
            kept = self.path.with_name(
                f"{self.path.name}.before-restore-{now.strftime('%Y%m%dT%H%M%S%fZ')}"
            )
            for suffix in ("-wal", "-shm", "-journal"):
                companion = Path(f"{self.path}{suffix}")
                if companion.exists():
                    os.replace(companion, Path(f"{kept}{suffix}"))
            os.replace(self.path, kept)
        os.replace(payload, self.path)
        return kept


def sqlite_in_use(path: Path) -> bool:
    """Whether another process holds the SQLite database at `path` open (in WAL mode)."""
    try:
        fd = os.open(f"{path}-shm", os.O_RDWR)
    except FileNotFoundError:
        return False  # SQLite makes the -shm at the first open, and removes it at the last close
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SQLITE_SHM_DMS_BYTE, os.SEEK_SET)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, SQLITE_SHM_DMS_BYTE, os.SEEK_SET)
        return False
    finally:
        os.close(fd)


def _fetch_lease(connection: sqlite3.Connection) -> tuple[str, str] | None:
    try:
        row = connection.execute(
            "SELECT owner, expires_at FROM relay_lease WHERE name = ?", (LEASE_NAME,)
        ).fetchone()
    except sqlite3.Error:
        return None
    return (str(row[0]), str(row[1])) if row else None


def _check_sqlite_payload(payload: Path) -> None:
    try:
        with closing(sqlite3.connect(payload)) as connection:
            result = connection.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        raise BackupInvalid(f"the backup's database cannot be read: {exc}") from None
    if result != "ok":
        raise BackupInvalid(f"the backup's database fails SQLite's check: {result}")


# --- MariaDB ---------------------------------------------------------------------------------


class MariadbTarget:
    def __init__(self, url: str) -> None:
        self.url = url
        self.login = MariadbLogin.from_url(url)
        self.where = self.login.where

    def refuse_if_in_use(self, now: datetime) -> None:
        others = self._query(
            "SELECT ID, USER, HOST FROM information_schema.PROCESSLIST "
            "WHERE DB = DATABASE() AND ID <> CONNECTION_ID()"
        )
        if others:
            hosts = sorted({str(host).rsplit(":", 1)[0] for _, _, host in others})
            raise CentralRunning(
                f"{len(others)} other connection(s) to the database {self.where} (from "
                f"{', '.join(hosts)}): stop every central process first",
                connections=len(others),
            )
        rows = self._query_if_table(
            "relay_lease", "SELECT owner, expires_at FROM relay_lease WHERE name = %s", LEASE_NAME
        )
        if rows:
            _lease_refusal(str(rows[0][0]), rows[0][1], now=now)

    def previous_epoch(self) -> int | None:
        rows = self._query_if_table("epochs", "SELECT MAX(epoch) FROM epochs")
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def scratch(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="invctl-restore-"))

    def replace(self, payload: Path, now: datetime) -> Path | None:
        """Every table of the database is dropped (a table the backup does not have would
        otherwise survive it), then the dump is loaded. Not one transaction: MariaDB's DDL
        commits; a load that fails leaves the database to restore again."""
        tool = find_tool(CLIENT_TOOLS)
        self._drop_everything()
        with client_options(self.login) as options, payload.open("rb") as dump:
            run_tool(
                [
                    tool,
                    f"--defaults-extra-file={options}",
                    "--batch",
                    "--binary-mode",
                    "--default-character-set=utf8mb4",
                    self.login.database,
                ],
                stdin=dump,
            )
        return None

    def _drop_everything(self) -> None:
        db = connect(self.url)
        try:
            with db.connection_context():
                tables = db.execute_sql(
                    "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = DATABASE()"
                ).fetchall()
                db.execute_sql("SET FOREIGN_KEY_CHECKS = 0")
                for name, kind in tables:
                    what = "VIEW" if kind == "VIEW" else "TABLE"
                    db.execute_sql(f"DROP {what} IF EXISTS `{name.replace('`', '``')}`")
                db.execute_sql("SET FOREIGN_KEY_CHECKS = 1")
        finally:
            close_database(db)

    def _query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        db = connect(self.url)
        try:
            with db.connection_context():
                return list(db.execute_sql(sql, params or None).fetchall())
        finally:
            close_database(db)

    def _query_if_table(self, table: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        db = connect(self.url)
        try:
            with db.connection_context():
                if not db.table_exists(table):
                    return []
                return list(db.execute_sql(sql, params or None).fetchall())
        finally:
            close_database(db)
