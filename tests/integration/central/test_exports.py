"""The reads exports page through: the stock ledger across SKUs (each store sees only its own
orders' movements) and the catalog with its categories' names, by cursor, with bad filters
refused as 422, never a 500."""

import uuid

import pytest

from tests.support.central_harness import running_central

API = "/api/v1"


def seed(h):
    """Two categories, three products with stock, two stores each with a sale."""
    admin = h.admin()
    rows = [
        {"line": 2, "kind": "category", "name": "Dairy"},
        {"line": 3, "kind": "category", "name": "Bakery"},
        {"line": 4, "kind": "product", "sku": "MILK", "name": "Milk", "price": "1.25",
         "category": "Dairy", "quantity": 10},
        {"line": 5, "kind": "product", "sku": "BREAD", "name": "Bread", "price": "2.00",
         "category": "Bakery", "quantity": 5, "description": "Rye", "active": False},
        {"line": 6, "kind": "product", "sku": "CHEESE", "name": "Cheese", "price": "4.50",
         "category": "Dairy"},
    ]  # fmt: skip
    h.call("POST", f"{API}/import", admin, json={"rows": rows})
    keys = {
        store: h.call("POST", f"{API}/stores", admin, json={"id": store, "name": store})["api_key"]
        for store in ("store-a", "store-b")
    }
    h.call("POST", f"{API}/stock/CHEESE/adjustments", admin, json={"delta": 3, "note": "found"})
    orders = {store: buy(h, keys[store], "MILK", 2 if store == "store-a" else 1) for store in keys}
    return admin, keys, orders


def buy(h, key, sku, quantity):
    headers = {"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex}
    return h.call(
        "POST", f"{API}/orders", headers, json={"lines": [{"sku": sku, "quantity": quantity}]}
    )


def every_page(h, headers, path, **params):
    items, after, pages = [], None, 0
    while True:
        query = {**params, **({"after": after} if after is not None else {})}
        page = h.call("GET", path, headers, params=query)
        items += page["items"]
        pages += 1
        after = page["next_after"]
        if after is None:
            return items, pages


def test_the_ledger_of_every_sku_pages_oldest_first_and_names_each_orders_store(database_url):
    with running_central(database_url) as h:
        admin, _, orders = seed(h)
        items, pages = every_page(h, admin, f"{API}/movements", limit=2)

    assert [(m["sku"], m["reason"], m["delta"]) for m in items] == [
        ("MILK", "import", 10),
        ("BREAD", "import", 5),
        ("CHEESE", "adjust", 3),
        ("MILK", "order", -2),
        ("MILK", "order", -1),
    ]
    assert pages == 3
    assert [m["id"] for m in items] == sorted(m["id"] for m in items)
    assert [m["store_id"] for m in items] == [None, None, None, "store-a", "store-b"]
    assert items[3]["order_id"] == orders["store-a"]["id"]
    assert (items[2]["note"], items[2]["actor"], items[3]["quantity"]) == ("found", "user:admin", 8)


def test_store_and_since_narrow_the_ledger(database_url):
    with running_central(database_url) as h:
        admin, _, _ = seed(h)
        everything, _ = every_page(h, admin, f"{API}/movements")
        since = everything[3]["at"]
        of_a, _ = every_page(h, admin, f"{API}/movements", store="store-a")
        recent, _ = every_page(h, admin, f"{API}/movements", since=since)
        recent_of_b, _ = every_page(h, admin, f"{API}/movements", since=since, store="store-b")
        nobody, _ = every_page(h, admin, f"{API}/movements", store="no-such-store")

    assert [m["store_id"] for m in of_a] == ["store-a"]
    assert recent == [m for m in everything if m["at"] >= since]
    assert [m["store_id"] for m in recent] == ["store-a", "store-b"]
    assert [m["store_id"] for m in recent_of_b] == ["store-b"]
    assert nobody == []


def test_a_store_key_sees_only_its_own_stores_movements(database_url):
    with running_central(database_url) as h:
        admin, keys, _ = seed(h)
        floating = {"username": "floating", "password": "staff-password-1", "role": "staff"}
        h.call("POST", f"{API}/users", admin, json=floating)
        own, _ = every_page(h, {"X-API-Key": keys["store-b"]}, f"{API}/movements")
        named, _ = every_page(
            h, {"X-API-Key": keys["store-b"]}, f"{API}/movements", store="store-b"
        )
        other = h.client.get(
            f"{API}/movements", params={"store": "store-a"}, headers={"X-API-Key": keys["store-b"]}
        )
        unbound = h.client.get(
            f"{API}/movements", headers=h.as_user("floating", "staff-password-1")
        )

    assert [(m["store_id"], m["delta"]) for m in own] == [("store-b", -1)]
    assert named == own
    assert (other.status_code, other.json()["error"]["code"]) == (403, "auth.forbidden")
    assert (unbound.status_code, unbound.json()["error"]["code"]) == (403, "auth.forbidden")


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"since": "2026-13-45"},
        {"since": "99999-01-01T00:00:00"},
        {"after": -1},
        {"after": 2**64},
        {"limit": 0},
        {"limit": 1001},
        {"store": "s" * 65},
    ],
)
def test_bad_ledger_filters_are_refused_with_422(database_url, params):
    with running_central(database_url) as h:
        response = h.client.get(f"{API}/movements", params=params, headers=h.admin())

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "request.invalid"


def test_the_catalog_pages_by_sku_with_category_names_and_stock(database_url):
    with running_central(database_url) as h:
        admin, _, _ = seed(h)
        items, pages = every_page(h, admin, f"{API}/exports/products", limit=2)
        too_big = h.client.get(f"{API}/exports/products", params={"limit": 1001}, headers=admin)
        long_after = h.client.get(
            f"{API}/exports/products", params={"after": "A" * 65}, headers=admin
        )

    assert [(p["sku"], p["category"], p["quantity"]) for p in items] == [
        ("BREAD", "Bakery", 5),
        ("CHEESE", "Dairy", 3),
        ("MILK", "Dairy", 7),
    ]
    assert pages == 2
    assert (items[0]["price"], items[0]["description"], items[0]["active"]) == (
        "2.00",
        "Rye",
        False,
    )
    assert too_big.status_code == long_after.status_code == 422
