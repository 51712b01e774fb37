import json
from dataclasses import fields
from datetime import UTC, datetime

import pytest

from invwire import events
from invwire.events import (
    CategoryChanged,
    OrderUpdated,
    ProductChanged,
    StockChanged,
    encode,
    parse_record,
)


def test_stock_event_envelope_carries_the_contract_fields():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    env = encode(StockChanged("A-1", 7, -3, "order", 5, "o-1"), at)
    value = json.loads(env.value)
    assert (env.topic, env.key) == ("inventory-updated", "A-1")
    assert value["type"] == "stock.changed"
    assert value["schema"] == 1
    assert value["occurred_at"] == "2026-01-02T03:04:05+00:00"
    assert value["event_id"] == env.event_id
    assert value["data"] == {
        "sku": "A-1",
        "quantity": 7,
        "delta": -3,
        "reason": "order",
        "order_id": "o-1",
        "stock_version": 5,
    }


def test_catalog_events_are_keyed_by_entity():
    category = CategoryChanged(3, "Dairy", 1, created=True)
    product = ProductChanged("M-1", "Milk", "1.25", 3, "", True, 2)
    assert (category.topic, category.key, category.type) == (
        "new-category",
        "3",
        "category.created",
    )
    assert (product.topic, product.key, product.type) == ("new-product", "M-1", "product.updated")
    assert "created" not in product.data()


def test_every_envelope_gets_its_own_event_id():
    at = datetime.now(UTC)
    event = StockChanged("A-1", 1, 1, "adjust", 1)
    assert encode(event, at).event_id != encode(event, at).event_id


EVERY_EVENT_TYPE = [
    CategoryChanged(3, "Dairy", 1, created=True),
    CategoryChanged(3, "Dairy & Eggs", 2),
    ProductChanged("M-1", "Milk ½ L", "1.25", 3, "fresh", True, 2, created=True),
    ProductChanged("M-1", "Milk", "0.00", 3, "", False, 3),
    StockChanged("A-1", 7, -3, "order", 5, "o-1"),
    StockChanged("A-1", 0, 7, "cancel", 2**63 - 1),
    OrderUpdated("5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13", "store-1", "cancelled", 2, None),
    OrderUpdated(
        "5F0C9A1E3B7D4E8A9C210D6F4B2A7E13", "s-2", "confirmed", 1, "2026-01-02T03:04:05+00:00"
    ),
]


@pytest.mark.parametrize("event", EVERY_EVENT_TYPE, ids=lambda e: e.type)
def test_what_central_encodes_the_agent_parses_back_to_the_same_event(event):
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    env = encode(event, at)

    received = parse_record(env.topic, env.key.encode(), env.value.encode())

    assert received.event == event
    assert (received.event_id, received.occurred_at) == (env.event_id, at)


def test_the_round_trip_covers_every_event_type_the_parser_knows():
    assert {(e.topic, e.type) for e in EVERY_EVENT_TYPE} == set(events._PARSERS)


@pytest.mark.parametrize(
    "event",
    [
        StockChanged("MILK-1L", 9, -1, "order", 4, "o-1"),
        StockChanged("MILK-1L", 10, 1, "restock", 5),
        ProductChanged("MILK-1L", "Milk", "1.25", 3, "", True, 2, created=True),
    ],
)
def test_an_events_data_is_each_of_its_fields_but_created(event):
    expected = {f.name: getattr(event, f.name) for f in fields(event) if f.name != "created"}
    assert event.data() == expected
    assert list(event.data()) == list(expected)  # in the order the fields are declared
