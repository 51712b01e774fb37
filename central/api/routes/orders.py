from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse
from pydantic import Field
from pydantic.json_schema import JsonDict

from central.api.deps import (
    API_PREFIX,
    CanCancelOrders,
    CanReadOrders,
    CanRecoverOrders,
    CentralDep,
    Credentials,
    CredentialsDep,
    UowDep,
    order_principal,
)
from central.api.schemas import (
    Cursor,
    ErrorBody,
    IdempotencyKeyStr,
    Order,
    OrderPage,
    Recovery,
    RequestBody,
    StoreIdStr,
    UtcMoment,
    errors,
)
from central.app import Central
from central.domain import recovery as recovery_rules
from central.services import orders, recovery
from central.services.principal import Principal
from central.uow import UnitOfWork
from invwire.errors.central import CentralError
from invwire.rules import IDEMPOTENCY_KEY_REGEX, MAX_LINE_QUANTITY, MAX_LINES, SKU_REGEX

router = APIRouter(
    prefix=API_PREFIX + "/orders", tags=["orders"], responses=errors(401, 403, 422, 503)
)

# The lines are checked by the contract's rules (invwire.orders), not by this schema, so each
# problem keeps its own code (order.invalid, order.duplicate_line, quantity.invalid, ...).
LINE_PROPERTIES: JsonDict = {
    "sku": {"type": "string", "pattern": SKU_REGEX, "maxLength": 64},
    "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_LINE_QUANTITY},
}
LINE_DOC: JsonDict = {
    "type": "object",
    "properties": LINE_PROPERTIES,
    "required": ["sku", "quantity"],
    "additionalProperties": False,
}


# A sale the store made under one of its allowances names it: booked against that grant.
ORDER_LINE_DOC: JsonDict = {
    **LINE_DOC,
    "properties": {
        **LINE_PROPERTIES,
        "grant_id": {"type": "string", "format": "uuid", "maxLength": 36},
    },
}


# What the schema takes before the rules check the lines (MAX_LINES is theirs): more is a 422
# from the schema, so a huge list is not checked line by line. The same bound caps the
# Idempotency-Key header, whose pattern the rules check.
MAX_LINES_READ = 1000
MAX_KEY_HEADER = 1000


class OrderIn(RequestBody):
    lines: list[dict[str, Any]] = Field(
        max_length=MAX_LINES_READ,
        json_schema_extra={"items": ORDER_LINE_DOC, "minItems": 1, "maxItems": MAX_LINES},
    )


MOMENT_DOC: JsonDict = {
    "type": "string",
    "format": "date-time",
    "maxLength": recovery_rules.MAX_MOMENT_TEXT,
}
# Checked by central.domain.recovery, so a malformed order is refused naming its field and
# index (422 request.invalid) and the batch is refused whole.
RECOVERED_LINE_DOC: JsonDict = {
    **LINE_DOC,
    "properties": {
        **LINE_PROPERTIES,
        "unit_price": {
            "type": "string",
            "pattern": recovery_rules.UNIT_PRICE_REGEX,
            "maxLength": recovery_rules.MAX_UNIT_PRICE_TEXT,
        },
    },
    "required": ["sku", "quantity", "unit_price"],
}
RECOVERED_ORDER_DOC: JsonDict = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid", "maxLength": recovery_rules.UUID_TEXT},
        "idempotency_key": {"type": "string", "pattern": IDEMPOTENCY_KEY_REGEX, "maxLength": 128},
        "created_at": MOMENT_DOC,
        "cancelled_at": {"anyOf": [MOMENT_DOC, {"type": "null"}]},
        "lines": {
            "type": "array",
            "items": RECOVERED_LINE_DOC,
            "minItems": 1,
            "maxItems": MAX_LINES,
        },
    },
    "required": list(recovery_rules.REQUIRED_FIELDS),
    "additionalProperties": False,
}
RECOVER_PATH = API_PREFIX + "/orders/recover"
# 100 orders of 100 lines, each line at its longest (a 64-character SKU, 10,000, a price of
# 13 characters), is about 1.3 MB as an agent sends it; 4 MiB leaves room for indented JSON.
# The body is read before its caller is authenticated, so this is what anyone may make
# central parse on this route.
MAX_RECOVER_BYTES = 4 * 1024 * 1024


def takes_recovered_sales(method: str, path: str) -> bool:
    """Whether a request carries sales sent back after a restore (MAX_RECOVER_BYTES)."""
    return method == "POST" and path == RECOVER_PATH


