"""Wall-clock port: the agent asks a Clock for "now"; tests pass a FixedClock
(tests/support/agent_fakes.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
