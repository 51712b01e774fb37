"""Republish: put central's whole current state back on Kafka through the outbox, and the
test that tells the relay Kafka's log lost some of it.

Each category, product and stock row gets one event of the type and payload a normal change
publishes (invwire.events), with the row's CURRENT version: an agent that holds that version
drops it as stale, and a new agent bootstraps every row from it.

Rows are read a batch at a time, each batch in one transaction that locks its rows as a change
does (SELECT ... FOR UPDATE; SQLite's writer lock) and writes their events to the outbox. That
is safe without one snapshot of everything: every event carries its own row's full state at
the version read under the lock, so a change committed after the batch gets a newer version,
a later outbox id and its own event, and compaction (which keeps the last record of a key)
keeps the newer one. Memory holds one batch, whatever the catalog's size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import peewee
from peewee import fn

from central.db import locked
from central.models import Category, Outbox, Product, Stock
from central.services.catalog import category_event, product_event
from central.uow import UnitOfWork
from invwire.events import Event, StockChanged
from invwire.topics import TOPIC_CATEGORY, TOPIC_INVENTORY, TOPIC_PRODUCT

BATCH_ROWS = 500
# A republished stock row is a "set" to the quantity it already has: delta 0.
REPUBLISH_REASON = "set"
AUDITED_TOPICS = (TOPIC_CATEGORY, TOPIC_PRODUCT, TOPIC_INVENTORY)


@dataclass(frozen=True)
class Republished:
    categories: int = 0
    products: int = 0
    stock: int = 0

    @property
    def events(self) -> int:
        return self.categories + self.products + self.stock


def republish(uow: Callable[[], UnitOfWork], batch_rows: int = BATCH_ROWS) -> Republished:
    """One outbox event per category, product and stock row, at its current version."""
    return Republished(
        categories=_in_batches(uow, batch_rows, _categories),
        products=_in_batches(uow, batch_rows, _products),
        stock=_in_batches(uow, batch_rows, _stock),
    )


Batch = Callable[[Any, int], tuple[list[Event], Any]]


def _in_batches(uow: Callable[[], UnitOfWork], batch_rows: int, batch: Batch) -> int:
    after: Any = None
    total = 0
    while True:
        with uow() as unit:
            events, after = batch(after, batch_rows)
            unit.record(*events)
        total += len(events)
        if len(events) < batch_rows:
            return total


def _categories(after: int | None, limit: int) -> tuple[list[Event], int | None]:
    query = Category.select().order_by(Category.id).limit(limit)
    if after is not None:
        query = query.where(Category.id > after)
    rows = list(locked(query))
    return [category_event(c, created=False) for c in rows], _last(rows, "id", after)


def _products(after: str | None, limit: int) -> tuple[list[Event], str | None]:
    query = Product.select().order_by(Product.sku).limit(limit)
    if after is not None:
        query = query.where(Product.sku > after)
    rows = list(locked(query))
    return [product_event(p, created=False) for p in rows], _last(rows, "sku", after)


def _stock(after: str | None, limit: int) -> tuple[list[Event], str | None]:
    query = Stock.select().order_by(Stock.sku).limit(limit)
    if after is not None:
        query = query.where(Stock.sku > after)
    rows = list(locked(query))
    events: list[Event] = [
        StockChanged(s.sku, s.quantity, 0, REPUBLISH_REASON, s.version) for s in rows
    ]
    return events, _last(rows, "sku", after)


def _last(rows: list[Any], key: str, after: Any) -> Any:
    return getattr(rows[-1], key) if rows else after


# --- did Kafka lose what central published? ------------------------------------------------


def live_rows(db: peewee.Database) -> dict[str, int]:
    """Rows each topic must hold a record of. A stock row at version 0 was never changed and
    so never published (a new product's stock); every other row was, at least once."""
    with db.connection_context():
        return {
            TOPIC_CATEGORY: Category.select().count(),
            TOPIC_PRODUCT: Product.select().count(),
            TOPIC_INVENTORY: Stock.select().where(Stock.version > 0).count(),
        }


def pending_keys(db: peewee.Database) -> dict[str, int]:
    """Distinct keys of each topic's events still waiting in the outbox."""
    query: Any = (
        Outbox.select(Outbox.topic, fn.COUNT(Outbox.key.distinct()))
        .where(Outbox.published_at.is_null())
        .group_by(Outbox.topic)
        .tuples()
    )
    with db.connection_context():
        counted = {str(topic): int(keys) for topic, keys in query}
    return {topic: counted.get(topic, 0) for topic in AUDITED_TOPICS}


def shortfall(
    rows: Mapping[str, int], pending: Mapping[str, int], records: Mapping[str, int]
) -> dict[str, int]:
    """The topics that have lost records, with how many rows they miss at least.

    Every live row has at least one event, either still in the outbox (a pending key) or on
    its topic. Compaction keeps the last record of each key, and a topic's end offsets count
    every record ever appended (compaction never lowers them): so, if nothing was lost,
    end offsets summed + pending keys >= live rows. Fewer means the log lost records: the
    topic was deleted and re-created (or newly created: its end offsets start again at 0),
    or the broker lost its data. The test never fires wrongly; it can miss a loss that new
    records since have hidden, which is why the relay runs it before publishing again after
    any failure. `rows` must be read before `pending`, and `pending` before `records`.
    """
    missing = {
        topic: rows.get(topic, 0) - pending.get(topic, 0) - records.get(topic, 0)
        for topic in AUDITED_TOPICS
    }
    return {topic: count for topic, count in missing.items() if count > 0}


def describe(counts: Republished) -> dict[str, int]:
    return {
        "categories": counts.categories,
        "products": counts.products,
        "stock": counts.stock,
        "events": counts.events,
    }
