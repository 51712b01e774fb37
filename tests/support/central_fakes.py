"""Fakes for central's unit tests: a publisher that records, a clock that you move, the
log's record counts and the last records' positions, a Kafka lag reader that counts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from central.kafka_position import Position
from central.models import utcnow
from central.outbox import OutboxRecord
from central.services.fleet_lags import GroupLag


class FakePublisher:
    """Records what it publishes; `fail_after` makes it ack only the first N records."""

    def __init__(self) -> None:
        self.published: list[OutboxRecord] = []
        self.fail_after: int | None = None
        self.closed = False
        self.warmed = 0  # warm() calls: a standby relay readies its publisher once

    def publish(self, records: Sequence[OutboxRecord]) -> int:
        accepted = list(records)
        if self.fail_after is not None:
            accepted = accepted[: self.fail_after]
        self.published.extend(accepted)
        return len(accepted)

    def warm(self) -> None:
        self.warmed += 1

    def close(self) -> None:
        self.closed = True


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or utcnow()

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class FakeTopicLog:
    """The relay's view of Kafka's log over a FakePublisher: each topic holds what was
    published to it since the last `lose_everything()` (a broker that lost its data); what
    is published after that is acked at lower offsets than before (went_back())."""

    def __init__(self, publisher: FakePublisher) -> None:
        self.publisher = publisher
        self.kept_from = 0
        self.asked = 0
        self.lost = False

    def lose_everything(self) -> None:
        self.kept_from = len(self.publisher.published)
        self.lost = True

    def went_back(self) -> bool:
        went = self.lost and len(self.publisher.published) > self.kept_from
        self.lost = self.lost and not went
        return went

    def records(self) -> dict[str, int]:
        self.asked += 1
        counts: dict[str, int] = {}
        for record in self.publisher.published[self.kept_from :]:
            counts[record.topic] = counts.get(record.topic, 0) + 1
        return counts


class FakePositions:
    """The last records central published, as central.kafka_position reads them: `newest` is
    the position they hold (None: the topics hold no record); `error`, when set, is raised
    instead (Kafka unreachable, or a login that may not read the topics)."""

    def __init__(self, newest: Position | None = None) -> None:
        self.position = newest
        self.error: Exception | None = None
        self.asked = 0

    def newest(self) -> Position | None:
        self.asked += 1
        if self.error is not None:
            raise self.error
        return self.position


class FakeLagReader:
    """Each group `lag` events behind (set `lag` to change it); `down` makes every read
    raise, as a broker that does not answer; `asked` lists the groups of each read."""

    def __init__(self, lag: int = 0) -> None:
        self.lag_now = lag
        self.down: Exception | None = None
        self.asked: list[list[str]] = []

    def lag(self, groups: list[str]) -> dict[str, GroupLag]:
        self.asked.append(list(groups))
        if self.down is not None:
            raise self.down
        return {group: GroupLag(lag=self.lag_now, partitions=3, committed=3) for group in groups}


class FakeClusterMetadata:
    """What a kafka-python partitioner reads of the cluster: topics and their partitions."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self._partitions = partitions

    def topics(self) -> set[str]:
        return set(self._partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self._partitions.get(topic)
        return None if count is None else set(range(count))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions_for_topic(topic) or set()
