"""Read side of the replica: the replicated rows as values, and as the store API shapes them
(docs/wire.md)."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from peewee import JOIN, fn
from typing_extensions import TypedDict

from invwire.catalog import ProductFilter
from invwire.orders import CANCELLED
from storeagent.replica.db import Replica, iso
from storeagent.replica.models import DeadLetter, Stock, bind_models


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
    description: str
    active: bool
    version: int
    quantity: int
    stock_version: int


class ProductList(TypedDict):
    items: list[ProductItem]
    next_after: str | None  # the last SKU of this page when more follow, else None


class CategoryItem(TypedDict):
    id: int
    name: str
    version: int


class CategoryList(TypedDict):
    items: list[CategoryItem]
    next_after: int | None


class OrderItem(TypedDict):
    local_ref: str
    status: str
    order_id: str | None
    lines: list[dict[str, Any]]
    created_at: str
    reason: str | None
    total: str | None  # central's, once it confirmed the sale
    cancelled_at: str | None  # when central cancelled it


class OrderList(TypedDict):
    items: list[OrderItem]


@dataclass(frozen=True)
class CategoryRow:
    id: int
    name: str
    version: int


@dataclass(frozen=True)
class ProductRow:
    sku: str
    name: str
    price: str
    category_id: int
    description: str
    active: bool
    version: int


@dataclass(frozen=True)
class StockRow:
    sku: str
    quantity: int
    stock_version: int
    updated_at: str


@dataclass(frozen=True)
class DeadLetterRow:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    created_at: str


@dataclass(frozen=True)
class DeadLetterSummary:
    """A dead letter as a list shows it: its key's first bytes and its value's size only."""

    id: int
    topic: str
    partition: int
    offset: int
    key_head: bytes | None  # the key's first `key_bytes` bytes
    key_size: int | None
    value_size: int | None
    reason: str
    detail: str
    created_at: str


@dataclass(frozen=True)
class DeadLetterPage:
    """Newest first; `next_before` is the last id shown when older ones follow, else None."""

    items: list[DeadLetterSummary]
    total: int
    next_before: int | None


@dataclass(frozen=True)
class DeadLetterEntry:
    """One dead letter, whole, with the id the replica gave it."""

    id: int
    letter: DeadLetterRow


@dataclass(frozen=True)
class OnHand:
    """What the replica shows of a product a sale names: whether it is sold, and its stock."""

    active: bool
    quantity: int


class ReplicaReads:
    """Read queries over the replicated tables of one replica handle."""

    def __init__(self, replica: Replica) -> None:
        tables = bind_models(replica.db)
        self._category, self._product = tables.category, tables.product
        self._stock, self._dead_letter = tables.stock, tables.dead_letter

    def stock_view(self, sku: str) -> StockView | None:
        """A SKU's stock; a product without a stock row has quantity 0 at version 0."""
        product = self._product.get_or_none(self._product.sku == sku)
        stock = self._stock.get_or_none(self._stock.sku == sku)
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

    def product_list(
        self, where: ProductFilter | None = None, *, limit: int = 1000, after: str = ""
    ) -> ProductList:
        """A page of products by SKU after `after`, each with its stock (0 without a row)."""
        prod, stock = self._product, self._stock
        quantity = fn.COALESCE(stock.quantity, 0)
        conditions = (where or ProductFilter()).conditions(
            category=prod.category_id, sku=prod.sku, name=prod.name, quantity=quantity
        )
        query = (
            prod.select(
                prod.sku,
                prod.name,
                prod.price,
                prod.category_id,
                prod.description,
                prod.active,
                prod.version,
                quantity.alias("quantity"),
                fn.COALESCE(stock.stock_version, 0).alias("stock_version"),
            )
            .join(stock, JOIN.LEFT_OUTER, on=(stock.sku == prod.sku))
            .where(prod.sku > after, *conditions)
            .order_by(prod.sku)
            .limit(limit + 1)
            .dicts()
        )
        rows = list(cast(Iterable[dict[str, Any]], query))
        items = [_product_item(row) for row in rows[:limit]]
        return ProductList(items=items, next_after=_next(rows, limit, "sku"))

    def category_list(self, *, limit: int = 1000, after: int = 0) -> CategoryList:
        """A page of categories by id after `after`."""
        table = self._category
        query = table.select().where(table.id > after).order_by(table.id).limit(limit + 1)
        rows = list(cast(Iterable[dict[str, Any]], query.dicts()))
        items = [CategoryItem(id=r["id"], name=r["name"], version=r["version"]) for r in rows]
        return CategoryList(items=items[:limit], next_after=_next(rows, limit, "id"))

    def on_hand(self, skus: Collection[str]) -> dict[str, OnHand]:
        """The products of `skus` the replica knows, with their stock (0 without a row)."""
        prod, stock = self._product, self._stock
        quantities = {s.sku: s.quantity for s in stock.select().where(stock.sku.in_(skus))}
        return {
            p.sku: OnHand(bool(p.active), quantities.get(p.sku, 0))
            for p in prod.select().where(prod.sku.in_(skus))
        }

    def stock_level(self, sku: str) -> StockRow | None:
        row = self._stock.get_or_none(self._stock.sku == sku)
        return None if row is None else _stock_row(row)

    def stock_levels(self) -> dict[str, StockRow]:
        return {row.sku: _stock_row(row) for row in self._stock.select()}

    def categories(self) -> dict[int, CategoryRow]:
        return {
            row.id: CategoryRow(row.id, row.name, row.version) for row in self._category.select()
        }

    def products(self) -> dict[str, ProductRow]:
        return {
            row.sku: ProductRow(
                row.sku,
                row.name,
                row.price,
                row.category_id,
                row.description,
                bool(row.active),
                row.version,
            )
            for row in self._product.select()
        }

    def dead_letters(self) -> list[DeadLetterRow]:
        """Oldest first."""
        rows = self._dead_letter.select().order_by(self._dead_letter.id)
        return [_dead_letter_row(row) for row in rows]

    def dead_letter_page(
        self, *, limit: int, before: int | None = None, key_bytes: int = 256
    ) -> DeadLetterPage:
        """The newest `limit` dead letters with an id below `before`. Values are not read:
        a record may be as large as Kafka allows, and a page holds many."""
        table = self._dead_letter
        query = (
            table.select(
                table.id,
                table.topic,
                table.partition,
                table.offset,
                fn.substr(table.key, 1, key_bytes).coerce(False).alias("key_head"),
                fn.length(table.key).coerce(False).alias("key_size"),
                fn.length(table.value).coerce(False).alias("value_size"),
                table.reason,
                table.detail,
                table.created_at,
            )
            .order_by(table.id.desc())
            .limit(limit + 1)
            .dicts()
        )
        if before is not None:
            query = query.where(table.id < before)
        rows = list(cast(Iterable[dict[str, Any]], query))
        items = [_dead_letter_summary(row) for row in rows[:limit]]
        total = int(table.select().count())
        return DeadLetterPage(items, total, _next(rows, limit, "id"))

    def dead_letter(self, letter_id: int) -> DeadLetterEntry | None:
        row = self._dead_letter.get_or_none(self._dead_letter.id == letter_id)
        return None if row is None else DeadLetterEntry(row.id, _dead_letter_row(row))


