"""`storeagent salvage`: the sales of a replica, damaged or not, that central may still have to
hear of, written to a JSON-lines file that `invctl sales replay` sends with their original
idempotency keys.

The replica is never changed: its file (and its `-wal`) are copied to a private temporary
directory and read there. Reading goes as far as SQLite lets it, in three ways:

1. `read`: with `PRAGMA writable_schema=ON`, SQLite loads a schema that names pages the file
   no longer has (a truncated file) instead of refusing every statement, and the sales are
   read by a scan of their table, which no index is needed for;
2. `rowid`: when the scan breaks off, every sale is looked up by its row id, so that only the
   sales on lost pages stay unread;
3. `recover`: when the table cannot be read at all, the sqlite3 command line's `.recover`
   (which needs a sqlite3 built with the sqlite_dbpage table; Debian 12's is not, and is then
   reported as unavailable) rebuilds what it finds, and the sales are read from that.

Each sale gets what replaying it needs: `replay` for a sale queued offline or left pending by
a process that died before answering its till (its customer took the goods); `voided` for a
sale its till was told failed, because it is in the doubt journal beside the replica
(`<replica>.doubt`) or failed with its outcome unknown. A voided sale is never replayed; when
`at_central`, central may hold it, and `invctl sales replay` cancels it there.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from invwire.errors.agent import AgentError, ConfigError
from storeagent.sales import rules
from storeagent.sales.doubt import Doubt, journal_path, parse_doubt

COLUMNS = (
    "seq",
    "local_ref",
    "idempotency_key",
    "lines",
    "status",
    "reason_code",
    "outcome_unknown",
    "created_at",
    "queued_at",
    "instance_id",
    "store_id",
)
MISSES_AFTER_LAST = 1000  # row ids are dense (no sale is ever deleted): this many gone = the end
RECOVER_TIMEOUT_S = 300
PRIVATE_MODE = 0o600


class SalvageFailed(AgentError):
    """No sale could be read from the replica."""

    code = "salvage.failed"


@dataclass(frozen=True)
class SalvagedSale:
    """One line of the salvage file."""

    idempotency_key: str
    local_ref: str
    lines: list[dict[str, Any]]
    status: str  # as the replica recorded it ("unknown": only the doubt journal names it)
    store_id: str | None
    created_at: str | None
    queued_at: str | None
    instance_id: str | None
    replay: bool  # its customer took the goods: send it to central with its key
    voided: bool  # its till was told it failed: never replayed
    at_central: bool  # voided, and central may hold it: looked up and cancelled there
    reason: str | None

    def to_line(self) -> bytes:
        return (json.dumps(asdict(self), separators=(",", ":")) + "\n").encode()


@dataclass(frozen=True)
class Salvage:
    sales: list[SalvagedSale]
    method: str  # read, rowid or recover
    unreadable: int  # sales whose rows could not be read (rowid)
    store_id: str | None  # the replica's own, from its meta table
    problem: str | None  # what stopped a plain read of the table, if anything

    def counts(self) -> dict[str, int]:
        return {
            "sales": len(self.sales),
            "to_replay": sum(sale.replay for sale in self.sales),
            "voided": sum(sale.voided for sale in self.sales),
            "unreadable": self.unreadable,
        }


@dataclass(frozen=True)
class _Rows:
    rows: list[dict[str, Any]]
    method: str
    unreadable: int = 0
    problem: str | None = None


def salvage(db: Path, *, sqlite_cli: str | None = None) -> Salvage:
    """The sales of the replica `db` to replay or void. `sqlite_cli`: the sqlite3 command for
    `.recover` (default: `sqlite3` on PATH). Raises ConfigError for a missing file and
    SalvageFailed when no sale could be read."""
    if not db.is_file():
        raise ConfigError(f"no replica file {db}", field="db", path=str(db))
    with _private_copy(db) as copy:
        store_id = _replica_store_id(copy)
        found = _read_rows(copy, sqlite_cli or shutil.which("sqlite3"))
        problem = found.problem or _damage(copy)
    doubts = _doubts(journal_path(db))
    sales = _classified(found.rows, doubts, store_id)
    return Salvage(sales, found.method, found.unreadable, store_id, problem)


def write_salvage(result: Salvage, out: Path) -> None:
    """Write the sales to `out`, a new file (mode 0600: sales are the store's business)."""
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        raise ConfigError(
            f"{out} exists: name another file with --out", field="out", path=str(out)
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}", field="out") from None
    with os.fdopen(fd, "wb") as handle:
        for sale in result.sales:
            handle.write(sale.to_line())
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def _private_copy(db: Path) -> Iterator[Path]:
    """A copy of the replica and its write-ahead log, in a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="storeagent-salvage-") as directory:
        copy = Path(directory) / "replica.db"
        shutil.copyfile(db, copy)
        wal = db.with_name(db.name + "-wal")
        if wal.is_file():
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        yield copy


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=5, isolation_level=None)
    # A schema naming pages the file lost is loaded as far as it goes, not refused whole.
    connection.execute("PRAGMA writable_schema=ON")
    return connection


def _replica_store_id(copy: Path) -> str | None:
    try:
        with closing(_connect(copy)) as connection:
            meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError:
        return None
    value = meta.get("store_id")
    return value if isinstance(value, str) else None


def _damage(copy: Path) -> str | None:
    """What SQLite's own check finds wrong with the file (None: nothing)."""
    try:
        with closing(_connect(copy)) as connection:
            found = [str(row[0]) for row in connection.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if found == ["ok"] else "; ".join(found)


def _read_rows(copy: Path, sqlite_cli: str | None) -> _Rows:
    try:
        with closing(_connect(copy)) as connection:
            columns = _columns(connection)
            return _scan(connection, columns)
    except sqlite3.DatabaseError as exc:
        problem = f"{type(exc).__name__}: {exc}"
    try:
        with closing(_connect(copy)) as connection:
            return _by_rowid(connection, _columns(connection), problem)
    except sqlite3.DatabaseError as exc:
        problem = f"{problem}; then {type(exc).__name__}: {exc}"
    return _recovered(copy, sqlite_cli, problem)


def _columns(connection: sqlite3.Connection) -> list[str]:
    """The sales table's columns this salvage knows (older replicas have fewer)."""
    present = {str(row[1]) for row in connection.execute("PRAGMA table_info(local_orders)")}
    if not present:
        raise sqlite3.DatabaseError("no readable local_orders table")
    return [name for name in COLUMNS if name in present]


def _select(columns: list[str]) -> str:
    return f"SELECT {', '.join(columns)} FROM local_orders"  # noqa: S608 (names from COLUMNS)


def _scan(connection: sqlite3.Connection, columns: list[str]) -> _Rows:
    rows = connection.execute(_select(columns)).fetchall()
    return _Rows([dict(zip(columns, row, strict=True)) for row in rows], "read")


def _by_rowid(connection: sqlite3.Connection, columns: list[str], problem: str) -> _Rows:
    """Each row looked up by its id, from 1 to the last id (when SQLite can tell it) and on
    until MISSES_AFTER_LAST ids in a row give no sale: a lookup needs only the table's pages
    on its own path, so only the sales on lost pages stay unread."""
    rows: list[dict[str, Any]] = []
    failed: list[int] = []  # ids whose lookup met a damaged page
    since_found, rowid = 0, 0
    last = _last_rowid(connection)
    query = _select(columns) + " WHERE rowid = ?"
    while rowid < last or since_found < MISSES_AFTER_LAST:
        rowid += 1
        try:
            found = connection.execute(query, (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            failed.append(rowid)
            found = None
        if found is None:
            since_found += 1
            continue
        since_found = 0
        rows.append(dict(zip(columns, found, strict=True)))
    if not rows:
        raise sqlite3.DatabaseError(f"no row could be read ({len(failed)} lookups failed)")
    end = max(last, rowid - since_found)  # the last id known to hold a sale
    unread = [n for n in failed if n <= end]
    if len(unread) < len(failed) and not last:
        problem += f"; the table's end could not be read: sales after id {end} may be lost"
    return _Rows(rows, "rowid", len(unread), problem)


def _last_rowid(connection: sqlite3.Connection) -> int:
    try:
        found = connection.execute("SELECT max(rowid) FROM local_orders").fetchone()
    except sqlite3.DatabaseError:
        return 0
    return int(found[0] or 0) if found else 0


def _recovered(copy: Path, sqlite_cli: str | None, problem: str) -> _Rows:
    """The sales table as the sqlite3 command line's `.recover` rebuilds it."""
    if sqlite_cli is None:
        raise SalvageFailed(f"cannot read the sales ({problem}); no sqlite3 for .recover")
    try:
        done = subprocess.run(
            [sqlite_cli, str(copy), ".recover"],
            capture_output=True,
            timeout=RECOVER_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SalvageFailed(f"cannot read the sales ({problem}); .recover: {exc}") from None
    failure = done.stderr.decode(errors="replace").strip()
    if done.returncode != 0 or failure:  # a partial script would hide what it missed
        raise SalvageFailed(
            f"cannot read the sales ({problem}); sqlite3 .recover is unavailable or failed: "
            f"{failure or done.returncode}"
        )
    with closing(sqlite3.connect(":memory:", isolation_level=None)) as rebuilt:
        rebuilt.executescript(done.stdout.decode(errors="replace"))
        rows = _scan(rebuilt, _columns(rebuilt)).rows
    return _Rows(rows, "recover", problem=problem)


def _doubts(path: Path) -> dict[str, Doubt]:
    """The doubt journal's entries by local_ref, read without changing the file (a torn
    line is skipped: that process never answered its till)."""
    try:
        raw = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    doubts = {}
    for line in raw.splitlines():
        try:
            doubt = parse_doubt(json.loads(line))
        except ValueError:
            doubt = None
        if doubt is not None:
            doubts[doubt.local_ref] = doubt
    return doubts


def _classified(
    rows: list[dict[str, Any]], doubts: Mapping[str, Doubt], store_id: str | None
) -> list[SalvagedSale]:
    sales = []
    for row in sorted(rows, key=lambda found: int(found.get("seq") or 0)):
        sale = _sale(row, doubts.get(str(row.get("local_ref"))), store_id)
        if sale is not None:
            sales.append(sale)
    seen = {sale.local_ref for sale in sales} | {str(row.get("local_ref")) for row in rows}
    sales += [_journaled_only(doubt, store_id) for ref, doubt in doubts.items() if ref not in seen]
    return sales


def _sale(row: dict[str, Any], doubt: Doubt | None, store_id: str | None) -> SalvagedSale | None:
    """A sale to replay or to void, or None when it is settled (confirmed, rejected, failed
    for certain, already voided)."""
    status = str(row.get("status"))
    in_doubt = status == rules.FAILED and bool(row.get("outcome_unknown"))
    voided_already = row.get("reason_code") == rules.VOIDED
    waiting = status in (*rules.WAITING, rules.PENDING)
    if doubt is None and not waiting and not (in_doubt and not voided_already):
        return None
    voided = doubt is not None or in_doubt
    return SalvagedSale(
        idempotency_key=str(row.get("idempotency_key")),
        local_ref=str(row.get("local_ref")),
        lines=_lines(row.get("lines")),
        status=status,
        store_id=_text(row.get("store_id")) or store_id,
        created_at=_text(row.get("created_at")),
        queued_at=_text(row.get("queued_at")),
        instance_id=_text(row.get("instance_id")),
        replay=waiting and not voided,
        voided=voided,
        at_central=voided and (doubt.at_central if doubt is not None else True),
        reason=_reason(row, doubt),
    )


def _journaled_only(doubt: Doubt, store_id: str | None) -> SalvagedSale:
    """A sale only the doubt journal names (its row is lost): voided, never replayed."""
    return SalvagedSale(
        idempotency_key=doubt.key,
        local_ref=doubt.local_ref,
        lines=[],
        status="unknown",
        store_id=store_id,
        created_at=doubt.at,
        queued_at=None,
        instance_id=doubt.instance_id,
        replay=False,
        voided=True,
        at_central=doubt.at_central,
        reason=f"{rules.NOT_RECORDED}: {doubt.message}",
    )


def _reason(row: dict[str, Any], doubt: Doubt | None) -> str | None:
    if doubt is not None:
        return f"{rules.NOT_RECORDED}: {doubt.message}"
    return _text(row.get("reason_code"))


def _lines(raw: object) -> list[dict[str, Any]]:
    try:
        lines = json.loads(str(raw))
    except ValueError:
        return []
    return lines if isinstance(lines, list) else []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
