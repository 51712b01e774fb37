"""Allowances topped up by the rules while a store is online (it reads its allowances).

For each SKU a rule covers (central.domain.allowance_rules: the SKU's rule, else its
category's) whose live, unexpired units left at the store fall below the rule's threshold,
the store gets a new grant of `min(units - left, available // (active stores + 1))` for the
rule's `ttl_s`. The grant is new: the store's older grants keep their units and expiries,
so nothing it may already have sold offline under them is moved. Each SKU is its own
transaction: the stock row is locked, then the store's grants of it, and the units left,
what is available and the grant are all decided under those locks, so two stores (or two
reads by one store) racing for the last units never take more than is there.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import peewee

from central.domain import allowance_rules as rules
from central.domain import allowances
from central.models import Allowance, AllowanceRule, Order, OrderLine, Product, Stock, Store
from central.services.grants import own_grants
from central.services.orders import locked_levels, write_changes
from central.services.principal import Principal, Role
from central.uow import UnitOfWork
from invwire.orders import CONFIRMED


def top_up(uow: UnitOfWork, principal: Principal) -> int:
    """Top the calling store's allowances up as its rules say; how many grants were made."""
    store_id = principal.store_id
    if principal.role != Role.STORE or store_id is None:
        return 0
    with uow.db.connection_context():
        due = _due(store_id, uow.clock.now())
    made = 0
    for sku in due:
        made += uow.run(partial(_top_up_sku, uow, principal, store_id, sku))
    return made


def _due(store_id: str, now: datetime) -> list[str]:
    """The SKUs a top-up would grant, read without any lock (a SKU whose stock is too low
    for one is not locked at each read): each is decided again under its locks."""
    covered = _covered(_all_rules())
    if not covered:
        return []
    left = _units_left(store_id, list(covered), now)
    available = _available(list(covered))
    active = _active_stores()
    return sorted(
        sku
        for sku, rule in covered.items()
        # a share only lowers a grant: left out here, it is counted under the locks
        if rules.top_up(replace(rule, share=None), left.get(sku, 0), available.get(sku, 0), active)
    )


def _top_up_sku(uow: UnitOfWork, principal: Principal, store_id: str, sku: str) -> int:
    now = uow.clock.now()
    store = Store.get_or_none(Store.id == store_id)
    rule = _rule_of(sku)
    level = locked_levels([sku]).get(sku)
    if store is None or not store.active or rule is None or level is None:
        return 0
    left = sum(g.remaining for g in own_grants(store_id, [sku], now).get(sku, ()))
    sellers = _sellers(rule, store_id, sku, now)
    units = rules.top_up(rule, left, level.quantity, _active_stores(), sellers)
    if units == 0:
        return 0
    grant_id = str(uuid.uuid4())
    change = allowances.set_aside(level, units)
    write_changes(uow, principal, [change], now, f"allowance {grant_id}")
    Allowance.create(
        id=grant_id,
        store_id=store_id,
        sku=sku,
        units=units,
        remaining=units,
        expires_at=allowances.expiry(now, rule.ttl_s),
        state=allowances.LIVE,
        created_at=now,
        updated_at=now,
    )
    return 1


def _active_stores() -> int:
    return Store.select().where(Store.active == True).count()  # noqa: E712 (SQL, not Python)


def _all_rules() -> dict[tuple[str, str], rules.Rule]:
    return {(r.scope, r.target): _rule(r) for r in AllowanceRule.select()}


def _rule(row: AllowanceRule) -> rules.Rule:
    share = (
        None
        if row.share is None
        else rules.Share(Decimal(row.share), row.share_days or rules.DEFAULT_SHARE_DAYS)
    )
    return rules.Rule(row.scope, row.target, row.units, row.threshold, row.ttl_s, share)


def _sellers(rule: rules.Rule, store_id: str, sku: str, now: datetime) -> int | None:
    """With a share rule: how many active stores sold the SKU in its window, if this store
    is one of them, else 0."""
    if rule.share is None:
        return None
    since = now - timedelta(days=rule.share.days)
    query: Any = (
        Order.select(Order.store_id)
        .join(OrderLine, on=OrderLine.order_id == Order.id)
        .join(Store, on=Store.id == Order.store_id)
        .where(
            OrderLine.sku == sku,
            Order.status == CONFIRMED,
            Order.created_at >= since,
            Store.active == True,  # noqa: E712 (SQL, not Python)
        )
        .distinct()
        .tuples()
    )
    stores = {str(found) for (found,) in query}
    return len(stores) if store_id in stores else 0


def _covered(by_key: dict[tuple[str, str], rules.Rule]) -> dict[str, rules.Rule]:
    """Every active SKU a rule covers, with the rule that applies to it."""
    skus = [target for scope, target in by_key if scope == rules.SKU]
    categories = [int(target) for scope, target in by_key if scope == rules.CATEGORY]
    where = Product.sku.in_(skus) if skus else None
    if categories:
        in_category = Product.category.in_(categories)
        where = in_category if where is None else (where | in_category)
    if where is None:
        return {}
    query = Product.select(Product.sku, Product.category).where(where & Product.active)
    covered = {}
    for product in query:
        rule = rules.rule_for(product.sku, product.category_id, by_key)
        if rule is not None:
            covered[product.sku] = rule
    return covered


def _rule_of(sku: str) -> rules.Rule | None:
    product = Product.get_or_none(Product.sku == sku)
    if product is None or not product.active:
        return None
    keys = [(rules.SKU, sku), (rules.CATEGORY, str(product.category_id))]
    found = AllowanceRule.select().where(
        (AllowanceRule.scope == keys[0][0]) & (AllowanceRule.target == keys[0][1])
        | (AllowanceRule.scope == keys[1][0]) & (AllowanceRule.target == keys[1][1])
    )
    return rules.rule_for(sku, product.category_id, {(r.scope, r.target): _rule(r) for r in found})


def _units_left(store_id: str, skus: list[str], now: datetime) -> dict[str, int]:
    query: Any = (
        Allowance.select(Allowance.sku, peewee.fn.SUM(Allowance.remaining))
        .where(
            Allowance.store_id == store_id,
            Allowance.sku.in_(skus),
            Allowance.state == allowances.LIVE,
            Allowance.expires_at > now,
        )
        .group_by(Allowance.sku)
        .tuples()
    )
    return {str(sku): int(units or 0) for sku, units in query}


def _available(skus: list[str]) -> dict[str, int]:
    query: Any = Stock.select(Stock.sku, Stock.quantity).where(Stock.sku.in_(skus)).tuples()
    return {str(sku): int(quantity) for sku, quantity in query}
