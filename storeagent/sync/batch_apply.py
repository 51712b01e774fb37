"""A batch's fast path: every record parsed first, then the batch's rows written with a few
set-based statements, inside one savepoint of the batch's transaction.

Record by record (sync.apply), each record costs a savepoint and an upsert of its own; here
the whole batch is parsed and validated before the database is touched, the stored (epoch,
version) of its keys are read with one SELECT per table, and Python decides, in the batch's
order, which events are newer than both the stored row and the earlier events of the same
key in the batch: those are applied, the others are stale, exactly as the per-record
upserts would have found them one after the other. Only the last applied change of each key
is written (one executemany per table); its version guard stays in the SQL.

The fast path gives way, having written nothing, when a record cannot be parsed (a poison
record, a malformed epoch header) or a write fails for a reason of a record's own
(replica.db's is_record_fault): the caller then applies the batch record by record, which
dead-letters each bad record alone. An error about the database itself escapes, as it does
record by record: the whole batch rolls back.

`order.updated` events are rare (one per cancelled sale) and keep their per-record upsert
(replica.order_status), in the batch's order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from invwire.errors import PoisonRecord
from invwire.event_fast_path import StockEnvelope
from invwire.events import (
    CategoryChanged,
    OrderUpdated,
    ProductChanged,
    Received,
    StockChanged,
    parse_record,
    parse_slowly,
    valid_stock,
)
from invwire.topics import TOPIC_INVENTORY
from storeagent.replica import order_status
from storeagent.replica.db import (
    CATEGORIES,
    PRODUCTS,
    STOCK,
    Rank,
    Replica,
    VersionedTable,
    is_record_fault,
    iso,
    iso_as_sent,
)
from storeagent.sync.epochs import EpochWatch, record_epoch
from storeagent.sync.source import Record

if TYPE_CHECKING:
    from storeagent.sync.apply import BatchResult


# A valid stock.changed record as the fast path decoded it, with its time: most records of a
# busy replica are these, and making a StockChanged and a Received of each cost about a
# microsecond (invwire.events.valid_stock).
FastStock = tuple[StockEnvelope, datetime]
# A record admitted by its epoch and parsed, with that epoch: what its upsert needs (a plain
# tuple: one is made per consumed record, and a dataclass cost half a microsecond more).
Parsed = tuple[int, Received | FastStock]


def apply_in_bulk(
    replica: Replica,
    records: Sequence[Record],
    *,
    prefix: str,
    store_id: str | None,
    epochs: EpochWatch,
    result: BatchResult,
) -> bool:
    """Apply `records` on the fast path, counting into `result` and advancing `epochs`; False
    when it gave way (see the module's docstring): then `result` and `epochs` are spoiled,
    and the database is as it was."""
    if not replica.writes_in_bulk():
        return False
    parsed = parse_batch(records, prefix, epochs, result)
    if parsed is None:
        return False
    try:
        with replica.savepoint():
            _write(replica, parsed, store_id, result)
    except Exception as exc:
        if not is_record_fault(exc):
            raise
        return False
    return True


def parse_batch(
    records: Sequence[Record], prefix: str, epochs: EpochWatch, result: BatchResult
) -> list[Parsed] | None:
    """The records `epochs` admits, parsed, in order (the others count as stale); None when
    one of them is poison. The epoch checks run in the order record-by-record apply runs
    them, each after the records before it were seen."""
    parsed: list[Parsed] = []
    admits, saw = epochs.admits, epochs.saw
    try:
        for record in records:
            epoch = record_epoch(record)
            if not admits(epoch):
                result.stale += 1
                continue
            saw(epoch)
            parsed.append((epoch, _parsed(record.topic.removeprefix(prefix), record)))
    except PoisonRecord:
        return None
    return parsed


def _parsed(topic: str, record: Record) -> Received | FastStock:
    """The record parsed as parse_record would (PoisonRecord when it is bad), a valid
    stock.changed left as the fast path decoded it."""
    if topic != TOPIC_INVENTORY:
        return parse_record(topic, record.key, record.value)
    stock = valid_stock(record.key, record.value)
    return stock if stock is not None else parse_slowly(topic, record.key, record.value)


class Winners:
    """One table's applied changes in a batch: per key, the rank to beat (the stored row's,
    then the last applied event's) and the last applied change, whose parameters `row`
    makes (for the winners only: most changes of a busy key are superseded in the batch)."""

    def __init__(
        self,
        table: VersionedTable,
        stored: dict[Any, Rank],
        row: Callable[[Any, int], tuple[Any, ...]],
    ) -> None:
        self.table = table
        self._ranks = stored
        self._row = row
        self._changes: dict[Any, Parsed] = {}

    def offer(self, key: Any, rank: Rank, change: Parsed) -> bool:
        """Whether a change of `key` at `rank` is newer than the stored row and every change
        of the key applied before it in the batch (the upsert's guard: strictly greater)."""
        current = self._ranks.get(key)
        if current is not None and rank <= current:
            return False
        self._ranks[key] = rank
        self._changes[key] = change
        return True

    def rows(self) -> list[tuple[Any, ...]]:
        row = self._row
        return [row(item, epoch) for epoch, item in self._changes.values()]


def _write(
    replica: Replica, parsed: Sequence[Parsed], store_id: str | None, result: BatchResult
) -> None:
    categories, products, stock = _winners(replica, parsed)
    applied: list[Received | FastStock] = []
    for change in parsed:
        epoch, item = change
        if isinstance(item, tuple):  # a FastStock: by far the most frequent, tested first
            data = item[0].data
            changed = stock.offer(data.sku, (epoch, data.stock_version), change)
        elif type(event := item.event) is StockChanged:
            changed = stock.offer(event.sku, (epoch, event.stock_version), change)
        elif type(event) is ProductChanged:
            changed = products.offer(event.sku, (epoch, event.version), change)
        elif type(event) is CategoryChanged:
            changed = categories.offer(event.id, (epoch, event.version), change)
        else:
            changed = _record_order(replica, item, store_id)
        if changed:
            applied.append(item)
    result.stale += len(parsed) - len(applied)
    _count_applied(result, applied)
    for winners in (categories, products, stock):
        _upsert_winners(replica, winners)


def _count_applied(result: BatchResult, applied: Sequence[Received | FastStock]) -> None:
    """What BatchResult.count counts for each applied change, for a batch's at once."""
    if not applied:
        return
    result.applied += len(applied)
    times = [item[1] if isinstance(item, tuple) else item.occurred_at for item in applied]
    result.stock_event_times.extend(
        at
        for at, item in zip(times, applied, strict=True)
        if isinstance(item, tuple) or type(item.event) is StockChanged
    )
    newest = max(times)
    if result.newest_event_at is None or newest > result.newest_event_at:
        result.newest_event_at = newest


def _winners(replica: Replica, parsed: Sequence[Parsed]) -> tuple[Winners, Winners, Winners]:
    """Each table's Winners, primed with the stored ranks of the batch's keys."""
    keys: dict[VersionedTable, set[Any]] = {CATEGORIES: set(), PRODUCTS: set(), STOCK: set()}
    for _, item in parsed:
        if isinstance(item, tuple):
            keys[STOCK].add(item[0].data.sku)
        elif type(event := item.event) is StockChanged:
            keys[STOCK].add(event.sku)
        elif type(event) is ProductChanged:
            keys[PRODUCTS].add(event.sku)
        elif type(event) is CategoryChanged:
            keys[CATEGORIES].add(event.id)
    return (
        Winners(CATEGORIES, _stored(replica, CATEGORIES, keys), _category_row),
        Winners(PRODUCTS, _stored(replica, PRODUCTS, keys), _product_row),
        Winners(STOCK, _stored(replica, STOCK, keys), _stock_row),
    )


def _stored(
    replica: Replica, table: VersionedTable, keys: dict[VersionedTable, set[Any]]
) -> dict[Any, Rank]:
    return replica.stored_ranks(table, keys[table]) if keys[table] else {}


def _upsert_winners(replica: Replica, winners: Winners) -> None:
    rows = winners.rows()
    changed = replica.upsert_rows(winners.table, rows)
    if changed != len(rows):  # the stored ranks read moments ago say every one wins
        raise RankMismatch(f"{winners.table.name}: {changed} of {len(rows)} rows changed")


class RankMismatch(RuntimeError):
    """The set-based upsert changed another number of rows than the ranks read in the same
    transaction promised; the counts could not be trusted, so the batch goes record by
    record (a RuntimeError is a record fault for is_record_fault)."""


def _stock_row(item: Received | FastStock, epoch: int) -> tuple[Any, ...]:
    """replica.db's stock upsert parameters, as upsert_stock binds them."""
    if isinstance(item, tuple):
        envelope, occurred_at = item
        data = envelope.data
        updated_at = iso_as_sent(envelope.occurred_at, occurred_at)
        return (data.sku, data.quantity, data.stock_version, updated_at, epoch)
    event = item.event
    assert type(event) is StockChanged  # Winners of STOCK hold nothing else
    return (event.sku, event.quantity, event.stock_version, iso(item.occurred_at), epoch)


def _product_row(item: Received | FastStock, epoch: int) -> tuple[Any, ...]:
    """replica.db's product upsert parameters, as upsert_product binds them."""
    event = None if isinstance(item, tuple) else item.event
    assert type(event) is ProductChanged  # Winners of PRODUCTS hold nothing else
    return (
        event.sku,
        event.name,
        str(event.price),
        event.category_id,
        event.description,
        int(event.active),
        event.version,
        epoch,
    )


def _category_row(item: Received | FastStock, epoch: int) -> tuple[Any, ...]:
    """replica.db's category upsert parameters, as upsert_category binds them."""
    event = None if isinstance(item, tuple) else item.event
    assert type(event) is CategoryChanged  # Winners of CATEGORIES hold nothing else
    return (event.id, event.name, event.version, epoch)


def _record_order(replica: Replica, received: Received, store_id: str | None) -> bool:
    event = received.event
    if not isinstance(event, OrderUpdated):  # the one kind _write leaves to this function
        raise TypeError(f"no upsert for {type(event).__name__}")
    if event.store_id != store_id:
        return False  # another store's order: not this replica's to keep
    return order_status.record(replica.db, event, updated_at=iso(received.occurred_at))
