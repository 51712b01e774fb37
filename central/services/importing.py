"""Batch import: idempotent upserts of categories, products and stock, one transaction a batch.

Every row is validated before anything is written; one bad row rejects the batch with the
line numbers of all bad rows. A row equal to what central holds changes nothing and emits
no event, so re-running an import is harmless.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from central.domain import catalog as rules
from central.domain.stock import valid_quantity
from central.errors import CentralError, ImportInvalid
from central.models import Category, Product, Stock, utcnow
from central.services import inventory
from central.services.catalog import category_event, product_event
from central.services.principal import Principal
from central.uow import UnitOfWork

MAX_ROWS = 1000
KINDS = ("category", "product", "stock")


@dataclass(frozen=True)
class Row:
    line: int
    kind: str
    fields: dict[str, Any]


def import_rows(uow: UnitOfWork, principal: Principal, raw_rows: list[dict[str, Any]]) -> dict:
    if len(raw_rows) > MAX_ROWS:
        raise ImportInvalid(f"at most {MAX_ROWS} rows per request", errors=[])
    rows, errors = _validate(raw_rows)
    if errors:
        raise ImportInvalid(errors=errors)
    counts: Counter[str] = Counter(created=0, updated=0, unchanged=0)
    with uow:
        for row in rows:
            try:
                counts[_apply(uow, principal, row)] += 1
            except CentralError as exc:
                raise ImportInvalid(
                    errors=[{"line": row.line, "code": exc.code, "message": exc.message}]
                ) from None
    return dict(counts)


def _validate(raw_rows: list[dict[str, Any]]) -> tuple[list[Row], list[dict[str, Any]]]:
    rows: list[Row] = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_rows):
        given = raw.get("line")
        line = given if isinstance(given, int) else index + 1
        try:
            rows.append(Row(line, raw.get("kind", ""), _fields(raw)))
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
    raise ImportInvalid(f"kind must be one of {', '.join(KINDS)}")


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


def _apply(uow: UnitOfWork, principal: Principal, row: Row) -> str:
    if row.kind == "category":
        return _upsert_category(uow, row.fields["name"])
    if row.kind == "stock":
        return _set_stock(uow, principal, row.fields["sku"], row.fields["quantity"])
    outcome = _upsert_product(uow, row.fields)
    if "quantity" in row.fields:
        stock_outcome = _set_stock(uow, principal, row.fields["sku"], row.fields["quantity"])
        if outcome == "unchanged":
            outcome = stock_outcome
    return outcome


def _upsert_category(uow: UnitOfWork, name: str) -> str:
    if Category.get_or_none(Category.name == name) is not None:
        return "unchanged"
    category = Category.create(name=name, created_at=uow.clock.now())
    uow.record(category_event(category, created=True))
    return "created"


def _upsert_product(uow: UnitOfWork, fields: dict[str, Any]) -> str:
    category = Category.get_or_none(Category.name == fields["category"])
    if category is None:
        raise ImportInvalid(f"unknown category {fields['category']!r}")
    values = {k: v for k, v in fields.items() if k not in {"category", "quantity"}}
    values["category_id"] = category.id
    product = Product.get_or_none(Product.sku == values["sku"])
    if product is None:
        product = Product.create(**values)
        Stock.create(sku=product.sku, quantity=0, version=0)
        uow.record(product_event(product, created=True))
        return "created"
    changed = {k: v for k, v in values.items() if getattr(product, k) != v}
    if not changed:
        return "unchanged"
    for name, value in changed.items():
        setattr(product, name, value)
    product.version += 1
    product.updated_at = utcnow()
    product.save()
    uow.record(product_event(product, created=False))
    return "updated"


def _set_stock(uow: UnitOfWork, principal: Principal, sku: str, quantity: int) -> str:
    _, changed = inventory.set_in_tx(uow, principal, sku, quantity, "import")
    return "updated" if changed else "unchanged"
