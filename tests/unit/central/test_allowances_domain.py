"""The allowance rules: a grant sets units aside, a return gives them back, and an order by
a store takes what anyone may take first, then its own grants, never below zero."""

from datetime import datetime, timedelta

import pytest

from central.domain import allowances as rules
from central.domain import orders
from central.domain.stock import StockLevel
from invwire.errors.central import (
    GrantNotYours,
    InsufficientStock,
    InvalidInput,
    InvalidQuantity,
    ReplayPending,
    StatementMismatch,
)
from invwire.orders import Line

NOW = datetime(2026, 12, 1, 10, 0)


def make_grant(remaining=3, **overrides):
    fields = {
        "id": "g-1",
        "store_id": "S1",
        "sku": "MILK",
        "remaining": remaining,
        "expires_at": NOW + timedelta(hours=1),
        "version": 1,
        **overrides,
    }
    return rules.Grant(**fields)


def test_a_grant_moves_units_from_available_to_held_with_one_event():
    level, event = rules.set_aside(StockLevel("MILK", 10, 4, held=2), 3)

    assert level == StockLevel("MILK", 7, 5, held=5)
    assert (event.quantity, event.delta, event.reason, event.stock_version) == (
        7,
        -3,
        "allowance.granted",
        5,
    )


def test_a_grant_beyond_what_is_available_takes_nothing():
    with pytest.raises(InsufficientStock) as refused:
        rules.set_aside(StockLevel("MILK", 2, 4, held=8), 3)
    assert refused.value.details["lines"] == [{"sku": "MILK", "requested": 3, "available": 2}]


def test_a_return_gives_held_units_back_to_everyone():
    level, event = rules.give_back(StockLevel("MILK", 1, 4, held=5), 2)

    assert level == StockLevel("MILK", 3, 5, held=3)
    assert (event.delta, event.reason, event.quantity) == (2, "allowance.returned", 3)


def test_more_units_than_held_are_never_released():
    with pytest.raises(RuntimeError):
        rules.give_back(StockLevel("MILK", 1, 4, held=1), 2)


def test_an_order_within_available_stock_leaves_its_grants_alone():
    levels = {"MILK": StockLevel("MILK", 5, 1, held=3)}
    taken = rules.take(levels, [Line("MILK", 4)], "o-1", {"MILK": [make_grant()]})

    assert taken.grants == []
    assert taken.after["MILK"] == StockLevel("MILK", 1, 2, held=3)
    assert taken.changes == orders.reserve(levels, [Line("MILK", 4)], "o-1")


def test_an_order_takes_available_first_then_its_own_grant():
    levels = {"MILK": StockLevel("MILK", 2, 1, held=3)}
    taken = rules.take(levels, [Line("MILK", 4)], "o-1", {"MILK": [make_grant(3)]})

    used, order = (event for _, event in taken.changes)
    assert (used.delta, used.reason, used.quantity, used.order_id) == (
        2,
        "allowance.used",
        4,
        "o-1",
    )
    assert (order.delta, order.reason, order.quantity) == (-4, "order", 0)
    assert taken.after["MILK"] == StockLevel("MILK", 0, 3, held=1)
    assert [(g.id, g.remaining, g.version) for g in taken.grants] == [("g-1", 1, 2)]


def test_an_order_draws_on_the_grant_that_expires_first():
    soon = make_grant(2, id="g-soon", expires_at=NOW + timedelta(minutes=5))
    later = make_grant(5, id="g-later")
    grants = rules.usable([later, soon], NOW)
    levels = {"MILK": StockLevel("MILK", 0, 1, held=7)}

    taken = rules.take(levels, [Line("MILK", 3)], "o-1", {"MILK": grants})

    assert [(g.id, g.remaining) for g in taken.grants] == [("g-soon", 0), ("g-later", 4)]


def test_an_order_beyond_available_and_its_grants_takes_nothing_and_says_what_it_could():
    levels = {"MILK": StockLevel("MILK", 1, 1, held=9)}
    with pytest.raises(InsufficientStock) as refused:
        rules.take(levels, [Line("MILK", 5)], "o-1", {"MILK": [make_grant(3)]})
    assert refused.value.details["lines"] == [{"sku": "MILK", "requested": 5, "available": 4}]


def test_another_stores_held_units_are_not_offered():
    levels = {"MILK": StockLevel("MILK", 1, 1, held=9)}
    with pytest.raises(InsufficientStock):
        rules.take(levels, [Line("MILK", 2)], "o-1", {})


def test_expired_and_empty_grants_are_not_drawn_on():
    expired = make_grant(3, id="old", expires_at=NOW)
    empty = make_grant(0, id="empty")
    assert rules.usable([expired, empty], NOW) == []


@pytest.mark.parametrize("units", [0, -1, 10**9 + 1, True, "3", 1.5])
def test_bad_units_are_refused(units):
    with pytest.raises(InvalidQuantity):
        rules.valid_units(units)