def _dead_letter_row(row: DeadLetter) -> DeadLetterRow:
    return DeadLetterRow(
        row.topic,
        row.partition,
        row.offset,
        None if row.key is None else bytes(row.key),
        None if row.value is None else bytes(row.value),
        row.reason,
        row.detail,
        row.created_at,
    )


def _dead_letter_summary(row: dict[str, Any]) -> DeadLetterSummary:
    head = row["key_head"]
    return DeadLetterSummary(
        id=row["id"],
        topic=row["topic"],
        partition=row["partition"],
        offset=row["offset"],
        key_head=None if head is None else bytes(head),
        key_size=row["key_size"],
        value_size=row["value_size"],
        reason=row["reason"],
        detail=row["detail"],
        created_at=row["created_at"],
    )


@dataclass(frozen=True)
class SaleQuery:
    """Which sales to list: by status as shown, placed at or after `since` and before
    `until` (aware datetimes), the newest `limit`."""

    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50


# A confirmed sale shows central's later status (cancelled); a sale central never confirmed
# keeps the agent's own (a voided one stays failed: its till was told so). The SQL below is
# made of these fixed fragments only; every value is a bound parameter.
# An unrecovered sale (sales.recovery) shows `cancelled` once an admin closed it at central.
_SHOWN_STATUS = (
    "CASE WHEN lo.status = 'confirmed' AND os.status IS NOT NULL THEN os.status "
    "WHEN lo.status = 'unrecovered' AND os.status = 'cancelled' THEN os.status "
    "ELSE lo.status END"
)
_SALES = (
    "SELECT lo.local_ref, " + _SHOWN_STATUS + " AS shown, lo.order_id, lo.lines, lo.created_at, "
    "lo.reason_code, lo.reason_message, lo.central_order, os.cancelled_at "
    "FROM local_orders lo LEFT JOIN order_status os ON os.order_id = lo.order_id"
)
MIN_PREFIX = 4  # the shortest prefix of a reference that finds a sale
MAX_MATCHES = 5


