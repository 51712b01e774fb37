"""Catalog use cases: categories and products."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import peewee

from central.db import locked
from central.domain import catalog as rules
from central.errors import (
    CategoryExists,
    CategoryNotFound,
    ProductExists,
    ProductNotFound,
)
from central.models import Category, Product, Stock, as_utc, utcnow
from central.uow import UnitOfWork
from invwire.events import CategoryChanged, ProductChanged


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


def list_categories(uow: UnitOfWork) -> list[dict[str, Any]]:
    with uow.db.connection_context():
        return [category_view(c) for c in Category.select().order_by(Category.id)]


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


def list_products(uow: UnitOfWork, limit: int = 1000, after: str = "") -> list[dict[str, Any]]:
    with uow.db.connection_context():
        query = Product.select().where(Product.sku > after).order_by(Product.sku).limit(limit)
        return [product_view(p) for p in query]


def _category(category_id: object) -> Category:
    if isinstance(category_id, bool) or not isinstance(category_id, int):
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
