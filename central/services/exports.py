"""Reads for exports: the stock ledger across SKUs and the catalog with its categories' names,
a page at a time by a cursor, so neither central nor the exporter holds a whole table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from peewee import JOIN, fn

from central.models import Category, Movement, Order, Product, Stock, as_utc
from central.services.principal import Principal, Role
from central.uow import UnitOfWork
from invwire.errors.central import Forbidden

MAX_PAGE = 1000


@dataclass(frozen=True)
class MovementFilter:
    """Which ledger rows a page holds: of one store's orders, at or after `since`, with an id
    above `after` (the last id of the page before)."""

    store: str | None = None
    since: datetime | None = None
    after: int = 0
    limit: int = MAX_PAGE


def list_movements(uow: UnitOfWork, principal: Principal, wanted: MovementFilter) -> dict[str, Any]:
    """The stock ledger of every SKU, oldest first; `next_after` continues it (null: no more).

    A movement belongs to a store when it is one of that store's orders (a sale or its
    cancellation); stock set or adjusted at central belongs to none. A store, and staff bound
    to one, see only their store's movements."""
    store = _visible_store(principal, wanted.store)
    limit = max(1, min(wanted.limit, MAX_PAGE))
    query = (
        Movement.select(Movement, Order.store_id.alias("store_id"))
        .join(Order, JOIN.LEFT_OUTER, on=(Order.id == Movement.order_id))
        .where(Movement.id > wanted.after)
    )
    if store is not None:
        query = query.where(Order.store_id == store)
    if wanted.since is not None:
        query = query.where(Movement.created_at >= wanted.since)
    with uow.db.connection_context():
        page = list(query.order_by(Movement.id).limit(limit + 1).objects())
    items = [_movement_view(m) for m in page[:limit]]
    return {"items": items, "next_after": items[-1]["id"] if len(page) > limit else None}


def _visible_store(principal: Principal, requested: str | None) -> str | None:
    if principal.role in (Role.ADMIN, Role.OPS):
        return requested
    if requested is not None and requested != principal.store_id:
        raise Forbidden("a store sees only its own stock movements")
    if principal.store_id is None:
        raise Forbidden("staff not bound to a store have no stock movements to see")
    return principal.store_id


def _movement_view(m: Movement) -> dict[str, Any]:
    joined: Any = m  # the joined store_id rides on the model instance
    return {
        "id": m.id,
        "at": as_utc(m.created_at),
        "sku": m.sku,
        "reason": m.reason,
        "delta": m.delta,
        "quantity": m.quantity,
        "stock_version": m.stock_version,
        "order_id": m.order_id,
        "store_id": joined.store_id,
        "actor": m.actor,
        "note": m.note,
    }


def list_catalog(uow: UnitOfWork, limit: int = MAX_PAGE, after: str = "") -> dict[str, Any]:
    """A page of products by SKU after `after`, each with its category's name and its stock:
    what an export writes as import rows. `next_after` continues it (null: no more)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = (
        Product.select(
            Product,
            Category.name.alias("category_name"),
            fn.COALESCE(Stock.quantity, 0).alias("quantity"),
        )
        .join(Category, on=(Category.id == Product.category))
        .join_from(Product, Stock, JOIN.LEFT_OUTER, on=(Stock.sku == Product.sku))
        .where(Product.sku > after)
        .order_by(Product.sku)
        .limit(limit + 1)
        .objects()
    )
    with uow.db.connection_context():
        page = list(query)
    items = [_catalog_view(p) for p in page[:limit]]
    return {"items": items, "next_after": items[-1]["sku"] if len(page) > limit else None}


def _catalog_view(product: Product) -> dict[str, Any]:
    joined: Any = product
    return {
        "sku": product.sku,
        "name": product.name,
        "price": f"{Decimal(product.price):.2f}",
        "category_id": product.category_id,
        "category": joined.category_name,
        "description": product.description,
        "active": product.active,
        "quantity": int(joined.quantity),
        "updated_at": as_utc(product.updated_at),
    }
