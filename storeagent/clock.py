"""Wall-clock port: the agent asks a Clock for "now"; tests pass testing.FixedClock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
