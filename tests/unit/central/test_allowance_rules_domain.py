"""Allowance rules: a SKU's own rule before its category's, a store topped up only below its
threshold, and top-ups that shrink as stock runs low and stop before the last units."""

from decimal import Decimal

import pytest

from central.domain import allowance_rules as rules
from invwire.errors.central import InvalidInput, InvalidQuantity


def make_rule(units=10, threshold=4, **overrides):
    fields = {"scope": "sku", "target": "MILK", "units": units, "threshold": threshold}
    return rules.Rule(**{**fields, "ttl_s": 3600, **overrides})


def test_a_valid_rule_keeps_what_the_admin_sent():
    assert rules.valid_rule("category", "7", 5, 2, 600) == rules.Rule("category", "7", 5, 2, 600)


@pytest.mark.parametrize(
    ("units", "threshold", "ttl_s", "field"),
    [
        (0, 1, 600, "units"),
        (5, 0, 600, "threshold"),
        (5, 6, 600, "threshold"),
        (5, True, 600, "threshold"),
        (5, 2, 59, "ttl_s"),
        (5, 2, "600", "ttl_s"),
    ],
)
def test_a_bad_number_is_refused_naming_its_field(units, threshold, ttl_s, field):
    with pytest.raises((InvalidInput, InvalidQuantity)) as refused:
        rules.valid_rule("sku", "MILK", units, threshold, ttl_s)
    assert refused.value.details["field"] == field


def test_an_unknown_scope_is_refused():
    with pytest.raises(InvalidInput):
        rules.valid_rule("shelf", "1", 5, 2, 600)


def test_a_skus_own_rule_comes_before_its_categorys():
    own = make_rule(units=3)
    category = make_rule(scope="category", target="7", units=9)
    by_key = {("sku", "MILK"): own, ("category", "7"): category}

    assert rules.rule_for("MILK", 7, by_key) == own
    assert rules.rule_for("EGGS", 7, by_key) == category
    assert rules.rule_for("EGGS", 8, by_key) is None


def test_a_store_at_or_above_its_threshold_gets_nothing():
    assert rules.top_up(make_rule(threshold=4), left=4, available=1000, active_stores=2) == 0


def test_a_store_below_its_threshold_is_topped_up_to_the_rules_units():
    assert rules.top_up(make_rule(threshold=4), left=3, available=1000, active_stores=2) == 7


def test_a_top_up_shrinks_to_a_share_of_what_is_available():
    # 3 active stores: at most a quarter of what any store may take
    assert rules.top_up(make_rule(), left=0, available=20, active_stores=3) == 5


def test_the_last_units_one_per_active_store_are_never_granted():
    assert rules.top_up(make_rule(), left=0, available=3, active_stores=3) == 0
    assert rules.top_up(make_rule(), left=0, available=4, active_stores=3) == 1


def test_stores_topping_up_one_after_another_leave_over_a_third_available():
    available, stores = 1000, 10
    for _ in range(stores):
        available -= rules.top_up(make_rule(units=10**6), 0, available, stores)
    assert available * 3 > 1000


def test_a_share_keeps_four_places_and_a_window_in_days():
    assert rules.valid_share(0.25, 7) == rules.Share(Decimal("0.2500"), 7)


@pytest.mark.parametrize(
    ("fraction", "days", "field"),
    [
        (0, 7, "share"),
        (1.5, 7, "share"),
        (0.12345, 7, "share"),
        ("x", 7, "share"),
        (True, 7, "share"),
        (0.5, 0, "share_days"),
        (0.5, 366, "share_days"),
    ],
)
def test_a_bad_share_is_refused_naming_its_field(fraction, days, field):
    with pytest.raises(InvalidInput) as refused:
        rules.valid_share(fraction, days)
    assert refused.value.details["field"] == field


def test_a_share_splits_its_part_of_available_between_recent_sellers():
    rule = make_rule(units=50, threshold=1, share=rules.Share(Decimal("0.25"), 7))

    assert rules.top_up(rule, left=0, available=96, active_stores=3, sellers=2) == 12
    assert rules.top_up(rule, left=0, available=96, active_stores=3, sellers=0) == 0
    capped = make_rule(units=5, threshold=1, share=rules.Share(Decimal("1"), 7))
    assert rules.top_up(capped, left=0, available=96, active_stores=3, sellers=1) == 5
