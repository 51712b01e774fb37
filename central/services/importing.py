"""Batch import: idempotent upserts of categories, products and stock, one transaction a batch.

Every row is validated before anything is written; one bad row rejects the batch with the
line numbers of all bad rows (the first MAX_LISTED_ERRORS listed, all of them counted). A row
equal to what central holds changes nothing and emits no event, so re-running an import is
harmless; a product row's empty description or active keeps what central holds. Existing
rows are read in a few queries per page of rows and new rows are written with multi-row
INSERTs, so a page costs a handful of round trips rather than several per row. A staged
import (central.services.staged_imports) applies many pages in one transaction.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from peewee import chunked

from central.domain import catalog as rules
from central.domain.stock import StockLevel, valid_quantity
from central.models import Category, Product, Stock
from central.rows import RowInsert, Statement
from central.services.catalog import category_event, product_event
from central.services.inventory import LEDGER_ROWS, movement_row
from central.services.orders import locked_levels
from central.services.principal import Principal
from central.uow import UnitOfWork
from invwire.errors.central import (
    CategoryNotFound,
    CentralError,
    ImportInvalid,
    InvalidActive,
    InvalidKind,
    ProductNotFound,
    UnknownField,
)

MAX_ROWS = 1000
MAX_LISTED_ERRORS = 100
INSERT_CHUNK = 200
SET_STOCK = Statement(
    'UPDATE "stock" SET "quantity" = ?, "version" = ?, "updated_at" = ? WHERE "sku" = ?'
)
NEW_STOCK = RowInsert(Stock, ("sku", "quantity", "version", "held", "updated_at"))
# What a row may hold: `line` (the file's line number, echoed in errors) and invctl's columns.
ROW_FIELDS = frozenset(
    {"line", "kind", "name", "sku", "price", "category", "description", "active", "quantity"}
)
MAX_LINE = 2**31 - 1  # beyond any file's line count: a row saying more gets its position


@dataclass(frozen=True)
class Row:
    line: int
    kind: str
    fields: dict[str, Any]


@dataclass
class RowErrors:
    """Row errors, counted exactly; the first MAX_LISTED_ERRORS are kept to be listed."""

    listed: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    lines: set[int] = field(default_factory=set)

    def add(self, line: int, error: CentralError) -> None:
        self.count += 1
        self.lines.add(line)
        if len(self.listed) < MAX_LISTED_ERRORS:
            self.listed.append({"line": line, "code": error.code, "message": error.message})

    def raise_if_any(self) -> None:
        """422 import.invalid: `errors` (the first ones), `error_count` and `bad_rows`."""
        if self.count:
            raise ImportInvalid(
                f"{len(self.lines)} import rows are invalid; nothing was applied",
                errors=self.listed,
                error_count=self.count,
                bad_rows=len(self.lines),
            )


def import_rows(
    uow: UnitOfWork, principal: Principal, raw_rows: list[dict[str, Any]]
) -> dict[str, int]:
    rows = valid_rows(raw_rows)
    with uow:
        applier = Applier(uow, principal)
        applier.apply(rows)
        applier.errors.raise_if_any()
    return dict(applier.counts)


def valid_rows(raw_rows: list[dict[str, Any]]) -> list[Row]:
    """The rows, checked; 422 import.invalid listing every bad one."""
    if len(raw_rows) > MAX_ROWS:
        raise ImportInvalid(f"at most {MAX_ROWS} rows per request", errors=[])
    rows, errors = _validate(raw_rows)
    errors.raise_if_any()
    return rows


def staged_payload(row: Row) -> str:
    """A checked row as stored for a staged import (prices as text)."""
    return json.dumps({"line": row.line, "kind": row.kind, **row.fields}, default=str)


def staged_row(payload: str) -> Row:
    """The row `staged_payload` stored, checked again (it passed once, so it passes)."""
    raw = json.loads(payload)
    return Row(int(raw["line"]), str(raw["kind"]), _fields(raw))


def _validate(raw_rows: list[dict[str, Any]]) -> tuple[list[Row], RowErrors]:
    rows: list[Row] = []
    errors = RowErrors()
    for index, raw in enumerate(raw_rows):
        line = _line(raw.get("line"), index + 1)
        try:
            _known_fields(raw)
            rows.append(Row(line, str(raw.get("kind", "")), _fields(raw)))
        except CentralError as exc:
            errors.add(line, exc)
    return rows, errors


def _line(given: object, position: int) -> int:
    """The row's own line number when it gives a plausible one, else its position."""
    if isinstance(given, int) and not isinstance(given, bool) and 1 <= given <= MAX_LINE:
        return given
    return position