class SaleReads:
    """This store's sales as the till sees them: the agent's record of each sale, with
    central's later status (replica.order_status) joined in."""

    def __init__(self, replica: Replica) -> None:
        self._db = replica.db

    def page(self, query: SaleQuery) -> OrderList:
        """Newest first; `reason` is why one was refused or is not done."""
        conditions, params = [], []
        if query.status is not None:
            conditions.append(f"{_SHOWN_STATUS} = ?")
            params.append(query.status)
        if query.since is not None:
            conditions.append("lo.created_at >= ?")
            params.append(_stored_moment(query.since))
        if query.until is not None:
            conditions.append("lo.created_at < ?")
            params.append(_stored_moment(query.until))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"{_SALES}{where} ORDER BY lo.seq DESC LIMIT ?"
        return OrderList(items=self._items(sql, (*params, query.limit)))

    def find(self, ref: str) -> list[OrderItem]:
        """The sale whose local reference or central order id is `ref`; else the sales
        (at most MAX_MATCHES + 1) where one of them starts with `ref`."""
        exact = self._items(
            _SALES + " WHERE lo.local_ref = ? OR lo.order_id = ? ORDER BY lo.seq DESC LIMIT 2",
            (ref, ref),
        )
        if exact or len(ref) < MIN_PREFIX:
            return exact
        # substr, not LIKE: a reference's `_` or `%` must not act as a wildcard
        prefix = "substr(lo.local_ref, 1, ?) = ? OR substr(lo.order_id, 1, ?) = ?"
        sql = f"{_SALES} WHERE {prefix} ORDER BY lo.seq DESC LIMIT ?"
        return self._items(sql, (len(ref), ref, len(ref), ref, MAX_MATCHES + 1))

    def _items(self, sql: str, params: tuple[Any, ...]) -> list[OrderItem]:
        return [_order_item(row) for row in self._db.execute_sql(sql, params).fetchall()]


def _stored_moment(moment: datetime) -> str:
    """As local_orders stores its times (UTC, replica.db.iso), so text order is time order."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return iso(aware.astimezone(UTC))


def _order_item(row: tuple[Any, ...]) -> OrderItem:
    ref, shown, order_id, lines, created_at, code, message, central, cancelled_at = row
    return OrderItem(
        local_ref=ref,
        status=shown,
        order_id=order_id,
        lines=list(json.loads(lines)),
        created_at=created_at,
        reason=f"{code}: {message}" if code else None,
        total=_total(central),
        cancelled_at=cancelled_at if shown == CANCELLED else None,
    )


def _total(central_order: str | None) -> str | None:
    order = json.loads(central_order) if central_order else None
    total = order.get("total") if isinstance(order, dict) else None
    return total if isinstance(total, str) else None


def _product_item(row: dict[str, Any]) -> ProductItem:
    return ProductItem(
        sku=row["sku"],
        name=row["name"],
        price=row["price"],
        category_id=row["category_id"],
        description=row["description"],
        active=bool(row["active"]),
        version=row["version"],
        quantity=row["quantity"],
        stock_version=row["stock_version"],
    )


def _next(rows: list[dict[str, Any]], limit: int, key: str) -> Any:
    """The cursor of the page after `rows[:limit]` (`rows` asked for one more), or None."""
    return rows[limit - 1][key] if len(rows) > limit else None


def _stock_row(row: Stock) -> StockRow:
    return StockRow(row.sku, row.quantity, row.stock_version, row.updated_at)
