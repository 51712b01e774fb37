from decimal import Decimal

import pytest

from central.domain import catalog
from central.domain.stock import StockLevel, valid_delta, valid_quantity
from invwire.errors.central import (
    InvalidName,
    InvalidPrice,
    InvalidQuantity,
    InvalidSku,
    NameTooLong,
    NegativeStock,
)
from invwire.events import StockChanged


def test_adjusting_stock_bumps_the_version_and_records_the_change():
    level, event = StockLevel("A-1", 10, 4).adjusted(-3, "adjust")
    assert level == StockLevel("A-1", 7, 5)
    assert event == StockChanged("A-1", 7, -3, "adjust", 5, None)


def test_stock_never_goes_negative():
    with pytest.raises(NegativeStock) as err:
        StockLevel("A-1", 2, 1).adjusted(-3, "adjust")
    assert err.value.details == {"sku": "A-1", "available": 2, "delta": -3}


def test_setting_the_same_quantity_changes_nothing():
    level = StockLevel("A-1", 5, 3)
    assert level.set_to(5, "set") == (level, None)


def test_setting_a_new_quantity_reports_the_delta():
    level, event = StockLevel("A-1", 5, 3).set_to(9, "import")
    assert level.version == 4
    assert event is not None and (event.delta, event.quantity, event.reason) == (4, 9, "import")


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None, 10**10])
def test_bad_quantities_are_refused(bad):
    with pytest.raises(InvalidQuantity):
        valid_quantity(bad)


@pytest.mark.parametrize("bad", [0, True, 2.0, 10**10])
def test_bad_deltas_are_refused(bad):
    with pytest.raises(InvalidQuantity):
        valid_delta(bad)


@pytest.mark.parametrize("sku", ["A", "MILK-1L", "X.Y_Z-9", "9" * 64])
def test_valid_skus(sku):
    assert catalog.valid_sku(sku) == sku


@pytest.mark.parametrize("sku", ["", "milk", "-A", "A B", "A" * 65, "Á", None, 12])
def test_invalid_skus_get_sku_invalid(sku):
    with pytest.raises(InvalidSku) as err:
        catalog.valid_sku(sku)
    assert err.value.code == "sku.invalid"


@pytest.mark.parametrize(("raw", "expected"), [("1.25", "1.25"), (3, "3.00"), ("0", "0.00")])
def test_prices_are_decimals_with_two_places(raw, expected):
    assert catalog.valid_price(raw) == Decimal(expected)


@pytest.mark.parametrize("raw", ["-0.01", "1.234", "abc", "NaN", "Infinity", None, True, "1e12"])
def test_bad_prices_get_price_invalid(raw):
    with pytest.raises(InvalidPrice):
        catalog.valid_price(raw)


def test_names_are_trimmed_and_bounded():
    assert catalog.valid_name("  Milk ") == "Milk"
    with pytest.raises(InvalidName):
        catalog.valid_name("   ")
    with pytest.raises(NameTooLong) as err:
        catalog.valid_name("x" * 201)
    assert err.value.code == "name.too_long"
