"""The replica's database handle: opening, schema migrations, meta, offsets, dead letters and
the versioned upserts of the replicated rows.

Write helpers never commit: the caller holds the transaction (apply_batch one per batch,
OrderDesk one per step of a sale).
Versioned upserts change a row only when the incoming change is newer than the stored one:
(central's epoch, version) compared in that order, so that after central was restored from a
backup (a new epoch, versions that start again lower) its changes still win.
The local orders have their own repository (replica.local_orders) and the reads their own
module (replica.queries); each binds the tables to this handle's database.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import peewee

from invwire.errors import PoisonRecord
from invwire.errors.agent import (
    ConfigError,
    ReplicaDamaged,
    ReplicaSchemaTooNew,
    ReplicaUnavailable,
)
from invwire.events import CategoryChanged, ProductChanged, StockChanged
from invwire.files import UnusableFile, prepare_sqlite_file
from invwire.logs import EventLog
from storeagent.replica import allowances, order_status
from storeagent.replica.models import ReplicaModels, bind_models
from storeagent.sync.source import Record, TopicPartition

SCHEMA_VERSION = 9
PRAGMAS = {"journal_mode": "wal", "synchronous": "normal", "busy_timeout": 5000}

META_SCHEMA_VERSION = "schema_version"
META_LAST_EVENT_AT = "last_event_at"
META_LAST_APPLIED_AT = "last_applied_at"
META_EVENTS_APPLIED = "events_applied"
META_BOOTSTRAPPED = "bootstrapped"
# Set when Kafka's log was found behind what this replica read (a topic re-created, a broker
# that lost its data): kept until a resync, so that a restart does not forget it.
META_LOG_BEHIND = "kafka_log_behind"
# The newest epoch of central's database this replica has seen in a record (sync.apply).
META_EPOCH = "epoch"
# Per partition, the offset and digest of the last record read (sync.apply), and per topic,
# Kafka's topic id: by these the sync loop tells a log replaced under it (sync.log_checks).
# They describe the rows that came from Kafka, and go with them (adopt, clear).
META_LOG_MARK_PREFIX = "log_mark:"
META_TOPIC_ID_PREFIX = "topic_id:"
LOG_META_PREFIXES = (META_LOG_MARK_PREFIX, META_TOPIC_ID_PREFIX)
# Set when a rebuild after a log loss held fewer rows than the replica before it (JSON of those
# counts): rows are missing until central republishes them (sync.log_guard).
META_LOG_SHORT = "kafka_log_short"


# SQLite errors that another attempt may not meet: a lock held too long by another
# connection, a failing or full disk. Any other database error is a bug or a broken file.
TRANSIENT_ERRORS = (
    "database is locked",
    "database table is locked",
    "disk i/o error",
    "database or disk is full",
    "unable to open database file",
)
# peewee wraps sqlite3's errors (its InterfaceError is no DatabaseError); both kinds may come
DATABASE_ERRORS = (peewee.DatabaseError, peewee.InterfaceError, sqlite3.Error)
# Database errors about the values written, not the database: a constraint (NOT NULL, UNIQUE,
# CHECK, a datatype mismatch), a string or blob too big, a value of a type SQLite cannot store.
VALUE_ERRORS = (peewee.IntegrityError, peewee.DataError, sqlite3.IntegrityError, sqlite3.DataError)
BINDING_ERROR = "error binding parameter"
# SQLite errors of a file that is broken, not busy: no retry or restart mends it.
DAMAGE_ERRORS = ("database disk image is malformed", "file is not a database", "malformed")
SALVAGE_HINT = (
    "stop here: save its queued sales with `storeagent salvage --db {path}` and "
    "`invctl sales replay FILE`, then move the file aside (the agent builds a new replica "
    "from Kafka)"
)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


_ISO_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}\+00:00")


def iso_as_sent(text: str, moment: datetime) -> str:
    """iso(moment) for a UTC `moment` parsed from `text`: `text` itself when it is in that
    form already, as central sends its times (matching it costs a third of formatting)."""
    return text if _ISO_UTC.fullmatch(text) else iso(moment)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a SQLite error worth retrying after a pause (see TRANSIENT_ERRORS)."""
    message = str(exc).lower()
    operational = isinstance(exc, (peewee.OperationalError, sqlite3.OperationalError))
    return operational and any(t in message for t in TRANSIENT_ERRORS)


