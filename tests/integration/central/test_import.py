"""Batch import through the API: 10,000 rows, idempotent re-runs, bad rows by line number."""

from central.models import Outbox, Product, Stock
from tests.support.central_harness import running_central

CHUNK = 500


def ten_thousand_rows():
    rows = [{"line": 2 + i, "kind": "category", "name": f"Cat {i}"} for i in range(10)]
    for i in range(9990):
        rows.append(
            {
                "line": 12 + i,
                "kind": "product",
                "sku": f"SKU-{i:05d}",
                "name": f"Product {i}",
                "price": f"{i % 97}.{i % 100:02d}",
                "category": f"Cat {i % 10}",
                "quantity": i % 50,
            }
        )
    return rows


def send(h, headers, rows):
    totals = {"created": 0, "updated": 0, "unchanged": 0}
    for start in range(0, len(rows), CHUNK):
        result = h.call(
            "POST", "/api/v1/import", headers, json={"rows": rows[start : start + CHUNK]}
        )
        for key in totals:
            totals[key] += result[key]
    return totals


def test_importing_ten_thousand_rows_then_again_changes_nothing(database_url):
    rows = ten_thousand_rows()
    with running_central(database_url) as h:
        admin = h.admin()
        assert send(h, admin, rows) == {"created": 10000, "updated": 0, "unchanged": 0}
        with h.central.db.connection_context():
            events = Outbox.select().count()
            assert Product.select().count() == 9990
            assert Stock.get_by_id("SKU-00049").quantity == 49
        assert send(h, admin, rows) == {"created": 0, "updated": 0, "unchanged": 10000}
        with h.central.db.connection_context():
            assert Outbox.select().count() == events


def test_changed_rows_are_updated_and_emit_events(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        base = [
            {"line": 2, "kind": "category", "name": "C"},
            {"line": 3, "kind": "product", "sku": "A", "name": "A", "price": "1", "category": "C"},
        ]
        send(h, admin, base)
        changed = [
            {**base[1], "price": "2"},
            {"line": 4, "kind": "stock", "sku": "A", "quantity": 7},
        ]
        assert send(h, admin, changed) == {"created": 0, "updated": 2, "unchanged": 0}
        product = h.call("GET", "/api/v1/products/A", admin)
        assert (product["price"], product["version"]) == ("2.00", 2)


def test_bad_rows_are_reported_by_line_and_nothing_is_applied(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        rows = [
            {"line": 2, "kind": "category", "name": "Good"},
            {
                "line": 3,
                "kind": "product",
                "sku": "bad sku",
                "name": "x",
                "price": "1",
                "category": "Good",
            },
            {
                "line": 4,
                "kind": "product",
                "sku": "OK",
                "name": "x",
                "price": "-1",
                "category": "Good",
            },
            {"line": 5, "kind": "stock", "sku": "OK", "quantity": -3},
            {"line": 6, "kind": "widget"},
        ]
        response = h.client.post("/api/v1/import", headers=admin, json={"rows": rows})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "import.invalid"
        assert [(e["line"], e["code"]) for e in error["details"]["errors"]] == [
            (3, "sku.invalid"),
            (4, "price.invalid"),
            (5, "quantity.invalid"),
            (6, "kind.invalid"),
        ]
        assert h.call("GET", "/api/v1/categories", admin)["items"] == []
