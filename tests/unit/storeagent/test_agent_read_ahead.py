"""sync.read_ahead: records read from the Kafka client before the loop asks for them."""

from storeagent.sync.read_ahead import ReadAhead
from storeagent.sync.source import Record, TopicPartition

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
