"""Catalog use cases: categories and products."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import peewee
from peewee import JOIN, fn

from central.db import locked
from central.domain import catalog as rules
from central.models import Category, Product, Stock, as_utc, utcnow
from central.uow import UnitOfWork
from invwire.catalog import ProductFilter
from invwire.errors.central import (
    CategoryExists,
    CategoryNotFound,
    ProductExists,
    ProductNotFound,
)
from invwire.events import MAX_INTEGER, CategoryChanged, ProductChanged


@dataclass(frozen=True)
class NewProduct:
    sku: str
    name: str
    price: object
    category_id: int
    description: str | None = None
    active: bool = True


def category_view(category: Category) -> dict[str, Any]:
    return {"id": category.id, "name": category.name, "version": category.version}


def product_view(product: Product) -> dict[str, Any]:
    return {
        "sku": product.sku,
        "name": product.name,
        "price": f"{Decimal(product.price):.2f}",
        "category_id": product.category_id,
        "description": product.description,
        "active": product.active,
        "version": product.version,
        "updated_at": as_utc(product.updated_at),
    }


def category_event(category: Category, created: bool) -> CategoryChanged:
    return CategoryChanged(category.id, category.name, category.version, created)


def product_event(product: Product, created: bool) -> ProductChanged:
    return ProductChanged(
        sku=product.sku,
        name=product.name,
        price=f"{Decimal(product.price):.2f}",
        category_id=product.category_id,
        description=product.description,
        active=product.active,
        version=product.version,
        created=created,
    )


def create_category(uow: UnitOfWork, name: str) -> dict[str, Any]:
    name = rules.valid_name(name)
    with uow:
        if Category.get_or_none(Category.name == name) is not None:
            raise CategoryExists(name=name)
        category = _insert_or_conflict(
            lambda: Category.create(name=name), CategoryExists(name=name)
        )
        uow.record(category_event(category, created=True))
    return category_view(category)


def list_categories(uow: UnitOfWork, limit: int = 1000, after: int = 0) -> dict[str, Any]:
    """A page of categories by id after `after`; `next_after` continues it (null: no more)."""
    with uow.db.connection_context():
        query = Category.select().where(Category.id > after).order_by(Category.id)
        page = list(query.limit(limit + 1))
    items = [category_view(c) for c in page[:limit]]
    return {"items": items, "next_after": items[-1]["id"] if len(page) > limit else None}


def rename_category(uow: UnitOfWork, category_id: int, name: str) -> dict[str, Any]:
    """A new name for a category; its products keep it. Replicas learn it from the event."""
    name = rules.valid_name(name)
    with uow:
        category = locked(Category.select().where(Category.id == category_id)).get_or_none()
        if category is None:
            raise CategoryNotFound(category_id=category_id)
        if category.name != name:
            other = Category.get_or_none(Category.name == name)
            if other is not None and other.id != category.id:
                raise CategoryExists(name=name)
            category.name = name
            category.version += 1
            _insert_or_conflict(category.save, CategoryExists(name=name))
            uow.record(category_event(category, created=False))
    return category_view(category)


def create_product(uow: UnitOfWork, new: NewProduct) -> dict[str, Any]:
    fields = {
        "sku": rules.valid_sku(new.sku),
        "name": rules.valid_name(new.name),
        "price": rules.valid_price(new.price),
        "description": rules.valid_description(new.description),
        "active": bool(new.active),
    }
    with uow:
        category = _category(new.category_id)
        if Product.get_or_none(Product.sku == fields["sku"]) is not None:
            raise ProductExists(sku=fields["sku"])
        product = _insert_or_conflict(
            lambda: Product.create(category=category, **fields), ProductExists(sku=fields["sku"])
        )
        Stock.create(sku=product.sku, quantity=0, version=0)
        uow.record(product_event(product, created=True))
    return product_view(product)


def update_product(uow: UnitOfWork, sku: str, changes: dict[str, Any]) -> dict[str, Any]:
    with uow:
        product = _locked_product(sku)
        if _apply_changes(product, changes):
            product.version += 1
            product.updated_at = utcnow()
            product.save()
            uow.record(product_event(product, created=False))
    return product_view(product)


def _apply_changes(product: Product, changes: dict[str, Any]) -> bool:
    validated: dict[str, Any] = {}
    if changes.get("name") is not None:
        validated["name"] = rules.valid_name(changes["name"])
    if changes.get("price") is not None:
        validated["price"] = rules.valid_price(changes["price"])
    if changes.get("description") is not None:
        validated["description"] = rules.valid_description(changes["description"])
    if changes.get("active") is not None:
        validated["active"] = bool(changes["active"])
    if changes.get("category_id") is not None:
        validated["category_id"] = _category(changes["category_id"]).id
    changed = False
    for name, value in validated.items():
        if getattr(product, name) != value:
            setattr(product, name, value)
            changed = True
    return changed


def get_product(uow: UnitOfWork, sku: str) -> dict[str, Any]:
    with uow.db.connection_context():
        product = Product.get_or_none(Product.sku == sku)
        if product is None:
            raise ProductNotFound(sku=sku)
        return product_view(product)


def list_products(
    uow: UnitOfWork, limit: int = 1000, after: str = "", where: ProductFilter | None = None
) -> dict[str, Any]:
    """A page of products by SKU after `after`, each with its stock; `next_after` continues
    it (null: no more)."""
    quantity = fn.COALESCE(Stock.quantity, 0)
    conditions = (where or ProductFilter()).conditions(
        category=Product.category, sku=Product.sku, name=Product.name, quantity=quantity
    )
    query = (
        Product.select(
            Product, quantity.alias("quantity"), fn.COALESCE(Stock.version, 0).alias("stock_no")
        )
        .join(Stock, JOIN.LEFT_OUTER, on=(Stock.sku == Product.sku))
        .where(Product.sku > after, *conditions)
        .order_by(Product.sku)
        .limit(limit + 1)
        .objects()
    )
    with uow.db.connection_context():
        page = list(query)
    items = [_listed_product(product) for product in page[:limit]]
    return {"items": items, "next_after": items[-1]["sku"] if len(page) > limit else None}


def _listed_product(product: Product) -> dict[str, Any]:
    joined: Any = product  # the query's extra columns ride on the model instance
    return {
        **product_view(product),
        "quantity": int(joined.quantity),
        "stock_version": int(joined.stock_no),
    }


def _category(category_id: object) -> Category:
    # Beyond 64 bits there is no such row, and the database driver would fail on the number.
    if (
        not isinstance(category_id, int)
        or isinstance(category_id, bool)
        or not 1 <= category_id <= MAX_INTEGER
    ):
        raise CategoryNotFound(category_id=str(category_id)[:40])
    category = Category.get_or_none(Category.id == category_id)
    if category is None:
        raise CategoryNotFound(category_id=category_id)
    return category


def _locked_product(sku: str) -> Product:
    product = locked(Product.select().where(Product.sku == sku)).get_or_none()
    if product is None:
        raise ProductNotFound(sku=sku)
    return product


def _insert_or_conflict(insert: Any, conflict: Exception) -> Any:
    try:
        return insert()
    except peewee.IntegrityError:
        raise conflict from None
