from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, StrictBool, StrictInt

from central.api.deps import API_PREFIX, Admin, Reader, UowDep
from central.services import catalog

router = APIRouter(prefix=API_PREFIX, tags=["catalog"])

Sku = Annotated[str, Field(max_length=200)]


class CategoryIn(BaseModel):
    name: str = Field(max_length=10_000)


class ProductIn(BaseModel):
    sku: Sku
    name: str = Field(max_length=10_000)
    price: Decimal | str
    category_id: StrictInt
    description: str | None = Field(default=None, max_length=100_000)
    active: StrictBool = True


class ProductPatch(BaseModel):
    name: str | None = Field(default=None, max_length=10_000)
    price: Decimal | str | None = None
    category_id: StrictInt | None = None
    description: str | None = Field(default=None, max_length=100_000)
    active: StrictBool | None = None


@router.post("/categories", status_code=201)
def create_category(body: CategoryIn, uow: UowDep, _: Admin) -> dict[str, Any]:
    return catalog.create_category(uow, body.name)


@router.get("/categories")
def list_categories(uow: UowDep, _: Reader) -> dict[str, Any]:
    return {"items": catalog.list_categories(uow)}


@router.post("/products", status_code=201)
def create_product(body: ProductIn, uow: UowDep, _: Admin) -> dict[str, Any]:
    return catalog.create_product(uow, catalog.NewProduct(**body.model_dump()))


@router.get("/products")
def list_products(
    uow: UowDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    after: Annotated[str, Query(max_length=64)] = "",
) -> dict[str, Any]:
    return {"items": catalog.list_products(uow, limit, after)}


@router.get("/products/{sku}")
def get_product(sku: str, uow: UowDep, _: Reader) -> dict[str, Any]:
    return catalog.get_product(uow, sku)


@router.patch("/products/{sku}")
def update_product(sku: str, body: ProductPatch, uow: UowDep, _: Admin) -> dict[str, Any]:
    return catalog.update_product(uow, sku, body.model_dump(exclude_unset=True))
