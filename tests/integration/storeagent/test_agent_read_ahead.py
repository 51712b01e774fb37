"""The Kafka source reads ahead of the loop (sync.read_ahead) against a real broker: what it
holds is not yet read as far as position() and seek() tell the loop."""

from collections.abc import Iterator

import pytest
from kafka import TopicPartition as KafkaTopicPartition

from harness.waiting import eventually
from storeagent.sync.kafka_source import KafkaRecordSource
from storeagent.sync.source import Record, TopicPartition
from tests.support.agent_fakes import stock_event

RECORDS = 30


@pytest.fixture
def source(kafka_cluster, wire_topics, agent_login, unique_id) -> Iterator[KafkaRecordSource]:
    source = KafkaRecordSource.connect(
        kafka_cluster.bootstrap,
        group_id=f"storeagent.{unique_id}",
        client_id="read-ahead-test",
        login=agent_login,
    )
    yield source
    source.close()


def one_partition(source: KafkaRecordSource, publish, topic_prefix: str) -> TopicPartition:
    """RECORDS stock events of one SKU (one partition), read from the beginning."""
    publish.send(*(stock_event(sku="AHEAD-1", stock_version=v) for v in range(1, RECORDS + 1)))
    (tp,) = publish.ends
    partitions = [TopicPartition(tp.topic, p) for p in sorted(source.partitions_for(tp.topic))]
    source.assign(partitions)
    for partition in partitions:
        source.seek(partition, None)
    return tp


def polled(source: KafkaRecordSource, max_records: int, until_offset: int) -> list[Record]:
    """Polls of up to `max_records` until the record at `until_offset` came."""
    got: list[Record] = []

    def arrived() -> bool:
        got.extend(source.poll(200, max_records))
        return any(record.offset >= until_offset for record in got)

    eventually(arrived, 20, f"offset {until_offset} polled")
    return got


def client_position(source: KafkaRecordSource, tp: TopicPartition) -> int:
    """How far the kafka-python client itself has read (its own position)."""
    return source._consumer.position(KafkaTopicPartition(tp.topic, tp.partition))


def test_position_counts_held_records_as_not_read(source, publish, topic_prefix):
    tp = one_partition(source, publish, topic_prefix)

    taken = polled(source, max_records=5, until_offset=4)

    assert [r.offset for r in taken] == [0, 1, 2, 3, 4]
    assert client_position(source, tp) == RECORDS  # read ahead: all of them in one fetch
    assert source.position(tp) == 5
    rest = polled(source, max_records=1000, until_offset=RECORDS - 1)
    assert [r.offset for r in rest] == list(range(5, RECORDS))
    assert source.position(tp) == RECORDS


def test_seek_drops_the_held_records_of_that_partition(source, publish, topic_prefix):
    tp = one_partition(source, publish, topic_prefix)
    polled(source, max_records=5, until_offset=4)
    assert client_position(source, tp) == RECORDS

    source.seek(tp, 2)

    assert source.position(tp) == 2
    again = polled(source, max_records=RECORDS, until_offset=RECORDS - 1)
    assert [r.offset for r in again] == list(range(2, RECORDS))
