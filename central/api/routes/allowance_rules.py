"""Allowance rules: how many units of a SKU or category stores are granted while online
(central.services.allowance_rules)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field, StrictFloat, StrictInt

from central.api.deps import API_PREFIX, CanManageAllowances, UowDep
from central.api.schemas import (
    Cursor,
    RequestBody,
    Timestamp,
    errors,
    range_doc,
)
from central.domain import allowance_rules as rules
from central.domain import allowances as grants
from central.domain.stock import MAX_QUANTITY
from central.services import allowance_rules

router = APIRouter(
    prefix=API_PREFIX + "/allowance-rules",
    tags=["allowances"],
    responses=errors(401, 403, 422, 503),
)


ShareDays = Annotated[int, Field(strict=True, json_schema_extra=range_doc(1, rules.MAX_SHARE_DAYS))]


# The bounds are the domain's (central.domain.allowance_rules), checked there: a refusal
# keeps its code (quantity.invalid for units, request.invalid naming threshold or ttl_s).
class AllowanceRuleIn(RequestBody):
    units: StrictInt = Field(
        description="units a store holds once topped up",
        json_schema_extra=range_doc(1, MAX_QUANTITY),
    )
    threshold: StrictInt = Field(
        description="a store is topped up when its live units left fall below this (1..units)",
        json_schema_extra=range_doc(1, MAX_QUANTITY),
    )
    ttl_s: StrictInt = Field(
        description="seconds each grant lasts",
        json_schema_extra=range_doc(grants.MIN_TTL_S, grants.MAX_TTL_S),
    )
    share: StrictFloat | None = Field(
        default=None,
        json_schema_extra=range_doc(0, 1),
        description="optional: a store holds at most this fraction (over 0, at most 1, 4 "
        "places) of what is available, split between the stores that sold the SKU in the "
        "last `share_days` days; a store that did not gets none",
    )
    share_days: ShareDays | None = Field(
        default=None,
        description=f"days a sale counts for `share` (default {rules.DEFAULT_SHARE_DAYS})",
    )


class AllowanceRule(BaseModel):
    id: int
    scope: str = Field(json_schema_extra={"enum": list(rules.SCOPES)})
    target: str = Field(description="the SKU, or the category's id")
    units: int
    threshold: int
    ttl_s: int
    share: float | None = Field(description="null: no share")
    share_days: int | None
    updated_at: Timestamp
    updated_by: str = Field(description="who set it, e.g. `user:root`")


class AllowanceRulePage(BaseModel):
    items: list[AllowanceRule]
    next_after: int | None = Field(description="set when the page was cut: pass as `after`")


SkuPath = Annotated[str, Path(max_length=64, description="the SKU")]
CategoryPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="the category's id")]


@router.put("/sku/{sku}", response_model=AllowanceRule, responses=errors(400, 404))
def set_sku_rule(
    sku: SkuPath, body: AllowanceRuleIn, uow: UowDep, principal: CanManageAllowances
) -> dict[str, Any]:
    """Create or replace the rule of one SKU; it comes before its category's rule."""
    return allowance_rules.set_rule(uow, principal, _wanted(rules.SKU, sku, body))


@router.put("/category/{category_id}", response_model=AllowanceRule, responses=errors(400, 404))
def set_category_rule(
    category_id: CategoryPath, body: AllowanceRuleIn, uow: UowDep, principal: CanManageAllowances
) -> dict[str, Any]:
    """Create or replace the rule of every SKU of a category that has no rule of its own."""
    wanted = _wanted(rules.CATEGORY, str(category_id), body)
    return allowance_rules.set_rule(uow, principal, wanted)


@router.get("", response_model=AllowanceRulePage)
def list_rules(
    uow: UowDep,
    _: CanManageAllowances,
    limit: Annotated[int, Query(ge=1, le=allowance_rules.MAX_PAGE)] = 50,
    after: Annotated[Cursor, Query(description="0: from the first")] = 0,
) -> dict[str, Any]:
    """Oldest first; `next_after` is set when the page was cut: pass it back as `after`."""
    return allowance_rules.list_rules(uow, limit, after)


@router.delete("/sku/{sku}", status_code=204, responses=errors(404))
def delete_sku_rule(sku: SkuPath, uow: UowDep, _: CanManageAllowances) -> Response:
    """Stores are no longer topped up for this SKU by its own rule (grants made stay)."""
    allowance_rules.delete_rule(uow, rules.SKU, sku)
    return Response(status_code=204)


@router.delete("/category/{category_id}", status_code=204, responses=errors(404))
def delete_category_rule(
    category_id: CategoryPath, uow: UowDep, _: CanManageAllowances
) -> Response:
    """Stores are no longer topped up by this category's rule (grants made stay)."""
    allowance_rules.delete_rule(uow, rules.CATEGORY, str(category_id))
    return Response(status_code=204)


def _wanted(scope: str, target: str, body: AllowanceRuleIn) -> allowance_rules.RuleRequest:
    return allowance_rules.RuleRequest(
        scope, target, body.units, body.threshold, body.ttl_s, body.share, body.share_days
    )
