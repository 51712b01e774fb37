"""Apply one polled batch: rows, dead letters, offsets and counters in ONE transaction.

Either the whole batch and its next offsets are stored, or nothing is; a crash in between
means the batch is polled again from the stored offsets, and the versioned upserts make
re-applying it change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import assert_never

from invwire.errors import PoisonRecord
from invwire.events import (
    CategoryChanged,
    ProductChanged,
    Received,
    StockChanged,
    parse_record,
)
from storeagent.replica.db import (
    META_EVENTS_APPLIED,
    META_LAST_APPLIED_AT,
    META_LAST_EVENT_AT,
    Replica,
    iso,
)
from storeagent.sync.source import Record, TopicPartition


@dataclass
class BatchResult:
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    newest_event_at: datetime | None = None
    stock_event_times: list[datetime] = field(default_factory=list)  # for the sync latency

    def count(self, received: Received, changed: bool) -> None:
        if not changed:
            self.stale += 1
            return
        self.applied += 1
        occurred_at = received.occurred_at
        if isinstance(received.event, StockChanged):
            self.stock_event_times.append(occurred_at)
        if self.newest_event_at is None or occurred_at > self.newest_event_at:
            self.newest_event_at = occurred_at


def apply_batch(
    replica: Replica, records: Sequence[Record], *, prefix: str, now: datetime
) -> BatchResult:
    """`prefix` is the deployment's topic prefix, stripped before parsing."""
    result = BatchResult(offsets=next_offsets(records))
    with replica.transaction():
        for record in records:
            _apply_record(replica, record, prefix, now, result)
        replica.save_offsets(result.offsets)
        _update_counters(replica, result, now)
    return result


def next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        offsets[record.tp] = max(offsets.get(record.tp, 0), record.offset + 1)
    return offsets


def _apply_record(
    replica: Replica, record: Record, prefix: str, now: datetime, result: BatchResult
) -> None:
    try:
        received = parse_record(record.topic.removeprefix(prefix), record.key, record.value)
    except PoisonRecord as poison:
        replica.add_dead_letter(record, poison, now)
        result.dead_lettered += 1
        return
    result.count(received, _upsert(replica, received))


def _upsert(replica: Replica, received: Received) -> bool:
    event = received.event
    match event:
        case CategoryChanged():
            return replica.upsert_category(event)
        case ProductChanged():
            return replica.upsert_product(event)
        case StockChanged():
            return replica.upsert_stock(event, received.occurred_at)
        case _:
            assert_never(event)


def _update_counters(replica: Replica, result: BatchResult, now: datetime) -> None:
    if not result.applied:
        return
    updates = {
        META_EVENTS_APPLIED: str(int(replica.get_meta(META_EVENTS_APPLIED) or 0) + result.applied),
        META_LAST_APPLIED_AT: iso(now),
    }
    newest = result.newest_event_at
    previous = replica.get_meta(META_LAST_EVENT_AT)
    if newest and (previous is None or newest > datetime.fromisoformat(previous)):
        updates[META_LAST_EVENT_AT] = iso(newest)
    replica.set_meta(updates)