def is_damage(exc: BaseException) -> bool:
    """Whether `exc` says the database file is damaged (corrupt, truncated, not SQLite)."""
    message = str(exc).lower()
    return isinstance(exc, DATABASE_ERRORS) and any(d in message for d in DAMAGE_ERRORS)


def is_record_fault(exc: Exception) -> bool:
    """Whether `exc`, raised while one record was written, is that record's fault.

    It is: the database errors about the values written (VALUE_ERRORS, a parameter that
    cannot be bound) and every error that is not about the machine (OverflowError for an
    integer SQLite cannot store, ValueError or UnicodeEncodeError for a value it cannot
    encode, TypeError, even a bug that only some records reach). It is not: database errors
    about the database (locked, I/O, full, read-only, corrupt, closed, a table missing), an
    OSError, and running out of memory; no record is to blame for those.
    """
    if isinstance(exc, VALUE_ERRORS):
        return True
    if isinstance(exc, DATABASE_ERRORS):
        return BINDING_ERROR in str(exc).lower()
    return not isinstance(exc, (MemoryError, OSError))


def open_replica(path: Path) -> Replica:
    """Open (creating if needed, mode 0600) the replica at `path` and bring its schema up to
    date. A path that is a directory or another kind of file is a ConfigError (exit 2), and
    so is a damaged file (ReplicaDamaged)."""
    _private_file(path)
    try:
        replica = Replica(ReplicaDatabase(str(path), pragmas=PRAGMAS, timeout=5))
        replica.migrate()
    except (OSError, peewee.DatabaseError) as exc:
        if is_damage(exc):
            raise damaged(path, str(exc)) from exc
        raise ReplicaUnavailable(f"cannot open the replica {path}: {exc}", path=str(path)) from exc
    return replica


class ReplicaDatabase(peewee.SqliteDatabase):
    """The replica's database, whose connections never create its file (`mode=rw`; the file
    is made, 0600, before the first one). Each thread has its own connection: one made after
    the file was deleted fails ("unable to open database file") instead of starting an empty
    replica at its path, whose sales would be lost with the process."""

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{quote(str(self.database))}?mode=rw"
        timeout = self._timeout  # type: ignore[attr-defined]  # peewee's, from timeout=
        connection = sqlite3.connect(
            uri, uri=True, timeout=timeout, isolation_level=None, **self.connect_params
        )
        try:
            self._add_conn_hooks(connection)  # type: ignore[attr-defined]  # peewee's pragmas
        except Exception:
            connection.close()
            raise
        return connection


def damaged(path: Path, problem: str) -> ReplicaDamaged:
    return ReplicaDamaged(
        f"the replica {path} is damaged ({problem}); " + SALVAGE_HINT.format(path=path),
        path=str(path),
        problem=problem,
    )


def _private_file(path: Path) -> None:
    """A wider existing replica is tightened to 0600 with a warning, not refused: the same
    result, without stopping a store's till."""
    try:
        was = prepare_sqlite_file(path)
    except UnusableFile as exc:
        raise ConfigError(f"replica: {exc.message}", field="db", path=str(path)) from None
    if was is not None:
        EventLog("storeagent.replica").warning(
            "replica.mode_tightened", path=str(path), mode_was=f"{was:o}", mode="600"
        )


