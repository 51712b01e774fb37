from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import Field
from pydantic.json_schema import JsonDict

from central.api.deps import (
    API_PREFIX,
    CanCancelOrders,
    CanPlaceOrders,
    CanReadOrders,
    CentralDep,
    UowDep,
)
from central.api.schemas import (
    Cursor,
    IdempotencyKeyStr,
    Order,
    OrderPage,
    RequestBody,
    StoreIdStr,
    UtcMoment,
    errors,
)
from central.errors import CentralError
from central.services import orders
from invwire.rules import MAX_LINE_QUANTITY, MAX_LINES, SKU_REGEX

router = APIRouter(
    prefix=API_PREFIX + "/orders", tags=["orders"], responses=errors(401, 403, 422, 503)
)

# The lines are checked by the contract's rules (invwire.orders), not by this schema, so each
# problem keeps its own code (order.invalid, order.duplicate_line, quantity.invalid, ...).
LINE_DOC: JsonDict = {
    "type": "object",
    "properties": {
        "sku": {"type": "string", "pattern": SKU_REGEX, "maxLength": 64},
        "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_LINE_QUANTITY},
    },
    "required": ["sku", "quantity"],
    "additionalProperties": False,
}


class OrderIn(RequestBody):
    lines: list[dict[str, Any]] = Field(
        max_length=1000, json_schema_extra={"items": LINE_DOC, "minItems": 1, "maxItems": MAX_LINES}
    )


OrderIdPath = Annotated[str, Path(max_length=64, description="the order's id (a UUID)")]

REPLAYED = {
    "description": "The order; a replayed key answers the first order again.",
    "headers": {
        "Idempotent-Replayed": {
            "description": "`true` when this key's order already existed",
            "schema": {"type": "string", "enum": ["true"]},
        }
    },
}


@router.post(
    "", status_code=201, response_model=Order, responses={201: REPLAYED, **errors(400, 409)}
)
def place_order(
    body: OrderIn,
    response: Response,
    central: CentralDep,
    uow: UowDep,
    principal: CanPlaceOrders,
    idempotency_key: Annotated[IdempotencyKeyStr | None, Header(max_length=1000)] = None,
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


@router.get("", response_model=OrderPage)
def list_orders(
    uow: UowDep,
    principal: CanReadOrders,
    store: Annotated[StoreIdStr | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    since: Annotated[UtcMoment | None, Query()] = None,
    until: Annotated[UtcMoment | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=orders.MAX_PAGE)] = 50,
    before: Annotated[Cursor, Query()] = 0,
    idempotency_key: Annotated[IdempotencyKeyStr | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    """Newest first; pass `next_before` back as `before` for the next page.
    `idempotency_key` finds the order a key created, if any (a store resolving an unknown
    outcome)."""
    wanted = orders.OrderFilter(store, status, since, until, limit, before, idempotency_key)
    return orders.list_orders(uow, principal, wanted)


@router.get("/{order_id}", response_model=Order, responses=errors(404))
def get_order(order_id: OrderIdPath, uow: UowDep, principal: CanReadOrders) -> dict[str, Any]:
    return orders.get_order(uow, principal, order_id)


@router.post("/{order_id}/cancel", response_model=Order, responses=errors(404))
def cancel_order(
    order_id: OrderIdPath, central: CentralDep, uow: UowDep, principal: CanCancelOrders
) -> dict[str, Any]:
    """Release the order's stock; cancelling twice changes nothing."""
    order = orders.cancel_order(uow, principal, order_id)
    central.metrics.orders.labels("cancelled").inc()
    return order
