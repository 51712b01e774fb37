"""The sales report: orders placed in a window, grouped by UTC day, SKU or store, in SQL.

What counts: orders placed (`created_at`) in `[since, until)` that are confirmed now. Orders
placed in the window and cancelled since are left out of the rows and the totals and
counted apart (`cancelled`), so a cancelled sale never inflates revenue. Days are UTC days
(the stored times are UTC). Money is summed as whole cents: SQLite keeps a DECIMAL as a
REAL, so each line's unit price becomes an exact integer of cents before anything is added.

The totals come from a query of their own over the same filter, not from adding up the
rows: a report whose rows were cut at `limit` still totals every order.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import peewee
from peewee import JOIN, fn

from central.db import is_mysql
from central.domain import orders as order_rules
from central.models import Order, OrderLine, as_utc
from central.services.principal import Principal, Role
from central.uow import UnitOfWork
from invwire.errors.central import Forbidden, InvalidInput

MAX_ROWS = 1000


class Grouping(StrEnum):
    """What one row of the report is."""

    day = "day"
    sku = "sku"
    store = "store"


@dataclass(frozen=True)
class SalesQuery:
    by: Grouping = Grouping.day
    since: datetime | None = None  # naive UTC, inclusive
    until: datetime | None = None  # naive UTC, exclusive
    store: str | None = None
    limit: int = MAX_ROWS


@dataclass(frozen=True)
class Figures:
    orders: int = 0
    units: int = 0
    cents: int = 0

    def view(self) -> dict[str, Any]:
        return {"orders": self.orders, "units": self.units, "revenue": money(self.cents)}


def sales_report(uow: UnitOfWork, principal: Principal, wanted: SalesQuery) -> dict[str, Any]:
    store = _visible_store(principal, wanted.store)
    if wanted.since is not None and wanted.until is not None and wanted.since >= wanted.until:
        raise InvalidInput("since must be before until", field="until")
    limit = max(1, min(wanted.limit, MAX_ROWS))
    window = _Window(wanted.since, wanted.until, store)
    key = _key(wanted.by)
    with uow.db.connection_context(), _snapshot(uow.db):
        rows = _rows(window, wanted.by, key, limit + 1)
        by_status, keys = _totals(window, key)
    truncated = len(rows) > limit
    shown = _newest_days(rows, limit) if wanted.by is Grouping.day else rows[:limit]
    return {
        "by": wanted.by.value,
        "since": as_utc(wanted.since),
        "until": as_utc(wanted.until),
        "store": store,
        "rows": shown,
        "truncated": truncated,
        "keys": keys,
        "totals": by_status.get(order_rules.CONFIRMED, Figures()).view(),
        "cancelled": by_status.get(order_rules.CANCELLED, Figures()).view(),
    }


def money(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


def _visible_store(principal: Principal, requested: str | None) -> str | None:
    """Admins and ops see every store (or the one asked for); a store and its staff only
    their own, as with orders."""
    if principal.role in (Role.ADMIN, Role.OPS):
        return requested
    if requested is not None and requested != principal.store_id:
        raise Forbidden("a store sees only its own sales")
    if principal.store_id is None:
        raise Forbidden("staff not bound to a store have no sales to see")
    return principal.store_id


def _snapshot(db: peewee.Database) -> AbstractContextManager[Any]:
    """One read transaction for the rows and the totals, so that an order placed between
    the two queries is in both or in neither: InnoDB's consistent read (REPEATABLE READ),
    SQLite's deferred transaction (a WAL snapshot, without taking the write lock)."""
    return db.atomic("REPEATABLE READ") if is_mysql(db) else db.atomic("DEFERRED")


@dataclass(frozen=True)
class _Window:
    since: datetime | None
    until: datetime | None
    store: str | None

    def narrow(self, query: peewee.ModelSelect[Any]) -> peewee.ModelSelect[Any]:
        if self.since is not None:
            query = query.where(Order.created_at >= self.since)
        if self.until is not None:
            query = query.where(Order.created_at < self.until)
        if self.store is not None:
            query = query.where(Order.store_id == self.store)
        return query


def _key(by: Grouping) -> peewee.ColumnBase:
    if by is Grouping.sku:
        return OrderLine.sku
    if by is Grouping.store:
        return Order.store_id
    # The stored times are naive UTC, so the date of one is its UTC day.
    return fn.DATE(Order.created_at).coerce(False)


def _cents(db: peewee.Database) -> peewee.ColumnBase:
    """A line's revenue in cents, exact: MariaDB's DECIMAL arithmetic is exact as it is;
    SQLite's REAL of two places times 100 rounds to the exact integer, kept an INTEGER so
    that SUM adds integers, never floats."""
    cents: peewee.ColumnBase = fn.ROUND(OrderLine.unit_price * 100).coerce(False)
    if not is_mysql(db):
        cents = peewee.Cast(cents, "INTEGER")
    return cents * OrderLine.quantity


def _sales(window: _Window, *columns: peewee.ColumnBase) -> peewee.ModelSelect[Any]:
    db = Order._meta.database
    query = (
        Order.select(
            *columns,
            fn.COUNT(fn.DISTINCT(Order.id)).coerce(False).alias("orders"),
            fn.SUM(OrderLine.quantity).coerce(False).alias("units"),
            fn.SUM(_cents(db)).coerce(False).alias("cents"),
        )
        .join(OrderLine, JOIN.INNER, on=OrderLine.order_id == Order.id)
        .tuples()
    )
    return window.narrow(query)


def _rows(
    window: _Window, by: Grouping, key: peewee.ColumnBase, wanted: int
) -> list[dict[str, Any]]:
    query = _sales(window, key.alias("key")).where(Order.status == order_rules.CONFIRMED)
    query = query.group_by(key)
    cents = fn.SUM(_cents(Order._meta.database)).coerce(False)
    if by is Grouping.day:
        query = query.order_by(key.desc())  # the newest days, if cut
    else:
        query = query.order_by(cents.desc(), fn.SUM(OrderLine.quantity).desc(), key)
    return [_row(*found) for found in query.limit(wanted)]


def _totals(window: _Window, key: peewee.ColumnBase) -> tuple[dict[str, Figures], int]:
    """Each status's figures over the whole window, and how many keys the confirmed have."""
    keys = fn.COUNT(fn.DISTINCT(key)).coerce(False)
    query = _sales(window, Order.status, keys.alias("keys")).group_by(Order.status)
    by_status: dict[str, Figures] = {}
    count = 0
    for status, distinct_keys, orders, units, cents in query:
        by_status[status] = Figures(_whole(orders), _whole(units), _whole(cents))
        if status == order_rules.CONFIRMED:
            count = _whole(distinct_keys)
    return by_status, count


def _row(key: object, orders: object, units: object, cents: object) -> dict[str, Any]:
    figures = Figures(_whole(orders), _whole(units), _whole(cents))
    return {"key": _key_text(key), **figures.view()}


def _whole(value: object) -> int:
    """A count or a sum as the driver gives it: an int (SQLite) or a Decimal (MariaDB's
    SUM); a float would mean inexact money arithmetic, and is refused."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    raise TypeError(f"not a whole number from the database: {value!r}")


def _key_text(key: object) -> str:
    return key.isoformat() if isinstance(key, date) else str(key)


def _newest_days(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The newest `limit` days (they came newest first), oldest first as a chart reads."""
    return list(reversed(rows[:limit]))
