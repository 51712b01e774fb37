"""The replica's file: intact when the agent starts, and still the file at its path while the
agent runs.

check_intact() runs SQLite's own check over the whole file once at start: a damaged replica
(truncated, overwritten) stops the agent with `replica.damaged` (exit 2) and the way out
(`storeagent salvage`), instead of failing later, half-way through a sale or a batch.

ReplicaFileWatch remembers the device and inode of the file the agent opened. SQLite keeps
using an open file that was deleted or replaced under it: sales queued into it would vanish
with the process. So /readyz, /sync/status and every decision to queue a sale ask the watch
whether the path still names that file (`replica.missing`, `replica.replaced`), and the
agent refuses to queue while it does not.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from invwire.errors.agent import ReplicaFileMissing, ReplicaFileReplaced
from invwire.logs import EventLog
from storeagent.replica.db import DATABASE_ERRORS, Replica, damaged

FileProblem = ReplicaFileMissing | ReplicaFileReplaced


def check_intact(replica: Replica) -> None:
    """Raise ReplicaDamaged unless SQLite finds the whole file sound."""
    path = Path(str(replica.db.database))
    try:
        found = replica.quick_check()
    except DATABASE_ERRORS as exc:
        raise damaged(path, str(exc)) from exc
    if found != ["ok"]:
        raise damaged(path, "; ".join(found[:3]))


@dataclass(frozen=True)
class FileIdentity:
    device: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity | None:
        """The identity of the file `path` names now; None when it names none."""
        try:
            found = os.stat(path)
        except FileNotFoundError:
            return None
        return cls(found.st_dev, found.st_ino)

    def to_wire(self) -> dict[str, int]:
        return {"device": self.device, "inode": self.inode}


MISSING = (
    "the replica file {path} was deleted or moved while the agent runs: sales are not queued "
    "offline any more (they would be lost with the file). The sales already queued are still "
    "replayed from the file the agent holds open: before restarting the agent, wait until "
    "central is back and the queue is empty (invctl sync status), or stop it and salvage them"
)
REPLACED = (
    "the replica path {path} now names another file (inode {now}) than the one the agent "
    "opened (inode {opened}): sales are not queued offline any more. The sales already "
    "queued are still replayed from the file the agent holds open; restart the agent only "
    "once its queue is empty (invctl sync status)"
)


class ReplicaFileWatch:
    """Whether the replica's path still names the file the agent opened. Cheap (one stat),
    thread-safe; logs when the file goes missing or is replaced, and when it is back."""

    def __init__(
        self,
        path: Path,
        opened: FileIdentity,
        *,
        log: EventLog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path, self.opened = path, opened
        self._log = log or EventLog("storeagent.replica")
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # when the current problem was first seen

    @classmethod
    def of(cls, path: Path, *, log: EventLog | None = None) -> ReplicaFileWatch:
        """A watch on the file `path` names now (just opened)."""
        opened = FileIdentity.of(path)
        if opened is None:
            raise FileNotFoundError(f"the replica {path} vanished as it was opened")
        return cls(path, opened, log=log)

    def problem(self) -> FileProblem | None:
        """None while the path names the opened file; else why not, as the error to answer."""
        now = FileIdentity.of(self.path)
        problem = self._problem(now)
        self._note(problem)
        return problem

    def problem_for_s(self) -> float:
        """How long the current problem has lasted (0 when there is none)."""
        with self._lock:
            return 0.0 if self._since is None else round(self._clock() - self._since, 1)

    def _problem(self, now: FileIdentity | None) -> FileProblem | None:
        details = {"path": str(self.path), "opened": self.opened.to_wire()}
        if now is None:
            return ReplicaFileMissing(MISSING.format(path=self.path), **details)
        if now != self.opened:
            message = REPLACED.format(path=self.path, now=now.inode, opened=self.opened.inode)
            return ReplicaFileReplaced(message, **details, now=now.to_wire())
        return None

    def _note(self, problem: FileProblem | None) -> None:
        with self._lock:
            began = problem is not None and self._since is None
            ended = problem is None and self._since is not None
            if began:
                self._since = self._clock()
            elif ended:
                self._since = None
        if problem is not None and began:
            self._log.error(problem.code, message=problem.message, **problem.details)
        elif ended:
            self._log.info("replica.file_back", path=str(self.path))
