"""Apply one polled batch: rows, dead letters, offsets and counters in ONE transaction.

Either the whole batch and its next offsets are stored, or nothing is; a crash in between
means the batch is polled again from the stored offsets, and the versioned upserts make
re-applying it change nothing.

A batch whose records all parse is applied on the fast path (sync.batch_apply: set-based
statements, the same counts); a batch with a bad record is applied record by record, as
follows.

No record can stall a partition: each is written inside a savepoint of its own, and a record
that cannot be parsed, validated or written for a reason of its own (replica.db's
is_record_fault: a constraint, a value SQLite cannot store, any error that is not about the
database) is rolled back alone and dead-lettered with the reason, and the batch goes on.
An error about the database itself (locked, I/O, full, corrupt) is no record's fault: it
escapes, the whole batch rolls back, and the sync loop decides whether to retry.

Every store reads every store's `order.updated` events (topic order-updated): only this
store's (`store_id`) are kept; another store's change nothing and count as stale.

Each record's epoch (its `invctl-epoch` header, sync.epochs) goes with its change into the
versioned upserts; a record of an older incarnation of central's database than the newest
the replica has seen is not applied (stale), and a malformed header is dead-lettered
(`header.invalid`). The newest epoch seen is stored with the batch, and the result says when
it grew: the sync loop then rebuilds the replica for the new epoch.

With the offsets goes each partition's mark: the last record's offset and digest, by which the
loop tells a log replaced under the replica (sync.log_checks).

With tracing on, each batch is a CONSUMER span "replica.apply" linked to the sales (central's
spans) whose records it applies (sync.trace_links); off, it costs one check a batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, assert_never

from invwire import tracing
from invwire.errors import PoisonRecord
from invwire.errors.agent import RecordNotApplied
from invwire.events import (
    CategoryChanged,
    OrderUpdated,
    ProductChanged,
    Received,
    StockChanged,
    parse_record,
)
from storeagent.replica import order_status
from storeagent.replica.db import (
    META_EPOCH,
    META_EVENTS_APPLIED,
    META_LAST_APPLIED_AT,
    META_LAST_EVENT_AT,
    Replica,
    is_record_fault,
    iso,
)
from storeagent.sync.batch_apply import apply_in_bulk
from storeagent.sync.epochs import EpochWatch, record_epoch
from storeagent.sync.log_checks import batch_marks
from storeagent.sync.source import Record, TopicPartition
from storeagent.sync.trace_links import batch_links, sole_parent


@dataclass
class BatchResult:
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    newest_event_at: datetime | None = None
    stock_event_times: list[datetime] = field(default_factory=list)  # for the sync latency
    new_epoch: tuple[int, int] | None = None  # (before, after) when a newer epoch came

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
    replica: Replica,
    records: Sequence[Record],
    *,
    prefix: str,
    now: datetime,
    store_id: str | None = None,
    epoch_floor: int = 0,
) -> BatchResult:
    """`prefix` is the deployment's topic prefix, stripped before parsing; `store_id` the
    store whose orders' updates are kept (None: none are); `epoch_floor` the epoch a rebuild
    is made for (sync.rebuild), below which records are stale even in a new replica."""
    offsets = next_offsets(records)
    with _apply_span(records, store_id) as span, replica.transaction():
        seen = replica.epoch()
        result, epochs = BatchResult(offsets=offsets), EpochWatch(seen, epoch_floor)
        fast = apply_in_bulk(
            replica, records, prefix=prefix, store_id=store_id, epochs=epochs, result=result
        )
        if not fast:  # a bad record in the batch: start over, record by record
            result, epochs = BatchResult(offsets=offsets), EpochWatch(seen, epoch_floor)
            for record in records:
                _apply_record(replica, record, prefix, now, result, store_id, epochs)
        replica.save_offsets(result.offsets)
        replica.set_meta(batch_marks(records))  # what was read there (sync.log_checks)
        _update_counters(replica, result, now)
        result.new_epoch = epochs.grew()
        if result.new_epoch is not None:
            replica.set_meta({META_EPOCH: str(epochs.seen)})
        tracing.annotate(span, events=result.applied)
    return result


def _apply_span(records: Sequence[Record], store_id: str | None) -> AbstractContextManager[Any]:
    """The batch's CONSUMER span "replica.apply", linked to the span that wrote each record's
    outbox row (its `traceparent` header: one link per distinct span, at most MAX_LINKS), and
    the child of that span when it is the only one (one sale's records: the sale's trace then
    shows its fan-out to every store). Off: nothing, and no record's context is read."""
    if not tracing.enabled():
        return nullcontext()
    links = batch_links(records)
    attributes: dict[str, object] = {
        "invctl.records": len(records),
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
    }
    if store_id is not None:
        attributes["invctl.store_id"] = store_id
    return tracing.span(
        "replica.apply",
        kind="consumer",
        attributes=attributes,
        parent=sole_parent(links),
        links=links,
    )


def next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    # keyed by plain tuples while counting: a TopicPartition per record cost a microsecond
    last: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        if record.offset >= last.get(key, -1):
            last[key] = record.offset
    return {
        TopicPartition(topic, partition): offset + 1 for (topic, partition), offset in last.items()
    }


def _apply_record(
    replica: Replica,
    record: Record,
    prefix: str,
    now: datetime,
    result: BatchResult,
    store_id: str | None,
    epochs: EpochWatch,
) -> None:
    try:
        epoch = record_epoch(record)
        if not epochs.admits(epoch):
            result.stale += 1  # central's database it describes was replaced since
            return
        received = parse_record(record.topic.removeprefix(prefix), record.key, record.value)
        replica.event_epoch = epoch
        with replica.savepoint():
            changed = _upsert(replica, received, store_id)
    except PoisonRecord as poison:
        _dead_letter(replica, record, poison, now, result)
        return
    except Exception as exc:
        if not is_record_fault(exc):
            raise
        _dead_letter(replica, record, _not_applied(exc), now, result)
        return
    epochs.saw(epoch)
    result.count(received, changed)


def _not_applied(exc: Exception) -> RecordNotApplied:
    return RecordNotApplied(f"{type(exc).__name__}: {exc}", error=type(exc).__name__)


def _dead_letter(
    replica: Replica, record: Record, error: PoisonRecord, now: datetime, result: BatchResult
) -> None:
    replica.add_dead_letter(record, error, now)
    result.dead_lettered += 1
    result.dead_letter_reasons[error.code] += 1


def _upsert(replica: Replica, received: Received, store_id: str | None) -> bool:
    event = received.event
    match event:
        case CategoryChanged():
            return replica.upsert_category(event)
        case ProductChanged():
            return replica.upsert_product(event)
        case StockChanged():
            return replica.upsert_stock(event, received.occurred_at)
        case OrderUpdated():
            if event.store_id != store_id:
                return False  # another store's order: not this replica's to keep
            return order_status.record(replica.db, event, updated_at=iso(received.occurred_at))
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
