from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field, StrictBool

from central.api.deps import API_PREFIX, CanManageCatalog, CanReadCatalog, UowDep
from central.api.schemas import (
    Category,
    CategoryList,
    Cursor,
    PriceIn,
    Product,
    ProductList,
    RequestBody,
    RowId,
    SkuStr,
    errors,
)
from central.domain.stock import MAX_QUANTITY
from central.services import catalog
from invwire.events import MAX_INTEGER

router = APIRouter(prefix=API_PREFIX, tags=["catalog"], responses=errors(401, 403, 503))

SkuPath = Annotated[SkuStr, Path(max_length=64)]
CategoryIdPath = Annotated[int, Path(ge=1, le=MAX_INTEGER)]
MAX_PAGE = 1000
MAX_SEARCH = 200


class CategoryIn(RequestBody):
    name: str = Field(max_length=10_000)


class ProductIn(RequestBody):
    sku: Annotated[SkuStr, Field(max_length=200)]
    name: str = Field(max_length=10_000)
    price: PriceIn
    category_id: RowId
    description: str | None = Field(default=None, max_length=100_000)
    active: StrictBool = True


class ProductPatch(RequestBody):
    name: str | None = Field(default=None, max_length=10_000)
    price: PriceIn | None = None
    category_id: RowId | None = None
    description: str | None = Field(default=None, max_length=100_000)
    active: StrictBool | None = None


@router.post(
    "/categories", status_code=201, response_model=Category, responses=errors(400, 409, 422)
)
def create_category(body: CategoryIn, uow: UowDep, _: CanManageCatalog) -> dict[str, Any]:
    return catalog.create_category(uow, body.name)


@router.get("/categories", response_model=CategoryList, responses=errors(422))
def list_categories(
    uow: UowDep,
    _: CanReadCatalog,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
    after: Annotated[Cursor, Query(description="the last id of the page before")] = 0,
) -> dict[str, Any]:
    """Categories by id, a page at a time: follow `next_after` until it is null."""
    return catalog.list_categories(uow, limit, after)


@router.patch(
    "/categories/{category_id}", response_model=Category, responses=errors(400, 404, 409, 422)
)
def rename_category(
    category_id: CategoryIdPath, body: CategoryIn, uow: UowDep, _: CanManageCatalog
) -> dict[str, Any]:
    """Rename a category (`{"name"}`); a name another category holds is 409."""
    return catalog.rename_category(uow, category_id, body.name)


@router.post(
    "/products", status_code=201, response_model=Product, responses=errors(400, 404, 409, 422)
)
def create_product(body: ProductIn, uow: UowDep, _: CanManageCatalog) -> dict[str, Any]:
    return catalog.create_product(uow, catalog.NewProduct(**body.model_dump()))


@router.get("/products", response_model=ProductList, responses=errors(422))
def list_products(
    uow: UowDep,
    _: CanReadCatalog,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
    after: Annotated[str, Query(max_length=64, description="the last SKU of the page before")] = "",
    category: Annotated[int | None, Query(ge=1, le=MAX_INTEGER, description="its id")] = None,
    search: Annotated[
        str, Query(max_length=MAX_SEARCH, description="in the SKU or name, any case")
    ] = "",
    low_stock: Annotated[
        int | None, Query(ge=0, le=MAX_QUANTITY, description="only stock at most this")
    ] = None,
) -> dict[str, Any]:
    """Products by SKU, each with its stock, a page at a time: follow `next_after` until it
    is null. The filters combine."""
    where = catalog.ProductFilter(category, search, low_stock)
    return catalog.list_products(uow, limit, after, where)


@router.get("/products/{sku}", response_model=Product, responses=errors(404, 422))
def get_product(sku: SkuPath, uow: UowDep, _: CanReadCatalog) -> dict[str, Any]:
    return catalog.get_product(uow, sku)


@router.patch("/products/{sku}", response_model=Product, responses=errors(400, 404, 422))
def update_product(
    sku: SkuPath, body: ProductPatch, uow: UowDep, _: CanManageCatalog
) -> dict[str, Any]:
    return catalog.update_product(uow, sku, body.model_dump(exclude_unset=True))
