from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field, StrictInt

from central.api.deps import API_PREFIX, CanChangeStock, CanReadStock, CanReadStockLedger, UowDep
from central.api.schemas import (
    Cursor,
    MovementList,
    RequestBody,
    SkuStr,
    StockLevel,
    errors,
    range_doc,
)
from central.domain.stock import MAX_QUANTITY
from central.services import inventory

router = APIRouter(
    prefix=API_PREFIX + "/stock", tags=["inventory"], responses=errors(401, 403, 404, 422, 503)
)

SkuPath = Annotated[SkuStr, Path(max_length=64)]


# The bounds are the domain's (central.domain.stock), checked there: a refusal keeps its
# code, 422 quantity.invalid.
class StockSet(RequestBody):
    quantity: StrictInt = Field(json_schema_extra=range_doc(0, MAX_QUANTITY))
    note: str = Field(default="", max_length=10_000)


class Adjustment(RequestBody):
    delta: StrictInt = Field(json_schema_extra=range_doc(-MAX_QUANTITY, MAX_QUANTITY))
    reason: str = Field(
        default="adjust", max_length=16, json_schema_extra={"enum": list(inventory.ADJUST_REASONS)}
    )
    note: str = Field(default="", max_length=10_000)


@router.get("/{sku}", response_model=StockLevel)
def get_stock(sku: SkuPath, uow: UowDep, _: CanReadStock) -> dict[str, Any]:
    return inventory.get_stock(uow, sku)


@router.put("/{sku}", response_model=StockLevel, responses=errors(400))
def set_stock(
    sku: SkuPath, body: StockSet, uow: UowDep, principal: CanChangeStock
) -> dict[str, Any]:
    return inventory.set_stock(uow, principal, sku, body.quantity, body.note)


@router.post("/{sku}/adjustments", response_model=StockLevel, responses=errors(400, 409))
def adjust_stock(
    sku: SkuPath, body: Adjustment, uow: UowDep, principal: CanChangeStock
) -> dict[str, Any]:
    return inventory.adjust_stock(uow, principal, sku, body.delta, body.reason, body.note)


@router.get("/{sku}/movements", response_model=MovementList)
def movements(
    sku: SkuPath,
    uow: UowDep,
    _: CanReadStockLedger,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[Cursor, Query()] = 0,
) -> dict[str, Any]:
    """The stock ledger, newest first: who, when, why, delta and the resulting quantity."""
    return {"items": inventory.movements(uow, sku, limit, before)}
