"""Read side of the store API: replica rows (and live sync progress) shaped as in docs/wire.md."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any, NotRequired, cast

import peewee
from peewee import JOIN, fn
from typing_extensions import TypedDict

from storeagent.models import LocalOrder
from storeagent.offline import OfflineQueueStatus
from storeagent.progress import SyncProgress
from storeagent.replica import (
    META_EVENTS_APPLIED,
    META_LAST_APPLIED_AT,
    META_LAST_EVENT_AT,
    Replica,
)
from storeagent.resilience import CircuitStatus


class StockView(TypedDict):
    sku: str
    name: str | None
    quantity: int
    stock_version: int
    updated_at: str | None
    source: str


class ProductItem(TypedDict):
    sku: str
    name: str
    price: str
    category_id: int
    active: bool
    quantity: int
    stock_version: int


class ProductList(TypedDict):
    items: list[ProductItem]


class OrderItem(TypedDict):
    local_ref: str
    status: str
    order_id: str | None
    lines: list[dict[str, Any]]
    created_at: str
    reason: str | None


class OrderList(TypedDict):
    items: list[OrderItem]


class PartitionStatus(TypedDict):
    topic: str
    partition: int
    offset: int
    end_offset: int | None
    lag: int | None


class SyncStatus(TypedDict):
    store_id: str
    ready: bool
    last_event_at: str | None
    last_applied_at: str | None
    events_applied: int
    dead_letters: int
    partitions: list[PartitionStatus]
    central: NotRequired[CircuitStatus]
    offline_queue: NotRequired[OfflineQueueStatus]


def stock_view(replica: Replica, sku: str) -> StockView | None:
    """A SKU's stock; a product without a stock row has quantity 0 at version 0."""
    product = replica.m.product.get_or_none(replica.m.product.sku == sku)
    stock = replica.m.stock.get_or_none(replica.m.stock.sku == sku)
    if product is None and stock is None:
        return None
    return StockView(
        sku=sku,
        name=product.name if product else None,
        quantity=stock.quantity if stock else 0,
        stock_version=stock.stock_version if stock else 0,
        updated_at=stock.updated_at if stock else None,
        source="replica",
    )


def product_list(replica: Replica) -> ProductList:
    prod, stock = replica.m.product, replica.m.stock
    query = (
        prod.select(
            prod.sku,
            prod.name,
            prod.price,
            prod.category_id,
            prod.active,
            fn.COALESCE(stock.quantity, 0).alias("quantity"),
            fn.COALESCE(stock.stock_version, 0).alias("stock_version"),
        )
        .join(stock, JOIN.LEFT_OUTER, on=(stock.sku == prod.sku))
        .order_by(prod.sku)
        .dicts()
    )
    return ProductList(items=[_product_item(row) for row in cast(Iterable[dict[str, Any]], query)])


def _product_item(row: dict[str, Any]) -> ProductItem:
    return ProductItem(
        sku=row["sku"],
        name=row["name"],
        price=row["price"],
        category_id=row["category_id"],
        active=bool(row["active"]),
        quantity=row["quantity"],
        stock_version=row["stock_version"],
    )


def order_list(replica: Replica, status: str | None, limit: int) -> OrderList:
    """This store's sales, newest first; `reason` is why one was refused or is not done."""
    return OrderList(items=[_order_item(row) for row in replica.local_orders(status, limit)])


def _order_item(row: LocalOrder) -> OrderItem:
    reason = f"{row.reason_code}: {row.reason_message}" if row.reason_code else None
    return OrderItem(
        local_ref=row.local_ref,
        status=row.status,
        order_id=row.order_id,
        lines=json.loads(row.lines),
        created_at=row.created_at,
        reason=reason,
    )


def sync_status(
    replica: Replica,
    progress: SyncProgress,
    *,
    store_id: str,
    topics: Collection[str],
    ready: bool,
    central: CircuitStatus | None = None,
    offline_queue: OfflineQueueStatus | None = None,
) -> SyncStatus:
    """Per-partition lag of the current topics: live end offsets minus stored next offsets;
    `central` is the order path's circuit breaker, when the agent places orders."""
    meta = replica.meta()
    stored = replica.stored_offsets()
    ends = progress.end_offsets()
    partitions = sorted(tp for tp in set(stored) | set(ends) if tp.topic in topics)
    status = SyncStatus(
        store_id=store_id,
        ready=ready,
        last_event_at=meta.get(META_LAST_EVENT_AT),
        last_applied_at=meta.get(META_LAST_APPLIED_AT),
        events_applied=int(meta.get(META_EVENTS_APPLIED, 0)),
        dead_letters=replica.dead_letter_count(),
        partitions=[
            _partition(tp.topic, tp.partition, stored.get(tp, 0), ends.get(tp)) for tp in partitions
        ],
    )
    if central is not None:
        status["central"] = central
    if offline_queue is not None:
        status["offline_queue"] = offline_queue
    return status


def _partition(topic: str, partition: int, offset: int, end: int | None) -> PartitionStatus:
    lag = None if end is None else max(end - offset, 0)
    return PartitionStatus(topic=topic, partition=partition, offset=offset, end_offset=end, lag=lag)


def readiness_checks(replica: Replica, progress: SyncProgress) -> dict[str, bool]:
    """Ready = the replica's database answers, Kafka answered the loop recently, the loop holds
    its partitions and keeps coming round, and the replica finished its first sync."""
    database = _database_answers(replica)
    return {
        "database": database,
        "broker": progress.broker_reachable(),
        "assigned": progress.is_assigned(),
        "bootstrapped": database and _bootstrapped(replica),
        "consuming": progress.is_consuming(),
    }


def _database_answers(replica: Replica) -> bool:
    try:
        replica.db.execute_sql("SELECT 1")
    except peewee.DatabaseError:
        return False
    return True


def _bootstrapped(replica: Replica) -> bool:
    try:
        return replica.is_bootstrapped()
    except peewee.DatabaseError:
        return False
