"""Every committed change reaches Kafka exactly as committed; refused changes emit nothing."""

from collections import defaultdict

from central.models import Outbox
from harness.waiting import eventually
from invwire.topics import TOPIC_CATEGORY, TOPIC_INVENTORY, TOPIC_PRODUCT
from tests.support.central_harness import read_events, running_central

TOPICS = [TOPIC_CATEGORY, TOPIC_PRODUCT, TOPIC_INVENTORY]


def by_key(events):
    grouped = defaultdict(list)
    for topic, key, value in events:
        grouped[(topic, key)].append(value)
    return grouped


def drained(central):
    return central.relay.backlog() == 0


def test_each_change_yields_exactly_its_events_in_order(database_url, kafka_cluster, topic_prefix):
    with running_central(database_url, kafka_cluster, topic_prefix) as h:
        admin = h.admin()
        cat = h.call("POST", "/api/v1/categories", admin, json={"name": "Dairy"})
        for sku in ("MILK-1L", "EGGS-12"):
            h.call(
                "POST",
                "/api/v1/products",
                admin,
                json={"sku": sku, "name": sku, "price": "2.50", "category_id": cat["id"]},
            )
        h.call("PUT", "/api/v1/stock/MILK-1L", admin, json={"quantity": 10})
        h.call("POST", "/api/v1/stock/MILK-1L/adjustments", admin, json={"delta": -3})
        refused = h.client.post(
            "/api/v1/stock/MILK-1L/adjustments", headers=admin, json={"delta": -100}
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "stock.negative"
        h.call("PUT", "/api/v1/stock/EGGS-12", admin, json={"quantity": 4})
        h.call("POST", "/api/v1/stock/MILK-1L/adjustments", admin, json={"delta": 5})
        h.call("PATCH", "/api/v1/products/MILK-1L", admin, json={"price": "2.75"})
        eventually(lambda: drained(h.central), what="outbox drained")

    events = read_events(kafka_cluster, [topic_prefix + t for t in TOPICS], expected=8)
    assert len(events) == 8
    keyed = by_key(events)
    milk = keyed[(topic_prefix + "inventory-updated", "MILK-1L")]
    assert [
        (e["data"]["quantity"], e["data"]["delta"], e["data"]["stock_version"]) for e in milk
    ] == [(10, 10, 1), (7, -3, 2), (12, 5, 3)]
    assert [e["data"]["reason"] for e in milk] == ["set", "adjust", "adjust"]
    assert [
        e["data"]["stock_version"] for e in keyed[(topic_prefix + "inventory-updated", "EGGS-12")]
    ] == [1]
    product = keyed[(topic_prefix + "new-product", "MILK-1L")]
    assert [(e["type"], e["data"]["price"], e["data"]["version"]) for e in product] == [
        ("product.created", "2.50", 1),
        ("product.updated", "2.75", 2),
    ]
    assert keyed[(topic_prefix + "new-category", str(cat["id"]))][0]["data"]["name"] == "Dairy"
    for _, _, value in events:
        assert set(value) == {"event_id", "type", "schema", "occurred_at", "data"}
        assert value["schema"] == 1 and value["occurred_at"].endswith("+00:00")


def test_a_rolled_back_batch_publishes_nothing(database_url, kafka_cluster, topic_prefix):
    with running_central(database_url, kafka_cluster, topic_prefix) as h:
        admin = h.admin()
        rows = [
            {"line": 2, "kind": "category", "name": "Bakery"},
            {
                "line": 3,
                "kind": "product",
                "sku": "BREAD",
                "name": "Bread",
                "price": "1",
                "category": "Bakery",
                "quantity": 5,
            },
            {
                "line": 4,
                "kind": "product",
                "sku": "CAKE",
                "name": "Cake",
                "price": "3",
                "category": "No such category",
            },
        ]
        response = h.client.post("/api/v1/import", headers=admin, json={"rows": rows})
        assert response.status_code == 422
        assert response.json()["error"]["details"]["errors"][0]["line"] == 4
        with h.central.db.connection_context():
            assert Outbox.select().count() == 0
        h.call("POST", "/api/v1/categories", admin, json={"name": "Marker"})
        eventually(lambda: drained(h.central), what="outbox drained")

    events = read_events(kafka_cluster, [topic_prefix + t for t in TOPICS], expected=1)
    assert [(e[2]["type"], e[2]["data"]["name"]) for e in events] == [
        ("category.created", "Marker")
    ]
