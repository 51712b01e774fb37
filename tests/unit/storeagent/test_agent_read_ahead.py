"""sync.read_ahead: records read from the Kafka client before the loop asks for them."""

import pytest
from kafka.errors import IllegalStateError

from invwire.errors.agent import SourceUnavailable
from storeagent.sync.kafka_source import KafkaRecordSource
from storeagent.sync.read_ahead import ReadAhead
from storeagent.sync.source import Record, TopicPartition
from tests.support.agent_fakes import BufferedKafkaConsumer

A = TopicPartition("t.inventory", 0)
B = TopicPartition("t.inventory", 1)
OTHER_TOPIC = TopicPartition("t.products", 0)


def records(tp: TopicPartition, first: int, count: int) -> list[Record]:
    return [
        Record(tp.topic, tp.partition, offset, b"k", b"v") for offset in range(first, first + count)
    ]


def offsets(taken: list[Record]) -> list[tuple[int, int]]:
    return [(record.partition, record.offset) for record in taken]


def test_take_hands_out_in_the_order_read_across_partitions():
    ahead = ReadAhead()
    ahead.fill([records(A, 10, 3), records(B, 0, 2)])

    assert offsets(ahead.take(2)) == [(0, 10), (0, 11)]
    assert offsets(ahead.take(2)) == [(0, 12), (1, 0)]
    assert offsets(ahead.take(5)) == [(1, 1)]
    assert not ahead
    assert ahead.take(5) == []


def test_next_offset_is_the_first_record_held_of_that_partition_only():
    ahead = ReadAhead()
    ahead.fill([records(A, 10, 3), records(OTHER_TOPIC, 7, 1)])
    ahead.take(1)

    assert ahead.next_offset(A) == 11
    assert ahead.next_offset(OTHER_TOPIC) == 7
    assert ahead.next_offset(B) is None  # same topic, another partition: nothing held
    ahead.take(2)
    assert ahead.next_offset(A) is None


def test_drop_forgets_one_partition_and_keeps_the_others_in_order():
    ahead = ReadAhead()
    ahead.fill([records(A, 0, 2), records(B, 5, 2), records(A, 2, 1)])

    ahead.drop(A)

    assert ahead.next_offset(A) is None
    assert offsets(ahead.take(10)) == [(1, 5), (1, 6)]


def test_empty_chunks_are_not_kept_and_clear_forgets_everything():
    ahead = ReadAhead()
    ahead.fill([[], records(A, 0, 1), []])
    assert ahead
    ahead.clear()
    assert not ahead
    assert ahead.next_offset(A) is None


# --- the Kafka source over it ----------------------------------------------------------------


def source_over(consumer: BufferedKafkaConsumer) -> KafkaRecordSource:
    return KafkaRecordSource(consumer)  # type: ignore[arg-type]


def test_a_read_of_more_than_a_batch_polls_again_to_send_the_next_fetch():
    consumer = BufferedKafkaConsumer(A.topic, count=30)
    source = source_over(consumer)

    assert [r.offset for r in source.poll(10, max_records=10)] == list(range(10))
    assert consumer.polls == 2  # the second, with nothing buffered, sends the next fetch
    assert source.position(A) == 10
    assert [r.offset for r in source.poll(10, max_records=50)] == list(range(10, 30))
    assert consumer.polls == 2  # handed out from what was read ahead


def test_a_read_of_a_batch_or_less_does_not_poll_again():
    consumer = BufferedKafkaConsumer(A.topic, count=3)
    source = source_over(consumer)

    assert len(source.poll(10, max_records=10)) == 3
    assert consumer.polls == 1


def test_a_refused_seek_keeps_the_held_records():
    consumer = BufferedKafkaConsumer(A.topic, count=30, seek_error=IllegalStateError("no"))
    source = source_over(consumer)
    source.poll(10, max_records=5)

    with pytest.raises(SourceUnavailable):
        source.seek(A, 2)

    assert source.position(A) == 5
    assert [r.offset for r in source.poll(10, max_records=5)] == [5, 6, 7, 8, 9]