class RecoveredSalesIn(RequestBody):
    orders: list[dict[str, Any]] = Field(
        max_length=1000,
        json_schema_extra={
            "items": RECOVERED_ORDER_DOC,
            "minItems": 1,
            "maxItems": recovery_rules.MAX_ORDERS,
        },
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
    central: CentralDep,
    uow: UowDep,
    credentials: CredentialsDep,
    idempotency_key: Annotated[IdempotencyKeyStr | None, Header(max_length=MAX_KEY_HEADER)] = None,
) -> JSONResponse:
    """Reserve every line atomically or none. Replaying a key returns the first order."""
    return placed_answer(central, uow, credentials, idempotency_key, body.lines)


def placed_answer(
    central: Central,
    uow: UnitOfWork,
    credentials: Credentials,
    idempotency_key: str | None,
    lines: list[dict[str, Any]],
) -> JSONResponse:
    """The 201 of a placed (or replayed) order, counted by outcome; a refusal is raised.
    Shared by this route and central.api.order_path, which serves the plainly well-formed
    requests without FastAPI's per-request machinery (on SQLite in two steps: the order in a
    batch's transaction, its answer once that is committed)."""
    return placed_response(central, placed_order(central, uow, credentials, idempotency_key, lines))


def placed_order(
    central: Central,
    uow: UnitOfWork,
    credentials: Credentials,
    idempotency_key: str | None,
    lines: list[dict[str, Any]],
) -> orders.Placed:
    """The order placed (or replayed) for these credentials; a refusal counted and raised."""
    # The caller is checked here rather than in a dependency of its own: on the busiest route
    # that saves a thread-pool hop and a connection check-out (a MySQL ping) per order. So a
    # refused key with a malformed body gets the 422; no credentials at all is still 401 first.
    with uow.db.connection_context():
        principal, unchecked = order_principal(central, credentials)
        try:
            placed = _counted(
                central, uow, credentials, principal, idempotency_key, lines, unchecked
            )
        except orders.KeyRefused:
            assert unchecked is not None  # only an unchecked key is refused in the order
            central.known_keys.forget(unchecked)
            principal, _ = order_principal(central, credentials)  # 401, the refusal noted
            placed = _counted(central, uow, credentials, principal, idempotency_key, lines, None)
    return placed


def placed_response(central: Central, placed: orders.Placed) -> JSONResponse:
    """The 201 of an order placed (or replayed) and committed, counted by outcome."""
    central.metrics.orders.labels("replayed" if placed.replayed else "confirmed").inc()
    headers = {"Idempotent-Replayed": "true"} if placed.replayed else None
    # The view is written in the contract's shape (services.orders.view_of; the tests hold
    # each order answered against the Order model). Checking it again against that model on
    # every request was about a tenth of an order's CPU; response_model stays for the docs.
    return JSONResponse(placed.order, status_code=201, headers=headers)


def _counted(
    central: Central,
    uow: UnitOfWork,
    credentials: Credentials,
    principal: Principal,
    idempotency_key: str | None,
    lines: list[dict[str, Any]],
    unchecked: str | None,
) -> orders.Placed:
    """The order placed, or its refusal counted by code and raised. A refusal of an order
    from an unchecked key (its lines, its Idempotency-Key) is told only once the key is
    checked, as it would have been first: a revoked key learns nothing else."""
    try:
        return orders.place_order(uow, principal, idempotency_key, lines, unchecked)
    except CentralError as exc:
        if unchecked is not None:
            central.known_keys.forget(unchecked)
            order_principal(central, credentials)  # AuthInvalid if the key is refused now
        central.metrics.orders.labels(exc.code).inc()
        raise


NO_RESTORE: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "`recovery.no_restore`: central was never restored (its epoch is 1)",
    }
}


@router.post("/recover", response_model=Recovery, responses={**errors(400), **NO_RESTORE})
def recover_orders(
    body: RecoveredSalesIn, central: CentralDep, uow: UowDep, principal: CanRecoverOrders
) -> dict[str, Any]:
    """After a restore, a store's agent sends back the sales it holds that central had
    confirmed or cancelled (1 to 100 a request); central takes again those it lacks, each in
    a transaction of its own, and answers each one's outcome, in the order sent."""
    answer = recovery.recover_orders(uow, principal, body.orders)
    for item in answer["items"]:
        central.metrics.recovered.labels(item["outcome"]).inc()
    return answer


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
