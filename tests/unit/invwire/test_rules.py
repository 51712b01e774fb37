import hashlib

import pytest

from invwire.errors import (
    DuplicateLine,
    InsufficientStock,
    InvalidOrder,
    InvalidQuantity,
    InvalidSku,
)
from invwire.orders import Line, fingerprint, require_stock, valid_lines
from invwire.rules import (
    MAX_LINE_QUANTITY,
    MAX_LINES,
    is_idempotency_key,
    is_request_id,
    is_sku,
    is_store_id,
)


@pytest.mark.parametrize("sku", ["MILK-1L", "A", "0.9_X", "A" * 64])
def test_valid_skus(sku):
    assert is_sku(sku)


@pytest.mark.parametrize("sku", ["", "milk", "-A", "A" * 65, "MILK\n", "MILK 1", None, 7])
def test_invalid_skus(sku):
    assert not is_sku(sku)


def test_patterns_refuse_a_trailing_newline_that_dollar_alone_would_accept():
    assert not is_idempotency_key("key\n")
    assert not is_request_id("req-1\n")
    assert not is_store_id("store-1\n")


def test_idempotency_key_is_printable_ascii_without_spaces_up_to_128():
    assert is_idempotency_key("a" * 128)
    assert not is_idempotency_key("a" * 129)
    assert not is_idempotency_key("with space")


def test_request_id_and_store_id_patterns():
    assert is_request_id("nightly-check.42")
    assert not is_request_id("not usable: spaces")
    assert is_store_id("store-042")
    assert not is_store_id("Store-042")


def test_lines_are_sorted_by_sku_so_equal_orders_fingerprint_alike():
    one = valid_lines([{"sku": "B", "quantity": 1}, {"sku": "A", "quantity": 2}])
    two = valid_lines([{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}])

    assert one == [Line("A", 2), Line("B", 1)]
    assert fingerprint(one) == fingerprint(two)
    assert fingerprint(one) != fingerprint([Line("A", 3), Line("B", 1)])


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ([], InvalidOrder),
        ("lines", InvalidOrder),
        ([{"sku": "A", "quantity": 1}] * 2, DuplicateLine),
        ([{"sku": f"S{n}", "quantity": 1} for n in range(MAX_LINES + 1)], InvalidOrder),
        ([{"sku": "A", "quantity": 0}], InvalidQuantity),
        ([{"sku": "A", "quantity": MAX_LINE_QUANTITY + 1}], InvalidQuantity),
        ([{"sku": "A", "quantity": True}], InvalidQuantity),
        ([{"sku": "a", "quantity": 1}], InvalidSku),
        (["A"], InvalidOrder),
        ([{"sku": "A", "quantity": 1, "grant_id": "not-a-uuid"}], InvalidOrder),
        ([{"sku": "A", "quantity": 1, "grant_id": 7}], InvalidOrder),
    ],
)
def test_invalid_lines_raise_the_contract_error(raw, error):
    with pytest.raises(error):
        valid_lines(raw)


GRANT = "5f0c9a1e-0000-4000-8000-000000000001"


def test_a_line_may_name_the_grant_it_was_sold_under_and_its_fingerprint_says_so():
    (named,) = valid_lines([{"sku": "A", "quantity": 2, "grant_id": GRANT.upper()}])

    assert named == Line("A", 2, GRANT)
    assert named.to_wire() == {"sku": "A", "quantity": 2, "grant_id": GRANT}
    assert Line("A", 2).to_wire() == {"sku": "A", "quantity": 2}
    assert fingerprint([named]) != fingerprint([Line("A", 2)])


def test_a_line_without_a_grant_keeps_the_fingerprint_it_always_had():
    expected = hashlib.sha256(b'[["A",2]]').hexdigest()
    assert fingerprint(valid_lines([{"sku": "A", "quantity": 2, "grant_id": None}])) == expected


def test_require_stock_names_every_short_line():
    lines = [Line("A", 2), Line("B", 5), Line("C", 1)]

    with pytest.raises(InsufficientStock) as caught:
        require_stock({"A": 2, "B": 4, "C": 0}, lines)

    assert caught.value.details["lines"] == [
        {"sku": "B", "requested": 5, "available": 4},
        {"sku": "C", "requested": 1, "available": 0},
    ]
    require_stock({"A": 2, "B": 5, "C": 1}, lines)