@pytest.mark.parametrize("ttl", [59, 30 * 24 * 3600 + 1, None, "60", False])
def test_a_ttl_out_of_range_is_refused(ttl):
    with pytest.raises(InvalidInput) as refused:
        rules.expiry(NOW, ttl)
    assert refused.value.details == {"field": "ttl_s"}


def test_a_grant_expires_its_ttl_after_now():
    assert rules.expiry(NOW, 600) == NOW + timedelta(minutes=10)


def test_a_named_line_takes_its_grant_whatever_its_expiry():
    grant = make_grant(remaining=4, expires_at=NOW - timedelta(days=1))
    levels = {"MILK": StockLevel("MILK", 0, 3, held=4)}

    taken = rules.book(levels, [Line("MILK", 3, "g-1")], "o-1", {}, {"g-1": grant})

    assert taken.after["MILK"] == StockLevel("MILK", 0, 5, held=1)
    assert [g.remaining for g in taken.grants] == [1]
    assert taken.uncovered == []


def test_a_named_line_beyond_its_grant_takes_the_rest_from_available_stock():
    levels = {"MILK": StockLevel("MILK", 5, 3, held=2)}

    taken = rules.book(levels, [Line("MILK", 4, "g-1")], "o-1", {}, {"g-1": make_grant(2)})

    assert taken.after["MILK"] == StockLevel("MILK", 3, 5, held=0)
    assert taken.uncovered == []


def test_a_named_line_nothing_covers_is_recorded_and_takes_nothing_below_zero():
    levels = {"MILK": StockLevel("MILK", 1, 3, held=2)}

    taken = rules.book(levels, [Line("MILK", 5, "g-1")], "o-1", {}, {"g-1": make_grant(2)})

    assert taken.after["MILK"] == StockLevel("MILK", 1, 5, held=0)
    assert taken.uncovered == [{"sku": "MILK", "grant_id": "g-1", "quantity": 5, "uncovered": 3}]


def test_a_closed_grant_covers_nothing_and_no_stock_moves_when_none_is_available():
    levels = {"MILK": StockLevel("MILK", 0, 3, held=0)}

    taken = rules.book(levels, [Line("MILK", 2, "g-1")], "o-1", {}, {"g-1": make_grant(0)})

    assert (taken.changes, taken.after["MILK"]) == ([], levels["MILK"])
    assert taken.uncovered[0]["uncovered"] == 2


def test_the_other_lines_of_a_replayed_order_are_taken_as_any_order_is():
    levels = {"MILK": StockLevel("MILK", 0, 1, held=1), "TEA": StockLevel("TEA", 1, 1)}
    lines = [Line("MILK", 1, "g-1"), Line("TEA", 2)]

    with pytest.raises(InsufficientStock):
        rules.book(levels, lines, "o-1", {}, {"g-1": make_grant(1)})


def test_a_grant_for_another_sku_is_not_the_lines_to_name():
    levels = {"TEA": StockLevel("TEA", 5, 1, held=1)}

    with pytest.raises(GrantNotYours):
        rules.book(levels, [Line("TEA", 1, "g-1")], "o-1", {}, {"g-1": make_grant(1)})


def test_a_statement_equal_to_what_was_booked_passes():
    rules.check_statement("g-1", booked=3, sold=3)


@pytest.mark.parametrize(("sold", "error"), [(4, ReplayPending), (2, StatementMismatch)])
def test_a_statement_other_than_what_was_booked_is_refused(sold, error):
    with pytest.raises(error):
        rules.check_statement("g-1", booked=3, sold=sold)


@pytest.mark.parametrize("raw", [-1, True, "3", 1.0, 1_000_000_001])
def test_sold_is_a_whole_number_of_units(raw):
    with pytest.raises(InvalidInput):
        rules.valid_sold(raw)


def test_a_write_off_gives_units_back_under_its_own_reason():
    level, event = rules.write_off(StockLevel("MILK", 1, 3, held=4), 4)

    assert level == StockLevel("MILK", 5, 4, held=0)
    assert (event.reason, event.delta) == ("allowance.written_off", 4)


def test_a_cancel_of_an_uncovered_order_gives_back_only_what_it_took():
    lines = [Line("MILK", 5), Line("TEA", 2), Line("SALT", 1)]

    taken = rules.taken_lines(lines, {"MILK": 3, "SALT": 1})

    assert taken == [Line("MILK", 2), Line("TEA", 2)]


def test_a_live_grant_is_settling_once_its_expiry_and_the_margin_have_passed():
    expires = NOW + timedelta(seconds=60)

    assert rules.state_at("live", expires, NOW + timedelta(seconds=359), 300) == "live"
    assert rules.state_at("live", expires, NOW + timedelta(seconds=360), 300) == "settling"
    assert rules.state_at("closed", expires, NOW + timedelta(days=1), 300) == "closed"
