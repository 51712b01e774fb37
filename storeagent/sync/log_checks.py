"""Is Kafka's log still the one the replica read? The checks the sync loop runs on it.

A topic deleted and re-created, a broker that lost its data, records deleted before the store
read them: each leaves the replica's stored offsets pointing into a log that is not the one
it read, and kafka-python would go on quietly (`auto_offset_reset` jumps to the start, an
offset inside a refilled log reads other records). What gives it away, as a LogLoss with a
`reason` (docs/wire.md, `kafka.log_behind`):

- `past_end`: a stored next offset past the partition's end offset;
- `went_back`: a batch that starts before the offset asked for (the client found that offset
  out of range and reset to the beginning on its own);
- `before_start`: a stored next offset before the partition's start (its log start offset):
  records the replica never read were deleted. Compaction leaves gaps in the middle of a
  compacted log, not at its start, so a batch that skips ahead is asked about only then;
- `topic_replaced`: the topic's id (Kafka's topic UUID, from the metadata) is not the one
  recorded in the replica's meta (`topic_id:<topic>`): it was deleted and re-created;
- `record_changed`: the record at the last offset read is not the one read there. A log
  refilled past the old offsets (central's republish) passes the offset checks, and a broker
  that lost its partition data but kept its metadata keeps the topic ids; so each batch keeps
  a digest of the last record it read per partition in the same transaction as its offsets
  (`log_mark:<topic>:<partition>`), and after each start (and after Kafka was unreachable)
  the loop reads that record again and compares. A compacted-away record tells nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from storeagent.replica.db import META_LOG_MARK_PREFIX, META_TOPIC_ID_PREFIX
from storeagent.sync.source import Record, TopicPartition

Positions = Mapping[TopicPartition, int | None]


class Reason(StrEnum):
    PAST_END = "past_end"
    WENT_BACK = "went_back"
    BEFORE_START = "before_start"
    TOPIC_REPLACED = "topic_replaced"
    RECORD_CHANGED = "record_changed"


@dataclass(frozen=True)
class LogLoss:
    """What showed that the log is not the one the replica read: `found` says it in one
    clause for the message, `partitions` how many partitions (or topics) showed it."""

    reason: Reason
    found: str
    partitions: int = 1


@dataclass(frozen=True)
class Mark:
    offset: int  # of the last record read in the partition
    digest: str


def past_end(positions: Positions, ends: Mapping[TopicPartition, int]) -> LogLoss | None:
    past = [
        (tp, offset, ends[tp])
        for tp, offset in positions.items()
        if offset is not None and tp in ends and offset > ends[tp]
    ]
    if not past:
        return None
    tp, offset, end = past[0]
    found = f"{_name(tp)}: the replica read up to offset {offset} but the log now ends at {end}"
    return LogLoss(Reason.PAST_END, found, len(past))


def before_start(positions: Positions, starts: Mapping[TopicPartition, int]) -> LogLoss | None:
    gaps = [
        (tp, offset, starts[tp])
        for tp, offset in positions.items()
        if offset is not None and tp in starts and offset < starts[tp]
    ]
    if not gaps:
        return None
    tp, offset, start = gaps[0]
    found = (
        f"{_name(tp)}: the replica read up to offset {offset} but the log now starts at "
        f"{start}, so records it never read were deleted"
    )
    return LogLoss(Reason.BEFORE_START, found, len(gaps))


def went_back(expected: Positions, records: Sequence[Record]) -> LogLoss | None:
    for first, _ in partition_ends(records).values():
        asked = expected.get(first.tp)
        if asked is not None and first.offset < asked:
            found = (
                f"{_name(first.tp)}: the replica read up to offset {asked} but the log now "
                f"starts over at {first.offset}"
            )
            return LogLoss(Reason.WENT_BACK, found)
    return None


def skipped_ahead(expected: Positions, records: Sequence[Record]) -> dict[TopicPartition, int]:
    """Partitions whose first record in `records` comes after the offset asked for, with that
    offset: a compacted gap, or a reset past records deleted (before_start tells which)."""
    skipped: dict[TopicPartition, int] = {}
    for first, _ in partition_ends(records).values():
        asked = expected.get(first.tp)
        if asked is not None and first.offset > asked:
            skipped[first.tp] = asked
    return skipped


def partition_ends(records: Iterable[Record]) -> dict[tuple[str, int], list[Record]]:
    """Each partition's first and last record in `records` (which come in offset order per
    partition): what the checks of a batch look at, found in one pass that makes no
    TopicPartition per record."""
    ends: dict[tuple[str, int], list[Record]] = {}
    for record in records:
        key = (record.topic, record.partition)
        pair = ends.get(key)
        if pair is None:
            ends[key] = [record, record]
        else:
            pair[1] = record
    return ends


# --- topic ids -----------------------------------------------------------------------------


def recorded_topic_ids(meta: Mapping[str, str]) -> dict[str, str]:
    return _prefixed(meta, META_TOPIC_ID_PREFIX)


def topic_id_key(topic: str) -> str:
    return META_TOPIC_ID_PREFIX + topic


def topic_replaced(
    recorded: Mapping[str, str], current: Mapping[str, str | None]
) -> LogLoss | None:
    changed = [
        (topic, recorded[topic], now)
        for topic, now in current.items()
        if now is not None and topic in recorded and recorded[topic] != now
    ]
    if not changed:
        return None
    topic, was, now = changed[0]
    found = f"{topic} was deleted and re-created: its topic id was {was} and is now {now}"
    return LogLoss(Reason.TOPIC_REPLACED, found, len(changed))


def ids_to_record(recorded: Mapping[str, str], current: Mapping[str, str | None]) -> dict[str, str]:
    """Meta rows for the topics whose id is known now and was never recorded."""
    return {
        topic_id_key(topic): now
        for topic, now in current.items()
        if now is not None and topic not in recorded
    }


# --- record marks --------------------------------------------------------------------------


def digest(record: Record) -> str:
    """The record's key, value and headers, hashed: the same bytes at the same offset are
    the same record (central gives every event its own id, in a header)."""
    hashed = hashlib.blake2b(digest_size=12)
    for part in (record.key, record.value):
        hashed.update(b"-" if part is None else b"+%d:" % len(part) + part)
    for name, value in record.headers:
        raw = name.encode()
        hashed.update(b"h%d:" % len(raw) + raw)
        hashed.update(b"-" if value is None else b"+%d:" % len(value) + value)
    return hashed.hexdigest()


def batch_marks(records: Iterable[Record]) -> dict[str, str]:
    """Meta rows for the last record of each partition in a batch (records come in offset
    order per partition)."""
    return {
        _mark_key(last.tp): f"{last.offset} {digest(last)}"
        for _, last in partition_ends(records).values()
    }


def read_marks(meta: Mapping[str, str]) -> dict[TopicPartition, Mark]:
    marks: dict[TopicPartition, Mark] = {}
    for key, value in _prefixed(meta, META_LOG_MARK_PREFIX).items():
        topic, _, partition = key.rpartition(":")
        offset, _, hashed = value.partition(" ")
        if topic and partition.isdigit() and offset.isdigit() and hashed:
            marks[TopicPartition(topic, int(partition))] = Mark(int(offset), hashed)
    return marks


class MarkCheck:
    """The record-level check: armed with the replica's marks where they match its stored
    offsets, it moves each such partition's next fetch back by one record, and takes that
    record out of the next batch, comparing it with the mark."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, Mark] = {}

    def arm(self, marks: Mapping[TopicPartition, Mark], positions: Positions) -> None:
        self._pending = {
            tp: mark
            for tp, mark in marks.items()
            if positions.get(tp) is not None and mark.offset == positions[tp] - 1  # type: ignore[operator]
        }

    def seek_target(self, tp: TopicPartition, position: int | None) -> int | None:
        mark = self._pending.get(tp)
        return position if mark is None else mark.offset

    def expected(self, positions: Positions) -> dict[TopicPartition, int | None]:
        """Where each partition's next record is expected: its seek target."""
        return {tp: self.seek_target(tp, offset) for tp, offset in positions.items()}

    def check(self, records: Sequence[Record]) -> tuple[list[Record], LogLoss | None]:
        """`records` without the marked records found unchanged, and the first change found.
        A partition's first record settles its check: at the mark's offset it is compared;
        past it, the marked record was compacted away and nothing can be told."""
        if not self._pending:
            return list(records), None
        kept: list[Record] = []
        loss: LogLoss | None = None
        for record in records:
            mark = self._pending.pop(record.tp, None)
            if mark is None or record.offset != mark.offset:
                kept.append(record)
            elif digest(record) != mark.digest:
                kept.append(record)  # a record of the log as it is: applied like the others
                loss = loss or LogLoss(Reason.RECORD_CHANGED, _changed(record))
        return kept, loss


def _changed(record: Record) -> str:
    return (
        f"{_name(record.tp)}: the record at offset {record.offset} is not the one the "
        "replica read there, so the log was replaced and refilled"
    )


def _mark_key(tp: TopicPartition) -> str:
    return f"{META_LOG_MARK_PREFIX}{tp.topic}:{tp.partition}"


def _prefixed(meta: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {k.removeprefix(prefix): v for k, v in meta.items() if k.startswith(prefix) and v}


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"
