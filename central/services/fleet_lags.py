"""The stores' consumer-group lag as the fleet view shows it: read from Kafka for every
group at once, and kept LAG_CACHE_S so that a dashboard polled by several operators (or
`invctl sync status --all --watch`) asks Kafka at most once per LAG_CACHE_S, not once per
request. Each reading carries the time it was taken (`as_of`, central's clock), so an
answer built from a kept reading says how old its lags are."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from central.uow import Clock

LAG_CACHE_S = 2.0
NOT_CONFIGURED = "not configured"


@dataclass(frozen=True)
class GroupLag:
    lag: int
    partitions: int
    committed: int


class LagReader(Protocol):
    def lag(self, groups: list[str]) -> dict[str, GroupLag]:
        """Lag of each consumer group over the inventory topics; raises if Kafka is down."""
        ...


@dataclass(frozen=True)
class LagReading:
    """`kafka`: "ok", "not configured" or "unavailable: <error>"; `as_of`: when central
    asked Kafka (None: it did not, Kafka is not configured)."""

    kafka: str
    lags: dict[str, GroupLag] = field(default_factory=dict)
    as_of: datetime | None = None


class FleetLags:
    """Lag readings kept `keep_s` seconds. One reading answers every request for the groups
    it covers; concurrent requests that find none fresh wait for one read, not one each. A
    failed read is kept as long (Kafka down must not cost each request a connect timeout)."""

    def __init__(self, reader: LagReader, clock: Clock, keep_s: float = LAG_CACHE_S) -> None:
        self._reader = reader
        self._clock = clock
        self._keep_s = keep_s
        self._lock = threading.Lock()
        self._kept: LagReading | None = None
        self._groups: frozenset[str] = frozenset()

    def reading(self, groups: list[str]) -> LagReading:
        with self._lock:
            kept = self._kept
            if kept is None or not self._fresh(kept, groups):
                kept = self._read(groups)
                self._kept, self._groups = kept, frozenset(groups)
            return kept

    def _fresh(self, kept: LagReading, groups: list[str]) -> bool:
        if kept.as_of is None:
            return False
        age_s = (self._clock.now() - kept.as_of).total_seconds()
        # A clock set back (age below 0) makes the kept reading suspect, not young.
        return 0 <= age_s < self._keep_s and self._groups.issuperset(groups)

    def _read(self, groups: list[str]) -> LagReading:
        as_of = self._clock.now()
        if not groups:
            return LagReading("ok", {}, as_of)
        try:
            return LagReading("ok", self._reader.lag(groups), as_of)
        except Exception as exc:  # the view stays useful with heartbeats alone
            return LagReading(f"unavailable: {type(exc).__name__}", {}, as_of)


def lag_reading(lags: FleetLags | None, groups: list[str]) -> LagReading:
    return lags.reading(groups) if lags is not None else LagReading(NOT_CONFIGURED)
