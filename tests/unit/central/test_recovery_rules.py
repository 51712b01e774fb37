"""The shape of sales a store sends back after a restore, and the window a restore can have
lost them in (central.domain.recovery): pure rules, no database."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from central.domain.recovery import RecoveryWindow, held_sales
from invwire.errors.central import InvalidInput, OutsideRecoveryWindow
from invwire.orders import Line, fingerprint

ARABIC_ONE = "\u0661"  # a digit to Python's `\d`, not a price
SALE_ID = "0b6f3c4e-5d7a-4c8e-9f10-2a3b4c5d6e7f"


def make_sale(**overrides: Any) -> dict[str, Any]:
    sale = {
        "id": SALE_ID,
        "idempotency_key": "sale-1",
        "created_at": "2026-11-29T12:00:00.5+02:00",
        "cancelled_at": None,
        "lines": [
            {"sku": "MILK", "quantity": 2, "unit_price": "1.75"},
            {"sku": "BREAD", "quantity": 1, "unit_price": "0"},
        ],
    }
    return {**sale, **overrides}


def test_a_sale_is_read_with_its_time_in_utc_and_its_lines_in_sku_order():
    [sale] = held_sales([make_sale(cancelled_at="2026-11-29T11:00:00Z")])

    assert sale.created_at == datetime(2026, 11, 29, 10, 0, 0, 500000)
    assert sale.cancelled_at == datetime(2026, 11, 29, 11, 0, 0)
    assert sale.lines == [Line("BREAD", 1), Line("MILK", 2)]
    assert sale.unit_prices == {"MILK": Decimal("1.75"), "BREAD": Decimal("0")}
    assert sale.fingerprint == fingerprint([Line("BREAD", 1), Line("MILK", 2)])


def test_cancelled_at_may_be_left_out():
    sale = make_sale()
    del sale["cancelled_at"]

    assert held_sales([sale])[0].cancelled_at is None


@pytest.mark.parametrize(
    ("change", "field", "cause"),
    [
        ({"id": SALE_ID.replace("-", "")}, "id", None),
        ({"id": 7}, "id", None),
        ({"idempotency_key": ""}, "idempotency_key", None),
        ({"created_at": "2026-11-29"}, "created_at", None),
        ({"created_at": "2026-11-29T10:00:00+00:00" + " " * 20}, "created_at", None),
        ({"cancelled_at": 0}, "cancelled_at", None),
        ({"lines": "MILK"}, "lines", "order.invalid"),
        ({"lines": [{"sku": "milk", "quantity": 1, "unit_price": "1"}]}, "lines", "sku.invalid"),
        (
            {"lines": [{"sku": "A", "quantity": 1, "unit_price": "1"}] * 2},
            "lines",
            "order.duplicate_line",
        ),
        ({"lines": [{"sku": "A", "quantity": 1}]}, "lines.0.unit_price", None),
        ({"lines": [{"sku": "A", "quantity": 1, "unit_price": "-1"}]}, "lines.0.unit_price", None),
        (
            {"lines": [{"sku": "A", "quantity": 1, "unit_price": ARABIC_ONE}]},
            "lines.0.unit_price",
            None,
        ),
        ({"lines": [{"sku": "A", "quantity": 1, "unit_price": " 1"}]}, "lines.0.unit_price", None),
    ],
)
def test_a_malformed_sale_is_named_by_field_and_index(change, field, cause):
    with pytest.raises(InvalidInput) as refused:
        held_sales([make_sale(), make_sale(**change)])

    assert refused.value.code == "request.invalid"
    assert (refused.value.details["field"], refused.value.details["index"]) == (field, 1)
    assert refused.value.details.get("cause") == cause


def test_a_missing_field_is_named():
    sale = make_sale()
    del sale["created_at"]

    with pytest.raises(InvalidInput) as refused:
        held_sales([sale])

    assert refused.value.details == {"field": "created_at", "index": 0}


@pytest.mark.parametrize("raw", [[], {"orders": []}, [make_sale()] * 101, None])
def test_a_batch_is_a_list_of_one_to_a_hundred(raw):
    with pytest.raises(InvalidInput) as refused:
        held_sales(raw)

    assert refused.value.details == {"field": "orders"}


RESTORED_AT = datetime(2026, 11, 29, 12, 0)
BACKUP_AT = datetime(2026, 11, 29, 8, 0)


def test_after_a_restore_the_window_opens_an_hour_before_the_backup_and_ends_at_the_restore():
    window = RecoveryWindow.of_epoch(RESTORED_AT, "restore", BACKUP_AT)

    window.check(BACKUP_AT - timedelta(hours=1))
    window.check(RESTORED_AT)
    for outside in (
        BACKUP_AT - timedelta(hours=1, microseconds=1),
        RESTORED_AT + timedelta.resolution,
    ):
        with pytest.raises(OutsideRecoveryWindow) as refused:
            window.check(outside)
        assert refused.value.details["earliest"] == "2026-11-29T07:00:00+00:00"
        assert refused.value.details["latest"] == "2026-11-29T12:00:00+00:00"


def test_a_confirmed_restore_knows_no_backup_time_so_only_the_end_bounds_it():
    window = RecoveryWindow.of_epoch(RESTORED_AT, "confirmed", None)

    window.check(datetime(2000, 1, 1))
    with pytest.raises(OutsideRecoveryWindow):
        window.check(RESTORED_AT + timedelta(seconds=1))
