"""Fakes for central's unit tests: a publisher that records, a clock that you move."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from central.models import utcnow
from central.outbox import OutboxRecord


class FakePublisher:
    """Records what it publishes; `fail_after` makes it ack only the first N records."""

    def __init__(self) -> None:
        self.published: list[OutboxRecord] = []
        self.fail_after: int | None = None
        self.closed = False

    def publish(self, records: Sequence[OutboxRecord]) -> int:
        accepted = list(records)
        if self.fail_after is not None:
            accepted = accepted[: self.fail_after]
        self.published.extend(accepted)
        return len(accepted)

    def close(self) -> None:
        self.closed = True


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or utcnow()

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)
