"""Sales in doubt: their till was answered with an error, but the replica could not record
that outcome (it refused the write after central answered, or the queueing write failed).
Such a sale is void: it never happens, whatever central holds (sales.replay cancels it
there).

The desk remembers each one in memory and appends it to the doubt journal, a small file
beside the replica (`replica.db.doubt`, JSON lines, mode 0600), fsync'd before the till is
answered. It is a file of its own so that it can be written while SQLite is locked or
failing. The replayer (and the agent at start, before it serves a till) records every
journaled sale in the replica as failed (`order.not_recorded`) and then drops it from the
journal. An agent that restarts therefore never mistakes such a sale for one left pending
by a process that died before answering (an orphan, which is completed).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from invwire.files import sync_directory
from invwire.logs import EventLog
from storeagent.replica.local_orders import LocalOrders

SUFFIX = ".doubt"
PRIVATE_MODE = 0o600


def journal_path(replica_path: Path) -> Path:
    """The doubt journal of the replica at `replica_path`: beside it."""
    return replica_path.with_name(replica_path.name + SUFFIX)


@dataclass(frozen=True)
class Doubt:
    """A sale answered with an error whose outcome the replica did not record."""

    local_ref: str
    key: str
    at_central: bool  # central may hold its order: the replayer looks it up and cancels it
    order_id: str | None  # central's order for it, when central had answered with one
    message: str  # why, kept as the sale's reason
    instance_id: str  # the agent process that answered the till
    at: str  # when (ISO 8601)

    def to_line(self) -> bytes:
        return (json.dumps(asdict(self), separators=(",", ":")) + "\n").encode()


def parse_doubt(raw: object) -> Doubt | None:
    """A journal line's entry, or None when it is not one (a line torn by a crash mid-write:
    that process never answered its till)."""
    if not isinstance(raw, dict):
        return None
    texts = ("local_ref", "key", "message", "instance_id", "at")
    if not all(isinstance(raw.get(name), str) for name in texts):
        return None
    if not isinstance(raw.get("at_central"), bool):
        return None
    order_id = raw.get("order_id")
    if order_id is not None and not isinstance(order_id, str):
        return None
    return Doubt(
        local_ref=raw["local_ref"],
        key=raw["key"],
        at_central=raw["at_central"],
        order_id=order_id,
        message=raw["message"],
        instance_id=raw["instance_id"],
        at=raw["at"],
    )


class DoubtJournal:
    """The sales in doubt of one replica, in memory and in the journal file. Thread-safe:
    the API's worker threads add, the replayer folds."""

    def __init__(self, path: Path, log: EventLog | None = None) -> None:
        self.path = path
        self._log = log or EventLog("storeagent.orders")
        self._lock = threading.Lock()
        self._doubts = {doubt.local_ref: doubt for doubt in self._read()}

    def add(self, doubt: Doubt) -> bool:
        """Remember `doubt`; whether it is in the journal file too (durable)."""
        with self._lock:
            self._doubts[doubt.local_ref] = doubt
            try:
                _append(self.path, doubt.to_line())
            except OSError as exc:
                self._log.error(
                    "order.doubt_not_journaled",
                    local_ref=doubt.local_ref,
                    path=str(self.path),
                    error=str(exc),
                )
                return False
        return True

    def holding(self, key: str) -> Doubt | None:
        """The doubt about the sale with idempotency key `key`, if any."""
        with self._lock:
            return next((d for d in self._doubts.values() if d.key == key), None)

    def keys(self) -> frozenset[str]:
        with self._lock:
            return frozenset(doubt.key for doubt in self._doubts.values())

    def entries(self) -> list[Doubt]:
        with self._lock:
            return list(self._doubts.values())

    def fold_into(self, orders: LocalOrders) -> list[Doubt]:
        """Record every sale in doubt in the replica as failed (`order.not_recorded`), in one
        transaction, then drop them from the journal; the ones recorded. A database error
        (the replica still locked) or an OSError leaves the journal as it was."""
        doubts = self.entries()
        if not doubts:
            return []
        with orders.transaction():
            for doubt in doubts:
                orders.not_recorded(
                    doubt.local_ref,
                    doubt.message,
                    at_central=doubt.at_central,
                    order_id=doubt.order_id,
                )
        self._settle({doubt.local_ref for doubt in doubts})
        return doubts

    def _settle(self, local_refs: Collection[str]) -> None:
        """Drop these from the journal: the file is rewritten with the rest (or removed)."""
        with self._lock:
            rest = {ref: d for ref, d in self._doubts.items() if ref not in local_refs}
            _rewrite(self.path, [doubt.to_line() for doubt in rest.values()])
            self._doubts = rest

    def _read(self) -> list[Doubt]:
        """The journal's entries; a torn or foreign line is logged and dropped, and the file
        rewritten without it, so that the next entry is not appended to a torn line."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        doubts = []
        for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
            doubt = parse_doubt(_json(line))
            if doubt is None:
                self._log.warning("order.doubt_line_skipped", path=str(self.path), line=number)
            else:
                doubts.append(doubt)
        clean = b"".join(doubt.to_line() for doubt in doubts)
        if raw != clean:
            _rewrite(self.path, [doubt.to_line() for doubt in doubts])
        return doubts


def _json(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _append(path: Path, line: bytes) -> None:
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_MODE)
    try:
        _write_all(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        sync_directory(path.parent)


def _rewrite(path: Path, lines: Collection[bytes]) -> None:
    """Replace the file atomically with `lines` (a crash leaves the old file or the new)."""
    if not lines:
        try:
            path.unlink()
        except FileNotFoundError:
            return
        sync_directory(path.parent)
        return
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        _write_all(fd, b"".join(lines))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    sync_directory(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
