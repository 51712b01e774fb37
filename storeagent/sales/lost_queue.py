"""Never start silently empty: at start, the agent compares the sales queued in its replica
with what central last heard in a heartbeat. Queued sales are goods the customers already
took; if central last heard of queued sales from another replica file (this one was
deleted and made anew, or replaced), those sales are not here and would never reach central.
The agent then refuses to start (`replica.queue_lost`, exit 2) until an operator has
salvaged them (`storeagent salvage`, `invctl sales replay`) and starts it once with
--accept-lost-queue.

Heartbeats carry the replica's id (replica.identity): a report from this very file is never a
loss (its queued sales are here, or were sent since); a report from another file with queued
sales is; a report without a replica id (an agent from before ids) is compared by depth.

When central cannot be asked at start (it is down: the store must still sell), the check
waits: every heartbeat asks again first, and no heartbeat goes out before it passed, so the
new file's first heartbeat never overwrites central's memory of the old one's queue. A loss
found then stops the agent as it would have at start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from invwire.errors.agent import OfflineQueueLost
from invwire.logs import EventLog
from storeagent.upstream.last_heard import LastHeard, LastHeardSource, LastHeardUnavailable


def lost_sales(heard: LastHeard, *, replica_id: str, queued: int) -> int:
    """How many of the queued sales central last heard of this replica cannot hold (0: none)."""
    if heard.offline_queue <= 0:
        return 0
    if heard.replica_id is not None:
        return 0 if heard.replica_id == replica_id else heard.offline_queue
    return max(heard.offline_queue - queued, 0)


def queue_lost(
    heard: LastHeard, *, lost: int, replica_id: str, queued: int, path: Path
) -> OfflineQueueLost:
    """The refusal, naming both files' ids and the way out."""
    return OfflineQueueLost(
        f"central last heard {heard.offline_queue} sales queued offline at this store (at "
        f"{heard.last_seen}, from replica {heard.replica_id or 'unknown'}), and the replica "
        f"{path} (replica {replica_id}) holds {queued}: {lost} sales the customers took are "
        "not in this file. Salvage them from the old file (`storeagent salvage --db OLD_FILE`, "
        "then `invctl sales replay FILE`), then start the agent once with --accept-lost-queue",
        path=str(path),
        central_offline_queue=heard.offline_queue,
        central_replica_id=heard.replica_id,
        last_seen=heard.last_seen,
        replica_id=replica_id,
        queued=queued,
        lost=lost,
    )


class QueueCheck:
    """The check of one agent start. `queued()` counts the replica's queued sales."""

    def __init__(
        self,
        source: LastHeardSource | None,
        queued: Callable[[], int],
        *,
        replica_id: str,
        path: Path,
        accept_loss: bool = False,
        log: EventLog | None = None,
    ) -> None:
        self._source, self._queued = source, queued
        self._replica_id, self._path, self._accept = replica_id, path, accept_loss
        self._log = log or EventLog("storeagent")
        self._lock = threading.Lock()
        self.passed = source is None  # nothing to compare with: nothing to wait for

    def at_start(self) -> None:
        """Raise OfflineQueueLost on a loss; when central cannot be asked, leave the check to
        the heartbeats (logged `replica.queue_unchecked`)."""
        try:
            self.check()
        except LastHeardUnavailable as exc:
            self._log.warning(
                "replica.queue_unchecked",
                message=f"{exc.message}: checked before the first heartbeat instead",
            )

    def check(self) -> None:
        """Ask central (once it passed, never again). Raises OfflineQueueLost on a loss, and
        LastHeardUnavailable when central cannot say now."""
        with self._lock:
            if self.passed or self._source is None:
                return
            heard = self._source.last_heard()
            if heard is not None:
                self._compare(heard)
            self.passed = True
            self._source.close()

    def _compare(self, heard: LastHeard) -> None:
        queued = self._queued()
        lost = lost_sales(heard, replica_id=self._replica_id, queued=queued)
        if not lost:
            return
        refusal = queue_lost(
            heard, lost=lost, replica_id=self._replica_id, queued=queued, path=self._path
        )
        if not self._accept:
            raise refusal
        self._log.warning("replica.queue_loss_accepted", message=refusal.message, lost=lost)
