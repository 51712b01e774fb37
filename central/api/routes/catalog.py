from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field, StrictBool, StrictInt

from central.api.deps import API_PREFIX, CanManageCatalog, CanReadCatalog, UowDep
from central.api.schemas import (
    Category,
    CategoryList,
    Product,
    ProductList,
    SkuStr,
    errors,
)
from central.services import catalog

router = APIRouter(prefix=API_PREFIX, tags=["catalog"], responses=errors(401, 403, 503))

SkuPath = Annotated[SkuStr, Path()]


class CategoryIn(BaseModel):
    name: str = Field(max_length=10_000)


class ProductIn(BaseModel):
    sku: Annotated[SkuStr, Field(max_length=200)]
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


@router.post(
    "/categories", status_code=201, response_model=Category, responses=errors(400, 409, 422)
)
def create_category(body: CategoryIn, uow: UowDep, _: CanManageCatalog) -> dict[str, Any]:
    return catalog.create_category(uow, body.name)


@router.get("/categories", response_model=CategoryList)
def list_categories(uow: UowDep, _: CanReadCatalog) -> dict[str, Any]:
    return {"items": catalog.list_categories(uow)}


@router.post(
    "/products", status_code=201, response_model=Product, responses=errors(400, 404, 409, 422)
)
def create_product(body: ProductIn, uow: UowDep, _: CanManageCatalog) -> dict[str, Any]:
    return catalog.create_product(uow, catalog.NewProduct(**body.model_dump()))


@router.get("/products", response_model=ProductList, responses=errors(422))
def list_products(
    uow: UowDep,
    _: CanReadCatalog,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    after: Annotated[str, Query(max_length=64)] = "",
) -> dict[str, Any]:
    return {"items": catalog.list_products(uow, limit, after)}


@router.get("/products/{sku}", response_model=Product, responses=errors(404, 422))
def get_product(sku: SkuPath, uow: UowDep, _: CanReadCatalog) -> dict[str, Any]:
    return catalog.get_product(uow, sku)


@router.patch("/products/{sku}", response_model=Product, responses=errors(400, 404, 422))
def update_product(
    sku: SkuPath, body: ProductPatch, uow: UowDep, _: CanManageCatalog
) -> dict[str, Any]:
    return catalog.update_product(uow, sku, body.model_dump(exclude_unset=True))
