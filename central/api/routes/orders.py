from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, Field

from central.api.deps import API_PREFIX, CentralDep, Reader, UowDep
from central.errors import CentralError
from central.services import orders

router = APIRouter(prefix=API_PREFIX + "/orders", tags=["orders"])


class OrderIn(BaseModel):
    lines: list[dict[str, Any]] = Field(max_length=1000)


@router.post("", status_code=201)
def place_order(
    body: OrderIn,
    response: Response,
    central: CentralDep,
    uow: UowDep,
    principal: Reader,
    idempotency_key: Annotated[str | None, Header(max_length=1000)] = None,
) -> dict[str, Any]:
    """Reserve every line atomically or none. Replaying a key returns the first order."""
    counter = central.metrics.orders
    try:
        placed = orders.place_order(uow, principal, idempotency_key, body.lines)
    except CentralError as exc:
        counter.labels(exc.code).inc()
        raise
    counter.labels("replayed" if placed.replayed else "confirmed").inc()
    if placed.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return placed.order


@router.get("")
def list_orders(
    uow: UowDep,
    principal: Reader,
    store: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=orders.MAX_PAGE)] = 50,
    before: Annotated[int, Query(ge=0)] = 0,
    idempotency_key: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    """Newest first; pass `next_before` back as `before` for the next page.
    `idempotency_key` finds the order a key created, if any (a store resolving an unknown
    outcome)."""
    wanted = orders.OrderFilter(
        store, status, _naive(since), _naive(until), limit, before, idempotency_key
    )
    return orders.list_orders(uow, principal, wanted)


@router.get("/{order_id}")
def get_order(order_id: str, uow: UowDep, principal: Reader) -> dict[str, Any]:
    return orders.get_order(uow, principal, order_id)


@router.post("/{order_id}/cancel")
def cancel_order(
    order_id: str, central: CentralDep, uow: UowDep, principal: Reader
) -> dict[str, Any]:
    """Release the order's stock; cancelling twice changes nothing."""
    order = orders.cancel_order(uow, principal, order_id)
    central.metrics.orders.labels("cancelled").inc()
    return order


def _naive(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is None:
        return moment
    from datetime import UTC

    return moment.astimezone(UTC).replace(tzinfo=None)
