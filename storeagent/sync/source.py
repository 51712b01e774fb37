"""The port the sync loop reads Kafka through: sync.kafka_source is the real adapter, the
fake lives in tests/support/agent_fakes.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class Record(NamedTuple):
    """One consumed record, as raw bytes: parsing is the events module's job. `headers` are
    the record's Kafka headers in order (central's epoch and sequence, invwire.headers). A
    named tuple: one is made per consumed record, in a third of a frozen dataclass's time."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


class RecordSource(Protocol):
    def cluster_id(self) -> str | None:
        """The Kafka cluster's id from the broker's metadata; None when it does not say."""
        ...

    def partitions_for(self, topic: str) -> set[int]:
        """Partition ids of `topic`; empty when the topic does not exist."""
        ...

    def assign(self, partitions: Sequence[TopicPartition]) -> None: ...

    def seek(self, partition: TopicPartition, offset: int | None) -> None:
        """Fetch `partition` from `offset` next; None means from the beginning."""
        ...

    def position(self, partition: TopicPartition) -> int | None:
        """The next offset poll() will return for `partition`; None if not known yet."""
        ...

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...

    def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's log start offset: the first offset it still holds."""
        ...

    def topic_id(self, topic: str) -> str | None:
        """Kafka's id of `topic` (a new one when it is re-created) from the metadata the
        source last fetched; None when it is not known."""
        ...

    def highwater(self, partition: TopicPartition) -> int | None:
        """The end offset seen by the last fetch, if any (cheap, no request)."""
        ...

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        """Records in offset order per partition; returns early when records arrive."""
        ...

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit next offsets to the consumer group (visibility only; SQLite is authoritative)."""
        ...

    def close(self) -> None: ...
