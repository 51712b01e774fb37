from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from central.api.deps import API_PREFIX, CanReadOrders, UowDep
from central.api.schemas import Money, StoreIdStr, Timestamp, UtcMoment, errors
from central.services import reports
from central.services.reports import Grouping

router = APIRouter(
    prefix=API_PREFIX + "/reports", tags=["reports"], responses=errors(401, 403, 422, 503)
)


class SalesFigures(BaseModel):
    orders: int = Field(description="orders counted (an order with two SKUs counts in both)")
    units: int
    revenue: Money


class SalesRow(SalesFigures):
    key: str = Field(
        description="the UTC day (`2026-11-29`), the SKU or the store id", examples=["2026-11-29"]
    )


class SalesReport(BaseModel):
    by: Grouping
    since: Timestamp | None = Field(description="from (inclusive); null: the first order")
    until: Timestamp | None = Field(description="to (exclusive); null: now")
    store: str | None = Field(description="the store reported on; null: every store")
    rows: list[SalesRow] = Field(
        description="`day`: oldest first; `sku` and `store`: highest revenue first"
    )
    truncated: bool = Field(description="more rows than `limit`: the newest days or the top rows")
    keys: int = Field(description="how many rows there are in all (days, SKUs or stores)")
    totals: SalesFigures = Field(
        description="every confirmed order of the window, counted apart from the rows"
    )
    cancelled: SalesFigures = Field(
        description="orders placed in the window and cancelled since: in neither rows nor totals"
    )


@router.get("/sales", response_model=SalesReport)
def sales(
    uow: UowDep,
    principal: CanReadOrders,
    by: Annotated[Grouping, Query()] = Grouping.day,
    since: Annotated[UtcMoment | None, Query()] = None,
    until: Annotated[UtcMoment | None, Query()] = None,
    store: Annotated[StoreIdStr | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=reports.MAX_ROWS)] = reports.MAX_ROWS,
) -> dict[str, Any]:
    """Confirmed orders placed in `[since, until)`, by UTC day, SKU or store, with totals.
    Stores and staff see only their store's sales (another `store` is 403)."""
    wanted = reports.SalesQuery(by, since, until, store, limit)
    return reports.sales_report(uow, principal, wanted)
