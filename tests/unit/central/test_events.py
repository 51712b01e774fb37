import json
from datetime import UTC, datetime

from central.domain.events import CategoryChanged, ProductChanged, StockChanged, envelope


def test_stock_event_envelope_carries_the_contract_fields():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    env = envelope(StockChanged("A-1", 7, -3, "order", 5, "o-1"), at)
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
    assert envelope(event, at).event_id != envelope(event, at).event_id
