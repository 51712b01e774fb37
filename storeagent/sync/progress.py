"""Live sync state shared by the loop (writer) and the HTTP API (reader); thread-safe."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from storeagent.sync.central_clock import CentralClock
from storeagent.sync.source import TopicPartition

APPLY_FAILING = "apply_failing"
LOG_BEHIND = "kafka.log_behind"


@dataclass(frozen=True)
class SyncProblem:
    """Why the loop cannot keep the replica current: `kafka.auth_failed`,
    `kafka.not_authorized`, `apply_failing` or `kafka.log_behind` (Kafka's log no longer
    holds what the replica read), with the last error's message."""

    code: str
    message: str
    since: float  # on the progress clock
    failures: int = 1

    def again(self, message: str) -> SyncProblem:
        return SyncProblem(self.code, message, self.since, self.failures + 1)


class SyncProgress:
    """End offsets seen on the broker and whether the loop is alive and making progress.

    The replica holds what was applied; this holds what only the running process knows,
    central's clock among it (`central_clock`, fed by the heartbeat's answers): staleness and
    sync latency are measured on it.
    """

    def __init__(
        self,
        stall_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        broker_stale_after: float = 20.0,
        central_clock: CentralClock | None = None,
    ):
        self.central_clock = central_clock or CentralClock()
        self._lock = threading.Lock()
        self._clock = clock
        self._stall_after = stall_after
        self._broker_stale_after = broker_stale_after
        self._assigned = 0
        self._broker_at: float | None = None
        self._broker_error: str | None = None
        self._ends: dict[TopicPartition, int] = {}
        self._last_beat: float | None = None
        self._last_tick: float | None = None
        self._running = False
        self._totals: Counter[str] = Counter()
        self._access: SyncProblem | None = None
        self._apply: SyncProblem | None = None
        self._log_behind: SyncProblem | None = None
        self._rebuild: Callable[[], dict[str, object]] | None = None

    def started(self) -> None:
        with self._lock:
            self._running, self._last_beat, self._last_tick = True, None, None
            self._assigned, self._broker_at = 0, None

    def stopped(self) -> None:
        with self._lock:
            self._running, self._assigned = False, 0

    def assigned(self, partitions: int) -> None:
        """The loop took these partitions (0: it lost them, e.g. while reconnecting)."""
        with self._lock:
            self._assigned = partitions

    def is_assigned(self) -> bool:
        with self._lock:
            return self._running and self._assigned > 0

    def broker_answered(self) -> None:
        """A request to Kafka (not a poll: kafka-python's poll returns nothing, not an error,
        while the broker is down) got its answer."""
        with self._lock:
            self._broker_at, self._broker_error = self._clock(), None

    def broker_failed(self, error: str) -> None:
        with self._lock:
            self._broker_at, self._broker_error = None, error

    def broker_reachable(self) -> bool:
        """Kafka answered the loop's last request, and recently."""
        with self._lock:
            if not self._running or self._broker_at is None:
                return False
            return self._clock() - self._broker_at < self._broker_stale_after

    def broker_error(self) -> str | None:
        with self._lock:
            return self._broker_error

    def access_denied(self, code: str, message: str) -> SyncProblem:
        """Kafka refused the store's login or its ACLs refused a request; the loop has no
        working connection until access_granted()."""
        with self._lock:
            self._broker_at, self._broker_error = None, message
            self._access = _again(self._access, code, message, self._clock())
            return self._access

    def access_granted(self) -> SyncProblem | None:
        """The loop connected and started; returns the problem this ends, if any."""
        with self._lock:
            ended, self._access = self._access, None
            return ended

    def apply_failed(self, message: str) -> SyncProblem:
        """A batch could not be written for a reason of the database's (locked, I/O, full)."""
        with self._lock:
            self._apply = _again(self._apply, APPLY_FAILING, message, self._clock())
            return self._apply

    def apply_succeeded(self) -> SyncProblem | None:
        with self._lock:
            ended, self._apply = self._apply, None
            return ended

    def log_behind(self, message: str) -> SyncProblem:
        """Kafka's log is behind what the replica read: it stands until a resync."""
        with self._lock:
            self._log_behind = _again(self._log_behind, LOG_BEHIND, message, self._clock())
            return self._log_behind

    def log_trusted(self) -> SyncProblem | None:
        """A resync started from the log as it is now; returns the problem this ends."""
        with self._lock:
            ended, self._log_behind = self._log_behind, None
            return ended

    def show_rebuild(self, status: Callable[[], dict[str, object]] | None) -> None:
        """What /sync/status shows of the last resync's rebuild (sync.rebuild), read live."""
        with self._lock:
            self._rebuild = status

    def rebuild(self) -> dict[str, object] | None:
        with self._lock:
            status = self._rebuild
        return None if status is None else status()

    def problems(self) -> list[SyncProblem]:
        """What keeps the replica from following Kafka now, Kafka access first."""
        with self._lock:
            found = (self._access, self._log_behind, self._apply)
            return [p for p in found if p is not None]

    def age(self, problem: SyncProblem) -> float:
        """Seconds since `problem` began."""
        return max(self._clock() - problem.since, 0.0)

    def beat(self) -> None:
        """A poll-and-apply round completed."""
        with self._lock:
            self._last_beat = self._last_tick = self._clock()

    def tick(self) -> None:
        """The loop came round, whether or not Kafka answered: its thread is not wedged."""
        with self._lock:
            self._last_tick = self._clock()

    def idle_for(self) -> float | None:
        """Seconds since the loop last came round; None before its first round or once stopped.

        The systemd watchdog is fed only while this stays short.
        """
        with self._lock:
            if not self._running or self._last_tick is None:
                return None
            return self._clock() - self._last_tick

    def count(self, applied: int, stale: int, dead_lettered: int) -> None:
        """Records handled since this process started, by outcome."""
        with self._lock:
            self._totals.update(applied=applied, stale=stale, dead_lettered=dead_lettered)

    def totals(self) -> dict[str, int]:
        with self._lock:
            return {key: self._totals[key] for key in ("applied", "stale", "dead_lettered")}

    def set_end_offsets(self, ends: Mapping[TopicPartition, int]) -> None:
        with self._lock:
            self._ends.update(ends)

    def end_offsets(self) -> dict[TopicPartition, int]:
        with self._lock:
            return dict(self._ends)

    def is_consuming(self) -> bool:
        """Running, and a poll-and-apply round completed within `stall_after` seconds."""
        with self._lock:
            if not self._running or self._last_beat is None:
                return False
            return self._clock() - self._last_beat < self._stall_after


def _again(current: SyncProblem | None, code: str, message: str, now: float) -> SyncProblem:
    if current is None or current.code != code:
        return SyncProblem(code, message, now)
    return current.again(message)
