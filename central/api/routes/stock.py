from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, StrictInt

from central.api.deps import API_PREFIX, Admin, Ops, Reader, UowDep
from central.services import inventory

router = APIRouter(prefix=API_PREFIX + "/stock", tags=["inventory"])


class StockSet(BaseModel):
    quantity: StrictInt
    note: str = Field(default="", max_length=10_000)


class Adjustment(BaseModel):
    delta: StrictInt
    reason: str = Field(default="adjust", max_length=16)
    note: str = Field(default="", max_length=10_000)


@router.get("/{sku}")
def get_stock(sku: str, uow: UowDep, _: Reader) -> dict[str, Any]:
    return inventory.get_stock(uow, sku)


@router.put("/{sku}")
def set_stock(sku: str, body: StockSet, uow: UowDep, principal: Admin) -> dict[str, Any]:
    return inventory.set_stock(uow, principal, sku, body.quantity, body.note)


@router.post("/{sku}/adjustments")
def adjust_stock(sku: str, body: Adjustment, uow: UowDep, principal: Admin) -> dict[str, Any]:
    return inventory.adjust_stock(uow, principal, sku, body.delta, body.reason, body.note)


@router.get("/{sku}/movements")
def movements(
    sku: str,
    uow: UowDep,
    _: Ops,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """The stock ledger, newest first: who, when, why, delta and the resulting quantity."""
    return {"items": inventory.movements(uow, sku, limit, before)}
