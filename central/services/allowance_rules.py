"""Allowance rule use cases: an admin sets, lists and deletes the rules that say how many
units of a SKU, or of each SKU of a category, a store is granted while it is online
(central.domain.allowance_rules; the top-up itself is central.services.top_ups)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee

from central.db import locked
from central.domain import allowance_rules as rules
from central.domain.catalog import valid_sku
from central.models import AllowanceRule, Category, Product, as_utc
from central.services.principal import Principal
from central.uow import UnitOfWork
from invwire.errors.central import (
    AllowanceRuleNotFound,
    CategoryNotFound,
    InvalidInput,
    ProductNotFound,
)

MAX_PAGE = 1000  # as invctl.paging pages


@dataclass(frozen=True)
class RuleRequest:
    scope: str
    target: str
    units: object
    threshold: object
    ttl_s: object
    share: object = None
    share_days: object = None


def set_rule(uow: UnitOfWork, principal: Principal, wanted: RuleRequest) -> dict[str, Any]:
    """Create or replace the rule of one SKU or category."""
    if wanted.scope == rules.SKU:
        valid_sku(wanted.target)
    rule = rules.valid_rule(
        wanted.scope, wanted.target, wanted.units, wanted.threshold, wanted.ttl_s, _share(wanted)
    )

    def save() -> AllowanceRule:
        _require_target(rule)
        return _upsert(uow, principal, rule)

    try:
        return rule_view(uow.run(save))
    except peewee.IntegrityError:
        # Another admin created the same rule between our read and our insert: it is there
        # now, so this attempt replaces it.
        return rule_view(uow.run(save))


def delete_rule(uow: UnitOfWork, scope: str, target: str) -> None:
    def delete() -> None:
        gone = (
            AllowanceRule.delete()
            .where(AllowanceRule.scope == scope, AllowanceRule.target == target)
            .execute()
        )
        if gone == 0:
            raise AllowanceRuleNotFound(scope=scope, target=target)

    uow.run(delete)


def list_rules(uow: UnitOfWork, limit: int = 50, after: int = 0) -> dict[str, Any]:
    """Rules oldest first, a page at a time: `next_after` is set when more are left."""
    limit = max(1, min(limit, MAX_PAGE))
    query = AllowanceRule.select().where(AllowanceRule.id > after).order_by(AllowanceRule.id)
    with uow.db.connection_context():
        rows = list(query.limit(limit + 1))
    cursor = rows[limit - 1].id if len(rows) > limit else None
    return {"items": [rule_view(row) for row in rows[:limit]], "next_after": cursor}


def rule_view(row: AllowanceRule) -> dict[str, Any]:
    return {
        "id": row.id,
        "scope": row.scope,
        "target": row.target,
        "units": row.units,
        "threshold": row.threshold,
        "ttl_s": row.ttl_s,
        "share": None if row.share is None else float(row.share),
        "share_days": row.share_days,
        "updated_at": as_utc(row.updated_at),
        "updated_by": row.updated_by,
    }


def _share(wanted: RuleRequest) -> rules.Share | None:
    if wanted.share is None:
        if wanted.share_days is not None:
            raise InvalidInput("share_days is given only with share", field="share_days")
        return None
    days = rules.DEFAULT_SHARE_DAYS if wanted.share_days is None else wanted.share_days
    return rules.valid_share(wanted.share, days)


def _require_target(rule: rules.Rule) -> None:
    if rule.scope == rules.SKU:
        if Product.get_or_none(Product.sku == rule.target) is None:
            raise ProductNotFound(sku=rule.target)
    elif Category.get_or_none(Category.id == int(rule.target)) is None:
        raise CategoryNotFound(category_id=int(rule.target))


def _upsert(uow: UnitOfWork, principal: Principal, rule: rules.Rule) -> AllowanceRule:
    now = uow.clock.now()
    fields = {
        "units": rule.units,
        "threshold": rule.threshold,
        "ttl_s": rule.ttl_s,
        "share": None if rule.share is None else rule.share.fraction,
        "share_days": None if rule.share is None else rule.share.days,
        "updated_at": now,
        "updated_by": principal.actor,
    }
    key = (AllowanceRule.scope == rule.scope) & (AllowanceRule.target == rule.target)
    found = locked(AllowanceRule.select().where(key)).first()
    if found is None:
        return AllowanceRule.create(scope=rule.scope, target=rule.target, **fields)
    AllowanceRule.update(**fields).where(AllowanceRule.id == found.id).execute()
    return AllowanceRule.get_by_id(found.id)
