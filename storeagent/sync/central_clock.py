"""Central's clock as this agent estimates it, so that staleness and sync latency (measured
against event times that central stamped) do not depend on this machine's wall clock.

Each heartbeat answer carrying central's time is one sample, taken the way NTP does:
offset = server_time - midpoint(sent, received). The true offset lies within half the round
trip of it, so of the last few samples the one with the shortest round trip is used. The
round trip is measured on the monotonic clock; a step of the wall clock (NTP, or by hand)
shows as a change of wall-minus-monotonic, and makes the samples taken before it wrong: they
are dropped.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

KEEP_SAMPLES = 8
WALL_STEP_S = 0.5  # NTP slews by at most 0.5 ms/s: a larger change between samples is a step


@dataclass(frozen=True)
class ClockSample:
    offset_s: float  # central's clock minus this machine's
    round_trip_s: float
    wall_minus_monotonic_s: float  # at sending: moves only when the wall clock is stepped


def clock_sample(
    sent_at: datetime, sent_monotonic: float, received_monotonic: float, server_time: datetime
) -> ClockSample:
    """One exchange: sent at `sent_at` (wall) / `sent_monotonic`, answered at
    `received_monotonic`, with central's `server_time` (timezone-aware)."""
    round_trip = max(received_monotonic - sent_monotonic, 0.0)
    midpoint = sent_at + timedelta(seconds=round_trip / 2)
    return ClockSample(
        offset_s=(server_time - midpoint).total_seconds(),
        round_trip_s=round_trip,
        wall_minus_monotonic_s=sent_at.timestamp() - sent_monotonic,
    )


class CentralClock:
    """Thread-safe: the heartbeat adds samples, the API, the metrics and the loop read."""

    def __init__(self, keep: int = KEEP_SAMPLES) -> None:
        self._lock = threading.Lock()
        self._samples: deque[ClockSample] = deque(maxlen=keep)

    def add(self, sample: ClockSample) -> None:
        with self._lock:
            kept = [s for s in self._samples if not _stepped_between(s, sample)]
            self._samples.clear()
            self._samples.extend(kept)
            self._samples.append(sample)

    def offset_s(self) -> float | None:
        """Central's clock minus this machine's; None before central's first answer."""
        with self._lock:
            if not self._samples:
                return None
            return min(self._samples, key=lambda s: s.round_trip_s).offset_s

    def central_time(self, local: datetime) -> datetime:
        """`local` (this machine's wall clock) on central's clock; unchanged while no offset
        is known."""
        return local + timedelta(seconds=self.offset_s() or 0.0)


def _stepped_between(earlier: ClockSample, later: ClockSample) -> bool:
    return abs(later.wall_minus_monotonic_s - earlier.wall_minus_monotonic_s) > WALL_STEP_S
