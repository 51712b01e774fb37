"""A store machine's clocks for unit tests, against the true time (central's clock): its wall
clock may be off and can be stepped; its monotonic clock only counts seconds. A central that
answers heartbeats with its time after a network delay each way."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any


class MachineClock:
    def __init__(self, off_s: float = 0.0, true_now: datetime | None = None) -> None:
        self.true_now = true_now or datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
        self.off_s = off_s  # this machine's wall clock minus the true time
        self._monotonic = 5000.0

    def wall(self) -> datetime:
        return self.true_now + timedelta(seconds=self.off_s)

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move."""
        self.true_now += timedelta(seconds=seconds)
        self._monotonic += seconds

    def step(self, seconds: float) -> None:
        """The wall clock is set (by NTP, or by hand); the monotonic one does not move."""
        self.off_s += seconds


class SlowCentral:
    """The HeartbeatSender fake: central stamps its (true) time `out_s` after the send, and
    the answer takes `back_s` to come back; both may be changed between sends."""

    def __init__(self, machine: MachineClock, out_s: float = 0.05, back_s: float = 0.05) -> None:
        self.machine, self.out_s, self.back_s = machine, out_s, back_s
        self.reports: list[dict[str, Any]] = []

    def send(self, report: Mapping[str, Any]) -> datetime:
        self.reports.append(dict(report))
        self.machine.advance(self.out_s)
        stamped = self.machine.true_now
        self.machine.advance(self.back_s)
        return stamped

    def close(self) -> None:
        pass


class Monotonic:
    """A monotonic clock (seconds) a test moves by hand: `clock.now += 5`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """A sleep that takes no time: the clock moves on by `seconds`."""
        self.now += seconds
