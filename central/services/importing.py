"""Batch import: idempotent upserts of categories, products and stock, one transaction a batch.

Every row is validated before anything is written; one bad row rejects the batch with the
line numbers of all bad rows. A row equal to what central holds changes nothing and emits
no event, so re-running an import is harmless. Existing rows are read in a few queries per
batch and new rows are written with multi-row INSERTs, so a batch costs a handful of round
trips rather than several per row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from peewee import chunked

from central.db import locked
from central.domain import catalog as rules
from central.domain.stock import StockLevel, valid_quantity
from central.errors import CentralError, ImportInvalid, InvalidKind
from central.models import Category, Movement, Product, Stock
from central.services.catalog import category_event, product_event
from central.services.inventory import movement_row
from central.services.principal import Principal
from central.uow import UnitOfWork

MAX_ROWS = 1000
INSERT_CHUNK = 200


@dataclass(frozen=True)
class Row:
    line: int
    kind: str
    fields: dict[str, Any]


def import_rows(
    uow: UnitOfWork, principal: Principal, raw_rows: list[dict[str, Any]]
) -> dict[str, int]:
    if len(raw_rows) > MAX_ROWS:
        raise ImportInvalid(f"at most {MAX_ROWS} rows per request", errors=[])
    rows, errors = _validate(raw_rows)
    if errors:
        raise ImportInvalid(errors=errors)
    with uow:
        return _Batch(uow, principal, rows).apply()


def _validate(raw_rows: list[dict[str, Any]]) -> tuple[list[Row], list[dict[str, Any]]]:
    rows: list[Row] = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_rows):
        given = raw.get("line")
        line = given if isinstance(given, int) else index + 1
        try:
            rows.append(Row(line, str(raw.get("kind", "")), _fields(raw)))
        except CentralError as exc:
            errors.append({"line": line, "code": exc.code, "message": exc.message})
    return rows, errors


def _fields(raw: dict[str, Any]) -> dict[str, Any]:
    kind = raw.get("kind")
    if kind == "category":
        return {"name": rules.valid_name(raw.get("name", ""))}
    if kind == "stock":
        return {
            "sku": rules.valid_sku(raw.get("sku", "")),
            "quantity": valid_quantity(raw.get("quantity")),
        }
    if kind == "product":
        return _product_fields(raw)
    raise InvalidKind()


def _product_fields(raw: dict[str, Any]) -> dict[str, Any]:
    fields = {
        "sku": rules.valid_sku(raw.get("sku", "")),
        "name": rules.valid_name(raw.get("name", "")),
        "price": rules.valid_price(raw.get("price")),
        "category": rules.valid_name(raw.get("category", ""), field="category"),
        "description": rules.valid_description(raw.get("description")),
        "active": raw.get("active", True) is not False,
    }
    if raw.get("quantity") is not None:
        fields["quantity"] = valid_quantity(raw["quantity"])
    return fields


class _Batch:
    """One import request inside its unit of work: prefetch, apply in row order, flush."""

    def __init__(self, uow: UnitOfWork, principal: Principal, rows: list[Row]) -> None:
        self.uow, self.principal, self.rows = uow, principal, rows
        self.now = uow.clock.now()
        self.counts: Counter[str] = Counter(created=0, updated=0, unchanged=0)
        names = {r.fields["category"] for r in rows if r.kind == "product"}
        names |= {r.fields["name"] for r in rows if r.kind == "category"}
        skus = [r.fields["sku"] for r in rows if r.kind in ("product", "stock")]
        self.categories = {c.name: c for c in Category.select().where(Category.name.in_(names))}
        self.products = {p.sku: p for p in Product.select().where(Product.sku.in_(skus))}
        self.stock = {s.sku: s for s in locked(Stock.select().where(Stock.sku.in_(skus)))}
        self.new_products: list[Product] = []
        self.new_stock: set[str] = set()
        self.dirty_stock: set[str] = set()
        self.movements: list[dict[str, Any]] = []

    def apply(self) -> dict[str, int]:
        for row in self.rows:
            try:
                self.counts[self._apply(row)] += 1
            except CentralError as exc:
                raise ImportInvalid(
                    errors=[{"line": row.line, "code": exc.code, "message": exc.message}]
                ) from None
        self._flush()
        return dict(self.counts)

    def _apply(self, row: Row) -> str:
        if row.kind == "category":
            return self._category(row.fields["name"])
        if row.kind == "stock":
            return self._set_stock(row.fields["sku"], row.fields["quantity"])
        outcome = self._product(row.fields)
        if "quantity" in row.fields:
            stock_outcome = self._set_stock(row.fields["sku"], row.fields["quantity"])
            if outcome == "unchanged":
                outcome = stock_outcome
        return outcome

    def _category(self, name: str) -> str:
        if name in self.categories:
            return "unchanged"
        category = Category.create(name=name, created_at=self.now)
        self.categories[name] = category
        self.uow.record(category_event(category, created=True))
        return "created"

    def _product(self, fields: dict[str, Any]) -> str:
        category = self.categories.get(fields["category"])
        if category is None:
            raise ImportInvalid(f"unknown category {fields['category']!r}")
        values = {k: v for k, v in fields.items() if k not in {"category", "quantity"}}
        values["category_id"] = category.id
        product = self.products.get(values["sku"])
        if product is None:
            return self._new_product(values)
        changed = {k: v for k, v in values.items() if getattr(product, k) != v}
        if not changed:
            return "unchanged"
        for name, value in changed.items():
            setattr(product, name, value)
        product.version += 1
        product.updated_at = self.now
        product.save()
        self.uow.record(product_event(product, created=False))
        return "updated"

    def _new_product(self, values: dict[str, Any]) -> str:
        product = Product(**values, version=1, created_at=self.now, updated_at=self.now)
        self.products[product.sku] = product
        self.new_products.append(product)
        self.stock[product.sku] = Stock(sku=product.sku, quantity=0, version=0, updated_at=self.now)
        self.new_stock.add(product.sku)
        self.uow.record(product_event(product, created=True))
        return "created"

    def _set_stock(self, sku: str, quantity: int) -> str:
        stock = self.stock.get(sku)
        if stock is None:
            raise ImportInvalid(f"unknown SKU {sku!r}")
        level, event = StockLevel(sku, stock.quantity, stock.version).set_to(quantity, "import")
        if event is None:
            return "unchanged"
        stock.quantity, stock.version, stock.updated_at = level.quantity, level.version, self.now
        if sku not in self.new_stock:
            self.dirty_stock.add(sku)
        self.movements.append(movement_row(event, self.principal, "", self.now))
        self.uow.record(event)
        return "updated"

    def _flush(self) -> None:
        product_rows = [p.__data__ for p in self.new_products]
        stock_rows = [self.stock[sku].__data__ for sku in sorted(self.new_stock)]
        for model, rows in (
            (Product, product_rows),
            (Stock, stock_rows),
            (Movement, self.movements),
        ):
            for chunk in chunked(rows, INSERT_CHUNK):
                model.insert_many(chunk).execute()
        for sku in sorted(self.dirty_stock):
            self.stock[sku].save()