def _known_fields(raw: dict[str, Any]) -> None:
    unknown = sorted(set(raw) - ROW_FIELDS, key=str)
    if unknown:
        named = ", ".join(str(name)[:40] for name in unknown[:5])
        raise UnknownField(f"unknown field(s) {named}; known: {', '.join(sorted(ROW_FIELDS))}")


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
    """A product row's fields; a missing (or null) description, active or quantity is left
    out, so an update keeps what central holds (a new product gets "", true and 0)."""
    fields = {
        "sku": rules.valid_sku(raw.get("sku", "")),
        "name": rules.valid_name(raw.get("name", "")),
        "price": rules.valid_price(raw.get("price")),
        "category": rules.valid_name(raw.get("category", ""), field="category"),
    }
    if raw.get("description") is not None:
        fields["description"] = rules.valid_description(raw["description"])
    if raw.get("active") is not None:
        if not isinstance(raw["active"], bool):
            raise InvalidActive()
        fields["active"] = raw["active"]
    if raw.get("quantity") is not None:
        fields["quantity"] = valid_quantity(raw["quantity"])
    return fields


class Applier:
    """Applies pages of checked rows inside the caller's unit of work, in row order: counts
    what each row did and records the error of each row it cannot apply (an unknown category
    or SKU). Rows after an error are still tried, so every bad row is found; the caller then
    raises, and the transaction rolls everything back."""

    def __init__(self, uow: UnitOfWork, principal: Principal) -> None:
        self.uow, self.principal = uow, principal
        self.now = uow.clock.now()
        self.counts: Counter[str] = Counter(created=0, updated=0, unchanged=0)
        self.errors = RowErrors()

    def apply(self, rows: Iterable[Row]) -> None:
        """One page (up to MAX_ROWS rows): prefetch what it names, apply it, flush it."""
        page = _Page(self, list(rows))
        for row in page.rows:
            try:
                self.counts[page.apply(row)] += 1
            except CentralError as exc:
                self.errors.add(row.line, exc)
        page.flush()


class _Page:
    """What one page of rows needs: the rows it names, read in a few queries, and what it
    writes in bulk at its end."""

    def __init__(self, applier: Applier, rows: list[Row]) -> None:
        self.uow, self.principal, self.rows = applier.uow, applier.principal, rows
        self.now = applier.now
        names = {r.fields["category"] for r in rows if r.kind == "product"}
        names |= {r.fields["name"] for r in rows if r.kind == "category"}
        skus = [r.fields["sku"] for r in rows if r.kind in ("product", "stock")]
        self.categories = (
            {c.name: c for c in Category.select().where(Category.name.in_(names))} if names else {}
        )
        product_skus = [r.fields["sku"] for r in rows if r.kind == "product"]
        self.products = (
            {p.sku: p for p in Product.select().where(Product.sku.in_(product_skus))}
            if product_skus
            else {}
        )
        self.stock = locked_levels(skus) if skus else {}
        self.new_products: list[Product] = []
        self.new_stock: set[str] = set()
        self.dirty_stock: set[str] = set()
        self.movements: list[dict[str, Any]] = []

    def apply(self, row: Row) -> str:
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
            raise CategoryNotFound(f"unknown category {fields['category']!r}")
        values = {k: v for k, v in fields.items() if k not in {"category", "quantity"}}
        values["category_id"] = category.id
        product = self.products.get(values["sku"])
        if product is None:
            return self._new_product({"description": "", "active": True, **values})
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
        self.stock[product.sku] = StockLevel(product.sku, quantity=0, version=0)
        self.new_stock.add(product.sku)
        self.uow.record(product_event(product, created=True))
        return "created"

    def _set_stock(self, sku: str, quantity: int) -> str:
        stock = self.stock.get(sku)
        if stock is None:
            raise ProductNotFound(f"unknown SKU {sku!r}; a product row creates it")
        level, event = stock.set_to(quantity, "import")
        if event is None:
            return "unchanged"
        self.stock[sku] = level
        if sku not in self.new_stock:
            self.dirty_stock.add(sku)
        self.movements.append(movement_row(event, self.principal, "", self.now))
        self.uow.record(event)
        return "updated"

    def flush(self) -> None:
        """New products, then their stock rows, the ledger rows, and the changed stock rows:
        multi-row INSERTs and one batched UPDATE, with their SQL built once per shape."""
        for products in chunked(self.new_products, INSERT_CHUNK):
            Product.insert_many([p.__data__ for p in products]).execute()
        stamp = Stock.updated_at.db_value(self.now)
        new_rows = [
            {
                "sku": level.sku,
                "quantity": level.quantity,
                "version": level.version,
                "held": level.held,
                "updated_at": self.now,
            }
            for level in (self.stock[sku] for sku in sorted(self.new_stock))
        ]
        for stock_rows in chunked(new_rows, INSERT_CHUNK):
            NEW_STOCK.insert(stock_rows)
        for ledger_rows in chunked(self.movements, INSERT_CHUNK):
            LEDGER_ROWS.insert(ledger_rows)
        changed = [
            (level.quantity, level.version, stamp, level.sku)
            for level in (self.stock[sku] for sku in sorted(self.dirty_stock))
        ]
        SET_STOCK.run_many(Stock._meta.database, changed)