class Replica:
    def __init__(self, db: peewee.SqliteDatabase) -> None:
        self.db = db
        self._tables: ReplicaModels = bind_models(db)
        # The epoch the upserts of Kafka events (upsert_category, upsert_product,
        # upsert_stock) write and compare with: the record's being applied, set by sync.apply
        # before its upsert (an attribute, not an argument: it runs once per record, and the
        # upserts keep the signatures their callers and test doubles use).
        self.event_epoch = 0

    def transaction(self) -> AbstractContextManager[Any]:
        """BEGIN IMMEDIATE: take the write lock up front so a batch never fails half-way."""
        return self.db.atomic("IMMEDIATE")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction inside the caller's: an error undoes only what was written
        inside it, and is raised again. When SQLite has already rolled back the whole
        transaction (it may, on a full disk or an I/O error), the error is raised unchanged,
        not hidden behind a failed ROLLBACK TO.

        It runs once per consumed record, so it speaks to the sqlite3 connection directly
        with one constant name (nested savepoints may share it): through peewee, with a
        name each, it cost a third of the apply rate; this way it costs nothing measurable.
        """
        connection = self.db.connection()
        connection.execute("SAVEPOINT record")
        try:
            yield
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK TO SAVEPOINT record")
                connection.execute("RELEASE SAVEPOINT record")
            raise
        connection.execute("RELEASE SAVEPOINT record")

    def close(self) -> None:
        self.db.close()

    def migrate(self) -> None:
        with self.transaction():
            self._tables.meta.create_table(safe=True)
            current = int(self.get_meta(META_SCHEMA_VERSION) or 0)
            if current > SCHEMA_VERSION:
                raise ReplicaSchemaTooNew(found=current, supported=SCHEMA_VERSION)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                _MIGRATIONS[version](self.db, self._tables)
                self.set_meta({META_SCHEMA_VERSION: str(version)})

    def epoch(self) -> int:
        """The newest epoch of central's database seen in a record; 0 when none was."""
        return int(self.get_meta(META_EPOCH) or 0)

    def holds_older_rows(self) -> bool:
        """Whether a category, product or stock row holds a change of an older database
        incarnation than the newest epoch seen. Epochs 0 (no header) and 1 are the same
        incarnation, the first: a replica only ever at those has none."""
        epoch = self.epoch()
        if epoch < 2:
            return False
        return bool(self.db.execute_sql(_OLDER_ROWS, (epoch,)).fetchone()[0])

    # get_meta, set_meta and save_offsets run a few times per applied batch: plain SQL, as
    # the query builder cost more than the SQLite work (about 2 µs a record at 500 a batch).
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute_sql(_SELECT_META, (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta(self) -> dict[str, str]:
        return {row.key: row.value for row in self._tables.meta.select()}

    def set_meta(self, values: Mapping[str, str]) -> None:
        if not values:
            return
        params = [str(part) for item in values.items() for part in item]
        self.db.execute_sql(_UPSERT_META.format(rows=_row_params(2, len(values))), params)

    def clear_replicated_state(self) -> None:
        """Drop what came from Kafka (catalog, stock, offsets); local orders are kept, and so
        is central's later status of them (order_status; its events, read again, change
        nothing)."""
        tables = self._tables
        for model in (tables.stock, tables.product, tables.category, tables.offset):
            model.delete().execute()
        for prefix in LOG_META_PREFIXES:
            self.db.execute_sql(_DELETE_PREFIXED, (len(prefix), prefix))
        self.set_meta({META_BOOTSTRAPPED: "0", META_LOG_BEHIND: ""})

    def adopt(self, rebuilt: Path) -> None:
        """Take what came from Kafka (catalog, stock, offsets, the last event's time) from the
        replica rebuilt at `rebuilt`, in one transaction: readers see the old replica, then the
        new one, never a gap. Local orders, central's status of them and the dead letters
        stay; the rebuilt replica's dead letters are added to them. The newest epoch seen is
        the newer of the two replicas'."""
        self.db.execute_sql("ATTACH DATABASE ? AS rebuilt", (str(rebuilt),))
        try:
            with self.transaction():
                self._copy_replicated(self._tables)
        finally:
            self.db.execute_sql("DETACH DATABASE rebuilt")

    def _copy_replicated(self, tables: ReplicaModels) -> None:
        for model in (tables.stock, tables.product, tables.category, tables.offset):
            name = model._meta.table_name
            self.db.execute_sql(f"DELETE FROM main.{name}")  # noqa: S608 (our table names)
            self._copy_rows(name, "INSERT")
        self._copy_rows(
            tables.dead_letter._meta.table_name, "INSERT OR IGNORE", skip=frozenset({"id"})
        )
        for prefix in LOG_META_PREFIXES:  # the marks and topic ids of the log it read
            self.db.execute_sql(_DELETE_PREFIXED, (len(prefix), prefix))
            self.db.execute_sql(_COPY_PREFIXED, (len(prefix), prefix))
        copied = {META_BOOTSTRAPPED: "1", META_LOG_BEHIND: ""}
        last_event = self._rebuilt_meta(META_LAST_EVENT_AT)
        if last_event is not None:
            copied[META_LAST_EVENT_AT] = last_event
        rebuilt_epoch = int(self._rebuilt_meta(META_EPOCH) or 0)
        if rebuilt_epoch > self.epoch():
            copied[META_EPOCH] = str(rebuilt_epoch)
        self.set_meta(copied)

    def _rebuilt_meta(self, key: str) -> str | None:
        row = self.db.execute_sql("SELECT value FROM rebuilt.meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _copy_rows(self, table: str, verb: str, skip: frozenset[str] = frozenset()) -> None:
        columns = ", ".join(c.name for c in self.db.get_columns(table) if c.name not in skip)
        into, source = f"main.{table} ({columns})", f"rebuilt.{table}"  # our own names
        self.db.execute_sql(f"{verb} INTO {into} SELECT {columns} FROM {source}")  # noqa: S608

    def is_bootstrapped(self) -> bool:
        return self.get_meta(META_BOOTSTRAPPED) == "1"

    def row_counts(self) -> dict[str, int]:
        """Rows that came from Kafka, by table (categories, products, stock)."""
        counted = self.db.execute_sql(_ROW_COUNTS).fetchone()
        return dict(zip(("categories", "products", "stock"), map(int, counted), strict=True))

    def stored_offsets(self) -> dict[TopicPartition, int]:
        return {
            TopicPartition(row.topic, row.partition): row.next_offset
            for row in self._tables.offset.select()
        }

    def save_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        params = [part for tp, nxt in offsets.items() for part in (tp.topic, tp.partition, nxt)]
        self.db.execute_sql(_UPSERT_OFFSETS.format(rows=_row_params(3, len(offsets))), params)

    # The upserts are plain SQL: they run once per consumed record, and building them with
    # the query builder each time cost about twenty times the SQLite work itself.
    def upsert_category(self, event: CategoryChanged) -> bool:
        params = (event.id, event.name, event.version, self.event_epoch)
        return self._changed(_UPSERT_CATEGORY, params)

    def upsert_product(self, event: ProductChanged) -> bool:
        params = (
            event.sku,
            event.name,
            str(event.price),
            event.category_id,
            event.description,
            int(event.active),
            event.version,
            self.event_epoch,
        )
        return self._changed(_UPSERT_PRODUCT, params)

    def upsert_stock(self, event: StockChanged, occurred_at: datetime) -> bool:
        return self.set_stock(
            event.sku,
            event.quantity,
            event.stock_version,
            epoch=self.event_epoch,
            updated_at=iso(occurred_at),
        )

    def set_stock(
        self,
        sku: str,
        quantity: int,
        stock_version: int,
        *,
        updated_at: str,
        epoch: int | None = None,
    ) -> bool:
        """The versioned upsert shared by Kafka events and central's order answers; `epoch`
        is central's (None: the newest this replica has seen)."""
        at = self.epoch() if epoch is None else epoch
        return self._changed(_UPSERT_STOCK, (sku, quantity, stock_version, updated_at, at))

    def _changed(self, sql: str, params: tuple[Any, ...]) -> bool:
        return bool(self.db.execute_sql(sql, params).rowcount)

    # --- the set-based upserts of a batch's fast path (sync.batch_apply) ---------------------

    def writes_in_bulk(self) -> bool:
        """Whether upsert_rows writes what the per-record upserts would: unless a subclass
        replaced one of those (a test double failing one record's write), whose batches the
        fast path must then leave to them, record by record."""
        own = Replica.upsert_category, Replica.upsert_product, Replica.upsert_stock
        mine = type(self).upsert_category, type(self).upsert_product, type(self).upsert_stock
        return mine == own

    def stored_ranks(self, table: VersionedTable, keys: Collection[Any]) -> dict[Any, Rank]:
        """The stored (epoch, version) of the rows of `table` with these keys; a key without a
        row is left out. One SELECT per MAX_KEYS_PER_SELECT keys."""
        ranks: dict[Any, Rank] = {}
        ordered = list(keys)
        connection = self.db.connection()
        for start in range(0, len(ordered), MAX_KEYS_PER_SELECT):
            chunk = ordered[start : start + MAX_KEYS_PER_SELECT]
            sql = table.select_ranks.format(params=", ".join("?" * len(chunk)))
            for key, epoch, version in connection.execute(sql, chunk):
                ranks[key] = (epoch, version)
        return ranks

    def upsert_rows(self, table: VersionedTable, rows: Sequence[tuple[Any, ...]]) -> int:
        """`table`'s versioned upsert for each row (its parameters, as the per-record upsert
        binds them) in one executemany; the number of rows it changed."""
        if not rows:
            return 0
        return int(self.db.connection().executemany(table.upsert, rows).rowcount)

    def add_dead_letter(self, record: Record, error: PoisonRecord, now: datetime) -> None:
        """Keep the raw record; replayed, the same record is stored only once."""
        self._tables.dead_letter.insert(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            reason=error.code,
            # an exception's text may quote the record's bad value, a lone surrogate included
            detail=error.message[:1000].encode("utf-8", "backslashreplace").decode(),
            created_at=iso(now),
        ).on_conflict_ignore().execute()

    def dead_letter_count(self) -> int:
        return int(self._tables.dead_letter.select().count())

    def quick_check(self) -> list[str]:
        """SQLite's own check of the whole file (PRAGMA quick_check): ["ok"], or what is
        wrong. About a quarter of a second for a replica of 100,000 products."""
        return [str(row[0]) for row in self.db.execute_sql("PRAGMA quick_check").fetchall()]


_SELECT_META = "SELECT value FROM meta WHERE key = ?"
_UPSERT_META = (
    "INSERT INTO meta (key, value) VALUES {rows} "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_UPSERT_OFFSETS = (
    'INSERT INTO offsets (topic, "partition", next_offset) VALUES {rows} '
    'ON CONFLICT (topic, "partition") DO UPDATE SET next_offset = excluded.next_offset'
)


def _row_params(columns: int, rows: int) -> str:
    """Placeholders of a multi-row VALUES: (?, ?), (?, ?) for 2 columns, 2 rows."""
    row = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * rows)


_OLDER_ROWS = (
    "SELECT EXISTS (SELECT 1 FROM categories WHERE epoch < ?1) "
    "OR EXISTS (SELECT 1 FROM products WHERE epoch < ?1) "
    "OR EXISTS (SELECT 1 FROM stock WHERE epoch < ?1)"
)
_ROW_COUNTS = (
    "SELECT (SELECT COUNT(*) FROM categories), (SELECT COUNT(*) FROM products), "
    "(SELECT COUNT(*) FROM stock)"
)
_DELETE_PREFIXED = "DELETE FROM main.meta WHERE substr(key, 1, ?) = ?"
_COPY_PREFIXED = (
    "INSERT INTO main.meta (key, value) SELECT key, value FROM rebuilt.meta "
    "WHERE substr(key, 1, ?) = ?"
)
# A change wins when (epoch, version) is greater, compared as a row value (lexicographically):
# a newer epoch wins whatever its version, the same epoch by version.
_UPSERT_CATEGORY = (
    "INSERT INTO categories (id, name, version, epoch) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, version = excluded.version, "
    "epoch = excluded.epoch "
    "WHERE (excluded.epoch, excluded.version) > (categories.epoch, categories.version)"
)
_UPSERT_PRODUCT = (
    "INSERT INTO products (sku, name, price, category_id, description, active, version, epoch) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (sku) DO UPDATE SET name = excluded.name, price = excluded.price, "
    "category_id = excluded.category_id, description = excluded.description, "
    "active = excluded.active, version = excluded.version, epoch = excluded.epoch "
    "WHERE (excluded.epoch, excluded.version) > (products.epoch, products.version)"
)
_UPSERT_STOCK = (
    "INSERT INTO stock (sku, quantity, stock_version, updated_at, epoch) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (sku) DO UPDATE SET quantity = excluded.quantity, "
    "stock_version = excluded.stock_version, updated_at = excluded.updated_at, "
    "epoch = excluded.epoch "
    "WHERE (excluded.epoch, excluded.stock_version) > (stock.epoch, stock.stock_version)"
)


Rank = tuple[int, int]  # (central's epoch, the row's version): the larger is the newer change
# Keys bound in one SELECT of stored_ranks: well under SQLite's limit on bound parameters.
MAX_KEYS_PER_SELECT = 500


@dataclass(frozen=True)
class VersionedTable:
    """A replicated table's versioned upsert (its parameters in the order the per-record
    upsert binds them) and the SELECT of its stored ranks by key ({params}: placeholders)."""

    name: str
    upsert: str
    select_ranks: str


CATEGORIES = VersionedTable(
    "categories",
    _UPSERT_CATEGORY,
    "SELECT id, epoch, version FROM categories WHERE id IN ({params})",
)
PRODUCTS = VersionedTable(
    "products",
    _UPSERT_PRODUCT,
    "SELECT sku, epoch, version FROM products WHERE sku IN ({params})",
)
STOCK = VersionedTable(
    "stock",
    _UPSERT_STOCK,
    "SELECT sku, epoch, stock_version FROM stock WHERE sku IN ({params})",
)


def _schema_v1(db: peewee.SqliteDatabase, tables: ReplicaModels) -> None:
    db.create_tables(tables.schema_v1(), safe=True)


def _schema_v2(db: peewee.SqliteDatabase, tables: ReplicaModels) -> None:
    db.create_tables([tables.local_order], safe=True)


def _schema_v3(db: peewee.SqliteDatabase, tables: ReplicaModels) -> None:
    """The offline queue: when a sale was queued, and whether a failed one may be at central."""
    table = tables.local_order._meta.table_name
    present = {column.name for column in db.get_columns(table)}
    for name, kind in (("queued_at", "TEXT"), ("outcome_unknown", "INTEGER NOT NULL DEFAULT 0")):
        if name not in present:
            db.execute_sql(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _schema_v4(db: peewee.SqliteDatabase, tables: ReplicaModels) -> None:
    """Which agent process sent a pending sale (sales.rules.orphaned)."""
    table = tables.local_order._meta.table_name
    if "instance_id" not in {column.name for column in db.get_columns(table)}:
        db.execute_sql(f"ALTER TABLE {table} ADD COLUMN instance_id TEXT")


def _schema_v5(db: peewee.SqliteDatabase, tables: ReplicaModels) -> None:
    """The store each sale was recorded under (replica.identity): sales recorded before are
    adopted by the store the replica belongs to when the agent first opens it."""
    table = tables.local_order._meta.table_name
    if "store_id" not in {column.name for column in db.get_columns(table)}:
        db.execute_sql(f"ALTER TABLE {table} ADD COLUMN store_id TEXT")


def _schema_v6(db: peewee.SqliteDatabase, tables: ReplicaModels) -> None:
    """Central's later status of this store's orders (replica.order_status)."""
    order_status.create_table(db)


def _schema_v7(db: peewee.SqliteDatabase, tables: ReplicaModels) -> None:
    """Central's epoch of each replicated row's change: rows already there hold epoch 0,
    which any change carrying central's epoch (1 or more) outranks."""
    for model in (tables.category, tables.product, tables.stock):
        table = model._meta.table_name
        if "epoch" not in {column.name for column in db.get_columns(table)}:
            db.execute_sql(f"ALTER TABLE {table} ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0")


def _schema_v8(db: peewee.SqliteDatabase, tables: ReplicaModels) -> None:
    """Sales recovered after central's restore (sales.recovery): the epoch of central that
    last confirmed or held each sale (0: before epochs were recorded, the first incarnation),
    and the outcome of the last recovery check."""
    table = tables.local_order._meta.table_name
    present = {column.name for column in db.get_columns(table)}
    for name, kind in (("central_epoch", "INTEGER NOT NULL DEFAULT 0"), ("recovery", "TEXT")):
        if name not in present:
            db.execute_sql(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    # Looked at every few seconds (the newest epoch, the sales to send) and at each scrape
    # (the outcomes): never a scan of every sale the store ever made.
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS {table}_epoch ON {table} (central_epoch)")
    db.execute_sql(
        f"CREATE INDEX IF NOT EXISTS {table}_status_epoch ON {table} (status, central_epoch)"
    )
    db.execute_sql(
        f"CREATE INDEX IF NOT EXISTS {table}_recovery ON {table} (recovery) "
        "WHERE recovery IS NOT NULL"
    )


def _schema_v9(db: peewee.SqliteDatabase, tables: ReplicaModels) -> None:
    """The store's allowances and the units its sales took under them (replica.allowances),
    and why a queued sale was not sold under them."""
    allowances.create_tables(db)
    table = tables.local_order._meta.table_name
    if "allowance_reason" not in {column.name for column in db.get_columns(table)}:
        db.execute_sql(f"ALTER TABLE {table} ADD COLUMN allowance_reason TEXT")


_MIGRATIONS: dict[int, Callable[[peewee.SqliteDatabase, ReplicaModels], None]] = {
    1: _schema_v1,
    2: _schema_v2,
    3: _schema_v3,
    4: _schema_v4,
    5: _schema_v5,
    6: _schema_v6,
    7: _schema_v7,
    8: _schema_v8,
    9: _schema_v9,
}
