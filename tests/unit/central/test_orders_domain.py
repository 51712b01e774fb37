import pytest

from central.domain import orders
from central.domain.stock import StockLevel
from invwire.errors.central import (
    DuplicateLine,
    IdempotencyKeyRequired,
    InsufficientStock,
    InvalidOrder,
    InvalidQuantity,
    InvalidSku,
)


def levels(**quantities):
    return {sku: StockLevel(sku, q, 3) for sku, q in quantities.items()}


def test_lines_are_sorted_by_sku_so_locks_are_taken_in_one_order():
    lines = orders.valid_lines([{"sku": "B", "quantity": 1}, {"sku": "A", "quantity": 2}])
    assert [line.sku for line in lines] == ["A", "B"]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ([], InvalidOrder),
        ("A", InvalidOrder),
        ([{"sku": "A", "quantity": 0}], InvalidQuantity),
        ([{"sku": "A", "quantity": -1}], InvalidQuantity),
        ([{"sku": "A", "quantity": 1.5}], InvalidQuantity),
        ([{"sku": "A", "quantity": "2"}], InvalidQuantity),
        ([{"sku": "A", "quantity": 10**9}], InvalidQuantity),
        ([{"sku": "a b", "quantity": 1}], InvalidSku),
        ([{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 2}], DuplicateLine),
        ([{"sku": f"S{i}", "quantity": 1} for i in range(101)], InvalidOrder),
        (["A"], InvalidOrder),
    ],
)
def test_bad_lines_are_refused_with_a_clear_error(raw, error):
    with pytest.raises(error):
        orders.valid_lines(raw)


@pytest.mark.parametrize("key", [None, "", "x" * 129, "has space", "tab\t"])
def test_bad_idempotency_keys_are_refused(key):
    with pytest.raises(IdempotencyKeyRequired):
        orders.valid_key(key)


def test_fingerprint_ignores_line_order_but_not_quantities():
    a = orders.valid_lines([{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 2}])
    b = orders.valid_lines([{"sku": "B", "quantity": 2}, {"sku": "A", "quantity": 1}])
    c = orders.valid_lines([{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 3}])
    assert orders.fingerprint(a) == orders.fingerprint(b) != orders.fingerprint(c)


def test_reservation_takes_every_line():
    lines = orders.valid_lines([{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 5}])
    changes = orders.reserve(levels(A=2, B=9), lines, "o-1")
    assert [(lvl.quantity, lvl.version) for lvl, _ in changes] == [(0, 4), (4, 4)]
    assert {(e.reason, e.order_id, e.delta) for _, e in changes} == {
        ("order", "o-1", -2),
        ("order", "o-1", -5),
    }


def test_reservation_refuses_all_and_names_every_short_line():
    lines = orders.valid_lines(
        [{"sku": "A", "quantity": 3}, {"sku": "B", "quantity": 1}, {"sku": "C", "quantity": 7}]
    )
    with pytest.raises(InsufficientStock) as err:
        orders.reserve(levels(A=2, B=1, C=0), lines, "o-1")
    assert err.value.details["lines"] == [
        {"sku": "A", "requested": 3, "available": 2},
        {"sku": "C", "requested": 7, "available": 0},
    ]


def test_release_gives_the_stock_back():
    lines = orders.valid_lines([{"sku": "A", "quantity": 2}])
    [(level, event)] = orders.release(levels(A=1), lines, "o-1")
    assert (level.quantity, event.delta, event.reason) == (3, 2, "cancel")
