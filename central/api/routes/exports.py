"""Reads that exports page through: the stock ledger across SKUs, and the catalog with its
categories' names (`invctl export`). Each answers a bounded page and a cursor."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from central.api.deps import API_PREFIX, CanReadCatalog, CanReadOrders, UowDep
from central.api.schemas import Cursor, Money, StoreIdStr, Timestamp, UtcMoment, errors
from central.services import exports

router = APIRouter(prefix=API_PREFIX, tags=["exports"], responses=errors(401, 403, 422, 503))


class LedgerMovement(BaseModel):
    id: int
    at: Timestamp
    sku: str
    reason: str = Field(examples=["order", "cancel", "adjust", "set", "import"])
    delta: int
    quantity: int = Field(description="after the change")
    stock_version: int
    order_id: str | None
    store_id: str | None = Field(description="the store of the order it belongs to; else null")
    actor: str = Field(examples=["user:alice", "store:store-042"])
    note: str


class LedgerPage(BaseModel):
    items: list[LedgerMovement]
    next_after: int | None = Field(
        description="pass as `after` for the next page; null: there is no more"
    )


class CatalogRow(BaseModel):
    sku: str
    name: str
    price: Money
    category_id: int
    category: str = Field(description="the category's name, as an import row names it")
    description: str
    active: bool
    quantity: int = Field(description="its stock now (0 without a stock row)")
    updated_at: Timestamp


class CatalogPage(BaseModel):
    items: list[CatalogRow]
    next_after: str | None = Field(
        description="pass as `after` for the next page; null: there is no more"
    )


# A store key and staff are let past; the use case narrows them to their own store (403
# for another store's), as GET /orders does.
CanReadLedgerExport = CanReadOrders


@router.get("/movements", response_model=LedgerPage)
def list_movements(
    uow: UowDep,
    principal: CanReadLedgerExport,
    store: Annotated[StoreIdStr | None, Query(max_length=64)] = None,
    since: Annotated[UtcMoment | None, Query()] = None,
    after: Annotated[Cursor, Query(description="the last id of the page before")] = 0,
    limit: Annotated[int, Query(ge=1, le=exports.MAX_PAGE)] = exports.MAX_PAGE,
) -> dict[str, Any]:
    """The stock ledger of every SKU, oldest first: follow `next_after` until it is null.
    `store`: only its orders' movements (sales and cancellations); `since`: at or after."""
    wanted = exports.MovementFilter(store, since, after, limit)
    return exports.list_movements(uow, principal, wanted)


@router.get("/exports/products", response_model=CatalogPage)
def list_catalog(
    uow: UowDep,
    _: CanReadCatalog,
    limit: Annotated[int, Query(ge=1, le=exports.MAX_PAGE)] = exports.MAX_PAGE,
    after: Annotated[str, Query(max_length=64, description="the last SKU of the page before")] = "",
) -> dict[str, Any]:
    """Products by SKU with their category's name and stock, a page at a time: follow
    `next_after` until it is null."""
    return exports.list_catalog(uow, limit, after)
