"""The real RecordSource: a kafka-python KafkaConsumer with manual assignment.

Every kafka-python error is translated to SourceUnavailable so the loop handles one type.
Timeouts are short so that a stop request is honoured within seconds even when the
broker is unreachable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress

from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from storeagent.errors import SourceUnavailable
from storeagent.sync.source import Record, TopicPartition

REQUEST_TIMEOUT_MS = 10_000
CALL_TIMEOUT_MS = 3_000
# kafka-python doubles the wait between reconnects up to 30 s by default, so after a broker
# outage the replica caught up 8-25 s after the broker was back; Java clients cap it at 1 s.
RECONNECT_BACKOFF_MAX_MS = 1_000


@contextmanager
def _kafka_errors() -> Iterator[None]:
    try:
        yield
    except KafkaError as exc:
        raise SourceUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _ktp(tp: TopicPartition) -> KafkaTopicPartition:
    return KafkaTopicPartition(tp.topic, tp.partition)


class KafkaRecordSource:
    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    @classmethod
    def connect(
        cls, bootstrap_servers: str, *, group_id: str, client_id: str, fetch_max_wait_ms: int = 100
    ) -> KafkaRecordSource:
        with _kafka_errors():
            consumer = KafkaConsumer(
                bootstrap_servers=[s.strip() for s in bootstrap_servers.split(",") if s.strip()],
                group_id=group_id,
                client_id=client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                allow_auto_create_topics=False,
                fetch_max_wait_ms=fetch_max_wait_ms,
                request_timeout_ms=REQUEST_TIMEOUT_MS,
                bootstrap_timeout_ms=CALL_TIMEOUT_MS,
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
                metrics_enabled=False,
            )
        return cls(consumer)

    def partitions_for(self, topic: str) -> set[int]:
        with _kafka_errors():
            return set(self._consumer.partitions_for_topic(topic) or ())

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        with _kafka_errors():
            self._consumer.assign([_ktp(tp) for tp in partitions])

    def seek(self, partition: TopicPartition, offset: int | None) -> None:
        with _kafka_errors():
            if offset is None:
                self._consumer.seek_to_beginning(_ktp(partition))
            else:
                self._consumer.seek(_ktp(partition), offset)

    def position(self, partition: TopicPartition) -> int | None:
        try:
            position = self._consumer.position(_ktp(partition), timeout_ms=CALL_TIMEOUT_MS)
        except KafkaError:
            return None
        return None if position is None else int(position)

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        with _kafka_errors():
            ends = self._consumer.end_offsets([_ktp(tp) for tp in partitions], CALL_TIMEOUT_MS)
        return {TopicPartition(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    def highwater(self, partition: TopicPartition) -> int | None:
        end = self._consumer.highwater(_ktp(partition))
        return None if end is None else int(end)

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        with _kafka_errors():
            batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return [
            Record(r.topic, r.partition, r.offset, r.key, r.value)
            for records in batches.values()
            for r in records
        ]

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        request = {_ktp(tp): OffsetAndMetadata(nxt, "", -1) for tp, nxt in offsets.items()}
        with _kafka_errors():
            self._consumer.commit(request, timeout_ms=CALL_TIMEOUT_MS)

    def close(self) -> None:
        with suppress(KafkaError):
            self._consumer.close(autocommit=False, timeout_ms=CALL_TIMEOUT_MS)
