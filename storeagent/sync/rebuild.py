"""A resync without a gap: the replica rebuilt from the topics beside the live one.

A resync (an operator's `invctl sync resync`, or Kafka's log found behind the replica) reads
every topic from the beginning into a new SQLite file next to the replica (`<replica>.rebuild`),
with a sync loop of its own on a connection of its own, until that file holds everything the
topics held when it started. Meanwhile the live replica goes on applying events and serving
the till. Once the rebuild is done, the live loop takes its catalog, stock and offsets in one
transaction (Replica.adopt) between two batches, and goes on from the rebuilt offsets: what
it had applied past them is read again, and the versioned upserts make that change nothing.

The rebuild's own loop never commits offsets to the store's Kafka group (the group mirrors
the live replica's offsets, for lag tooling), and local orders never leave the live replica.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from invwire.errors.agent import SourceUnavailable
from invwire.logs import EventLog
from storeagent.clock import Clock, utc_now
from storeagent.replica.db import Replica, open_replica
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import RecordSource

SUFFIX = ".rebuild"
SIDE_FILES = ("", "-wal", "-shm", "-journal")


class RebuildState(StrEnum):
    RUNNING = "running"
    DONE = "done"  # ready to be adopted
    ADOPTED = "adopted"  # the live replica took it
    FAILED = "failed"


@dataclass(frozen=True)
class RebuildStatus:
    state: RebuildState
    started_at: datetime
    applied: int  # records read so far, applied or stale
    message: str = ""


def rebuild_path(replica_path: Path) -> Path:
    return replica_path.with_name(replica_path.name + SUFFIX)


def remove_rebuild_files(path: Path) -> None:
    for side in SIDE_FILES:
        with suppress(FileNotFoundError):
            path.with_name(path.name + side).unlink()


class Rebuild:
    """One rebuild, run in a thread of its own by start(); the live loop polls status() and
    adopts the file once DONE, then calls discard()."""

    def __init__(
        self,
        path: Path,
        make_loop: Callable[[Replica, threading.Event, SyncProgress], RebuildLoop],
        connect: Callable[[], RecordSource],
        *,
        log: EventLog,
        clock: Clock = utc_now,
        retry_s: float = 1.0,
    ) -> None:
        self.path = path
        self._make_loop, self._connect = make_loop, connect
        self._log, self._retry_s = log, retry_s
        self._stop = threading.Event()
        self._progress = SyncProgress()
        self._lock = threading.Lock()
        self._status = RebuildStatus(RebuildState.RUNNING, clock(), 0)
        self._thread = threading.Thread(target=self._run, name="replica-rebuild", daemon=True)

    def start(self) -> None:
        self._log.info("consumer.rebuild_started", path=str(self.path))
        self._thread.start()

    def status(self) -> RebuildStatus:
        with self._lock:
            applied = sum(self._progress.totals().values())
            current = self._status
        return RebuildStatus(current.state, current.started_at, applied, current.message)

    def discard(self, timeout_s: float = 5.0) -> None:
        """Stop the thread if it runs, and remove the file."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        remove_rebuild_files(self.path)

    def _run(self) -> None:
        try:
            remove_rebuild_files(self.path)  # a rebuild cut short by a stop starts over
            replica = open_replica(self.path)
            try:
                self._fill(replica)
            finally:
                replica.close()
        except Exception as exc:  # any failure leaves the live replica as it was
            self._finish(RebuildState.FAILED, f"{type(exc).__name__}: {exc}")
            self._log.error("consumer.rebuild_failed", exc=True, message=str(exc)[:300])
            return
        if not self._stop.is_set():
            self._finish(RebuildState.DONE, "")

    def _fill(self, replica: Replica) -> None:
        """Read the topics into `replica` until it holds what they held at the start."""
        loop = self._make_loop(replica, self._stop, self._progress)
        while not self._stop.is_set() and not replica.is_bootstrapped():
            source = None
            try:
                source = self._connect()
                loop.start(source)
                while not self._stop.is_set() and not replica.is_bootstrapped():
                    if not loop.step(source):
                        self._stop.wait(self._retry_s)
            except SourceUnavailable as exc:  # Kafka went away: connect again, go on
                self._log.warning("consumer.rebuild_waiting", message=exc.message)
                self._stop.wait(self._retry_s)
            finally:
                if source is not None:
                    source.close()

    def _finish(self, state: RebuildState, message: str) -> None:
        with self._lock:
            self._status = RebuildStatus(state, self._status.started_at, 0, message)


class RebuildLoop(Protocol):
    """What Rebuild drives: a SyncLoop's start() and step() (sync.loop makes it one)."""

    def start(self, source: RecordSource) -> None: ...

    def step(self, source: RecordSource) -> bool: ...
