"""Allowances: units of a SKU set aside for one store (central.services.allowances)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field, StrictInt

from central.api.deps import (
    API_PREFIX,
    AllowanceMarginDep,
    CanManageAllowances,
    CanReadOwnAllowances,
    CentralDep,
    UowDep,
)
from central.api.schemas import (
    Allowance,
    AllowanceList,
    AllowancePage,
    Cursor,
    ErrorBody,
    RequestBody,
    SkuStr,
    StoreIdStr,
    errors,
    range_doc,
)
from central.domain import allowances as rules
from central.domain.stock import MAX_QUANTITY
from central.services import allowances, top_ups
from invwire.errors.central import StatementMismatch

router = APIRouter(
    prefix=API_PREFIX + "/allowances",
    tags=["allowances"],
    responses=errors(401, 403, 422, 503),
)


# The bounds are the domain's (central.domain.allowances), checked there: a refusal keeps
# its code (quantity.invalid, request.invalid naming ttl_s).
class AllowanceIn(RequestBody):
    store: Annotated[StoreIdStr, Field(max_length=64)]
    sku: Annotated[SkuStr, Field(max_length=64)]
    units: StrictInt = Field(json_schema_extra=range_doc(1, MAX_QUANTITY))
    ttl_s: StrictInt = Field(
        description="seconds until it expires",
        json_schema_extra=range_doc(rules.MIN_TTL_S, rules.MAX_TTL_S),
    )


GrantIdPath = Annotated[str, Path(max_length=64, description="the allowance's id (a UUID)")]

NOT_ENOUGH: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "`stock.insufficient` (fewer units available than asked; nothing set "
        "aside) or `store.inactive`",
    }
}
CLOSED: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "`allowance.closed`: its units were returned (`details.state` "
        "`closed`), or, for a return, it is past its expiry and the margin (`settling`)",
    }
}


@router.post(
    "",
    status_code=201,
    response_model=Allowance,
    responses={**errors(400, 404), **NOT_ENOUGH},
)
def grant(body: AllowanceIn, uow: UowDep, principal: CanManageAllowances) -> dict[str, Any]:
    """Set `units` of a SKU aside for one store for `ttl_s` seconds: no other store may take
    them; that store's orders take them once what anyone may take is gone."""
    wanted = allowances.GrantRequest(body.store, body.sku, body.units, body.ttl_s)
    return allowances.grant(uow, principal, wanted)


@router.get("", response_model=AllowancePage)
def list_allowances(
    uow: UowDep,
    _: CanManageAllowances,
    store: Annotated[StoreIdStr | None, Query(max_length=64)] = None,
    sku: Annotated[SkuStr | None, Query(max_length=64)] = None,
    state: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=allowances.MAX_PAGE)] = 50,
    before: Annotated[Cursor, Query()] = 0,
) -> dict[str, Any]:
    """Newest first; `next_before` is set when the page was cut: pass it back as `before`."""
    wanted = allowances.GrantFilter(store, sku, state, limit, before)
    return allowances.list_grants(uow, wanted)


@router.get("/mine", response_model=AllowanceList)
def own_allowances(
    uow: UowDep, principal: CanReadOwnAllowances, margin_s: AllowanceMarginDep
) -> dict[str, Any]:
    """The calling store's live allowances, and only its own, topped up first by the rules
    (the store is online: it asked); it sells under one only until `margin_s` before its
    expiry by central's clock (`server_time` is central's now)."""
    top_ups.top_up(uow, principal)
    return allowances.own_live_grants(uow, principal, margin_s)


@router.post(
    "/{allowance_id}/return",
    response_model=Allowance,
    responses={**errors(404), **CLOSED},
)
def return_allowance(
    allowance_id: GrantIdPath,
    uow: UowDep,
    principal: CanManageAllowances,
    margin_s: AllowanceMarginDep,
) -> dict[str, Any]:
    """Close a live allowance: its unused units are available to every store again."""
    return allowances.return_grant(uow, principal, allowance_id, margin_s)


class StatementIn(RequestBody):
    sold: StrictInt = Field(
        description="units the store sold under the grant, in all",
        json_schema_extra=range_doc(0, MAX_QUANTITY),
    )


STATEMENT_REFUSED: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "`allowance.replay_pending` (more sold than booked: replay first), "
        "`allowance.statement_mismatch` (fewer sold than booked) or `allowance.closed` "
        "(closed with another figure)",
    }
}


@router.post(
    "/{allowance_id}/statement",
    response_model=Allowance,
    responses={**errors(400, 404), **STATEMENT_REFUSED},
)
def statement(
    allowance_id: GrantIdPath,
    body: StatementIn,
    uow: UowDep,
    principal: CanReadOwnAllowances,
    central: CentralDep,
) -> dict[str, Any]:
    """The store's word that it sold `sold` units under its allowance, every sale replayed:
    equal to what central booked, the allowance closes and its unused units are available
    to every store again. Repeating it answers the closed allowance."""
    try:
        return allowances.settle_statement(uow, principal, allowance_id, body.sold)
    except StatementMismatch:
        central.metrics.allowances.labels("statement_mismatch").inc()
        raise


@router.post(
    "/{allowance_id}/write-off",
    response_model=Allowance,
    responses={**errors(404), **CLOSED},
)
def write_off(
    allowance_id: GrantIdPath, uow: UowDep, principal: CanManageAllowances, central: CentralDep
) -> dict[str, Any]:
    """Give a live or settling allowance's units back without its store's statement; a sale
    replayed under it later is booked from available stock, or left for review."""
    written_off = allowances.write_off(uow, principal, allowance_id)
    central.metrics.allowances.labels("written_off").inc()
    return written_off
