"""Allowance rules: how many units of a SKU each store is granted while it is online.

A rule names a SKU or a category. A store's SKU is covered by the SKU's own rule, else by
its category's. While the store is online (it reads its allowances), a SKU whose live,
unexpired units left fall below the rule's `threshold` is topped up by a new grant.

The scarcity rule: a top-up grants

    min(units - left, available // (active stores + 1))

where `available` is what any store may take and `active stores` counts every active
store (with a share rule, `units` is at most the store's part of `share` x available,
split between the stores that sold the SKU in the rule's window; a store that did not gets
none by it). So a grant shrinks as stock runs low, and no grant is made once `available` is at
most the number of active stores: those last units are sold online, never locked in
stores' drawers. Each top-up takes at most 1/(n+1) of what is available, so however the n
active stores top up one after another, more than a third of it stays available to
everyone ((n/(n+1))^n > 1/e).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from central.domain import allowances
from invwire.errors.central import InvalidInput

SKU, CATEGORY = "sku", "category"
SCOPES = (SKU, CATEGORY)


SHARE_PLACES = Decimal("0.0001")
MAX_SHARE_DAYS = 365
DEFAULT_SHARE_DAYS = 7


@dataclass(frozen=True)
class Share:
    """`fraction` of what is available, split between the stores that sold the SKU in the
    last `days` days."""

    fraction: Decimal
    days: int


@dataclass(frozen=True)
class Rule:
    scope: str
    target: str
    units: int
    threshold: int
    ttl_s: int
    share: Share | None = None


def valid_rule(
    scope: str,
    target: str,
    units: object,
    threshold: object,
    ttl_s: object,
    share: Share | None = None,
) -> Rule:
    """A rule from what an admin sent; refuses bad numbers with the field they are in."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope is one of {', '.join(SCOPES)}", field="scope")
    whole = allowances.valid_units(units)
    low = _whole_within(threshold, 1, whole)
    if low is None:
        raise InvalidInput("threshold is a whole number from 1 to units", field="threshold")
    seconds = _whole_within(ttl_s, allowances.MIN_TTL_S, allowances.MAX_TTL_S)
    if seconds is None:
        raise InvalidInput(
            f"ttl_s is a whole number of seconds from {allowances.MIN_TTL_S} to "
            f"{allowances.MAX_TTL_S}",
            field="ttl_s",
        )
    return Rule(scope, target, whole, low, seconds, share)


def valid_share(fraction: object, days: object) -> Share:
    """A share from 0.0001 to 1 (4 decimal places at most) over 1 to 365 days."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float | str | Decimal):
        raise InvalidInput("share is a number over 0 and at most 1", field="share")
    try:
        exact = Decimal(str(fraction))
    except ArithmeticError:
        raise InvalidInput("share is a number over 0 and at most 1", field="share") from None
    if not exact.is_finite() or not 0 < exact <= 1 or exact != exact.quantize(SHARE_PLACES):
        raise InvalidInput(
            "share is a number over 0 and at most 1, with at most 4 decimal places",
            field="share",
        )
    window = _whole_within(days, 1, MAX_SHARE_DAYS)
    if window is None:
        raise InvalidInput(
            f"share_days is a whole number from 1 to {MAX_SHARE_DAYS}", field="share_days"
        )
    return Share(exact.quantize(SHARE_PLACES), window)


def rule_for(sku: str, category_id: int, rules: Mapping[tuple[str, str], Rule]) -> Rule | None:
    """The SKU's own rule first, else its category's."""
    return rules.get((SKU, sku)) or rules.get((CATEGORY, str(category_id)))


def top_up(
    rule: Rule, left: int, available: int, active_stores: int, sellers: int | None = None
) -> int:
    """The units to grant a store that has `left` live units of the SKU: 0 for none.
    `sellers`: with a share rule, how many stores sold the SKU in its window if this store
    is one of them, else 0 (it gets nothing by share)."""
    if left >= rule.threshold:
        return 0
    fair_share = available // (max(active_stores, 1) + 1)
    return max(0, min(holding(rule, available, sellers) - left, fair_share))


def holding(rule: Rule, available: int, sellers: int | None) -> int:
    """The most the store may hold: the rule's units, and with a share no more than its
    part of `share` of what is available."""
    if rule.share is None:
        return rule.units
    if not sellers:
        return 0
    return min(rule.units, int(rule.share.fraction * available) // sellers)


def _whole_within(raw: object, low: int, high: int) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        return None
    return raw
