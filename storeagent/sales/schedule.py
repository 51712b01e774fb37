"""The replayer's backoff and wake-up call, shared with the till path (OrderDesk): a till
that reaches central, or queues a sale, wakes the replayer.

In memory: after a restart the backoff starts afresh.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Monotonic = Callable[[], float]


@dataclass(frozen=True)
class ReplayTuning:
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    idle_s: float = 2.0  # how often an idle replayer looks for work
    void_after_s: float = 30.0  # > any request central may still be working on


def equal_jitter(ceiling: float) -> float:
    """Between half the ceiling and the ceiling: spread out, yet never a hot retry."""
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 -- spreading load, not a secret


class ReplaySchedule:
    """The replayer's capped exponential backoff, and its wake-up call. Thread-safe."""

    def __init__(
        self,
        tuning: ReplayTuning = ReplayTuning(),
        *,
        clock: Monotonic = time.monotonic,
        jitter: Callable[[float], float] = equal_jitter,
    ) -> None:
        self.tuning = tuning
        self._clock, self._jitter = clock, jitter
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._failures = 0
        self._next_at: float | None = None
        self._last_error: str | None = None

    def failed(self, error: str) -> float:
        """Record a failed attempt; the delay until the next one."""
        with self._lock:
            self._failures += 1
            self._last_error = error
            ceiling = self.tuning.backoff_min_s * 2 ** min(self._failures - 1, 30)
            delay = self._jitter(min(ceiling, self.tuning.backoff_max_s))
            self._next_at = self._clock() + delay
            return delay

    def succeeded(self) -> None:
        with self._lock:
            self._failures, self._next_at = 0, None

    def central_answered(self) -> None:
        """A till reached central: whatever is queued may follow at once."""
        self.succeeded()
        self._wake.set()

    def work_arrived(self) -> None:
        """A sale was queued: look at once, unless central is known to be down."""
        with self._lock:
            if self._failures == 0:
                self._wake.set()

    def wait(self, stop: threading.Event, slice_s: float = 0.25) -> None:
        """Until the next attempt is due (or idle_s when not backing off), a wake-up or stop."""
        deadline = self._clock() + self._due_in()
        while not stop.is_set():
            left = deadline - self._clock()
            if left <= 0 or self._wake.wait(min(left, slice_s)):
                break
        self._wake.clear()

    def status(self) -> tuple[float | None, int, str | None]:
        """(seconds to the next attempt or None, consecutive failures, last error)."""
        with self._lock:
            next_in = None if self._next_at is None else max(self._next_at - self._clock(), 0.0)
            return (
                None if next_in is None else round(next_in, 1),
                self._failures,
                self._last_error,
            )

    def _due_in(self) -> float:
        with self._lock:
            if self._next_at is None:
                return self.tuning.idle_s
            return max(self._next_at - self._clock(), 0.0)
