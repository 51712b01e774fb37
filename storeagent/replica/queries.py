"""Read side of the replica: the replicated rows as values, and as the store API shapes them
(docs/wire.md)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, cast

from peewee import JOIN, fn
from typing_extensions import TypedDict

from storeagent.replica.db import Replica
from storeagent.replica.local_orders import LocalOrders, LocalSale
from storeagent.replica.models import Stock, bind_models


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

    def product_list(self) -> ProductList:
        prod, stock = self._product, self._stock
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
        rows = cast(Iterable[dict[str, Any]], query)
        return ProductList(items=[_product_item(row) for row in rows])

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
        return [
            DeadLetterRow(
                row.topic,
                row.partition,
                row.offset,
                None if row.key is None else bytes(row.key),
                None if row.value is None else bytes(row.value),
                row.reason,
                row.detail,
                row.created_at,
            )
            for row in rows
        ]


def order_list(orders: LocalOrders, status: str | None, limit: int) -> OrderList:
    """This store's sales, newest first; `reason` is why one was refused or is not done."""
    return OrderList(items=[_order_item(sale) for sale in orders.newest_first(status, limit)])


def _order_item(sale: LocalSale) -> OrderItem:
    reason = f"{sale.reason_code}: {sale.reason_message}" if sale.reason_code else None
    return OrderItem(
        local_ref=sale.local_ref,
        status=sale.status,
        order_id=sale.order_id,
        lines=[line.to_wire() for line in sale.lines],
        created_at=sale.created_at,
        reason=reason,
    )


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


def _stock_row(row: Stock) -> StockRow:
    return StockRow(row.sku, row.quantity, row.stock_version, row.updated_at)
