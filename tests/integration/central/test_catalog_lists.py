"""Central's catalog lists page by cursor and filter by category, text and stock; categories
can be renamed, and the rename reaches the replicas as an event."""

from central.models import Outbox
from tests.support.central_harness import running_central

API = "/api/v1"


def seed(h, headers):
    rows = [
        {"line": 2, "kind": "category", "name": "Dairy"},
        {"line": 3, "kind": "category", "name": "Bakery"},
    ]
    for i in range(25):
        rows.append(
            {
                "line": 4 + i,
                "kind": "product",
                "sku": f"P-{i:03d}",
                "name": f"{'Milk' if i % 2 else 'Bread'} no. {i}",
                "price": "1.00",
                "category": "Dairy" if i % 2 else "Bakery",
                "quantity": i,
            }
        )
    h.call("POST", f"{API}/import", headers, json={"rows": rows})


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


def test_products_page_by_sku_until_next_after_is_null(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        seed(h, admin)
        items, pages = every_page(h, admin, f"{API}/products", limit=10)
        exact = h.call("GET", f"{API}/products", admin, params={"limit": 25})

    assert [item["sku"] for item in items] == [f"P-{i:03d}" for i in range(25)]
    assert pages == 3
    assert exact["next_after"] is None, "a page that holds the rest says there is no more"
    assert (items[7]["quantity"], items[7]["stock_version"]) == (7, 1)


def test_product_filters_combine(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        seed(h, admin)
        dairy = next(
            c["id"]
            for c in h.call("GET", f"{API}/categories", admin)["items"]
            if c["name"] == "Dairy"
        )

        def skus(**params):
            return [i["sku"] for i in every_page(h, admin, f"{API}/products", limit=4, **params)[0]]

        by_category = skus(category=dairy)
        by_text = skus(search="MILK NO. 1")
        by_sku = skus(search="p-02")
        low = skus(low_stock=3)
        low_dairy = skus(low_stock=3, category=dairy)
        wildcard = skus(search="%")

    assert by_category == [f"P-{i:03d}" for i in range(1, 25, 2)]
    assert by_text == ["P-001", "P-011", "P-013", "P-015", "P-017", "P-019"]
    assert by_sku == [f"P-{i:03d}" for i in range(20, 25)]
    assert low == ["P-000", "P-001", "P-002", "P-003"]
    assert low_dairy == ["P-001", "P-003"]
    assert wildcard == [], "a % is looked for as itself"


def test_categories_page_by_id(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        for i in range(5):
            h.call("POST", f"{API}/categories", admin, json={"name": f"C{i}"})
        items, pages = every_page(h, admin, f"{API}/categories", limit=2)

    assert [c["name"] for c in items] == ["C0", "C1", "C2", "C3", "C4"]
    assert pages == 3


def test_a_renamed_category_is_announced_and_a_taken_name_is_refused(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        dairy = h.call("POST", f"{API}/categories", admin, json={"name": "Dairy"})
        h.call("POST", f"{API}/categories", admin, json={"name": "Bakery"})
        with h.central.db.connection_context():
            before = Outbox.select().count()
        renamed = h.call(
            "PATCH", f"{API}/categories/{dairy['id']}", admin, json={"name": "Milk & cheese"}
        )
        same = h.call(
            "PATCH", f"{API}/categories/{dairy['id']}", admin, json={"name": "Milk & cheese"}
        )
        taken = h.client.patch(
            f"{API}/categories/{dairy['id']}", headers=admin, json={"name": "Bakery"}
        )
        missing = h.client.patch(f"{API}/categories/999", headers=admin, json={"name": "X"})
        with h.central.db.connection_context():
            events = Outbox.select().count() - before

    assert (renamed["name"], renamed["version"]) == ("Milk & cheese", 2)
    assert same["version"] == 2, "the same name again changes nothing"
    assert events == 1
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "category.exists")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "category.not_found")
