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


def products(count, category="Cat 0", start=0, line=3):
    return [
        {
            "line": line + i,
            "kind": "product",
            "sku": f"SKU-{start + i:05d}",
            "name": f"Product {start + i}",
            "price": "1.50",
            "category": category,
        }
        for i in range(count)
    ]


def stage(h, headers, rows):
    batch = h.call("POST", "/api/v1/import/batches", headers)
    for start in range(0, len(rows), CHUNK):
        path = f"/api/v1/import/batches/{batch['id']}/rows"
        h.call("POST", path, headers, json={"rows": rows[start : start + CHUNK]})
    return batch["id"]


def test_a_staged_import_applies_every_request_in_one_commit(database_url):
    rows = [{"line": 2, "kind": "category", "name": "Cat 0"}, *products(1_200)]
    with running_central(database_url) as h:
        admin = h.admin()
        batch = stage(h, admin, rows)
        assert h.call("GET", "/api/v1/products?limit=1", admin)["items"] == [], "staged only"
        result = h.call("POST", f"/api/v1/import/batches/{batch}/commit", admin)
        gone = h.client.post(f"/api/v1/import/batches/{batch}/commit", headers=admin)
        with h.central.db.connection_context():
            assert Product.select().count() == 1_200
    assert result == {"created": 1_201, "updated": 0, "unchanged": 0}
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "import.batch_not_found"


def test_a_staged_import_with_a_bad_row_at_the_end_applies_nothing_and_names_it(database_url):
    rows = [{"line": 2, "kind": "category", "name": "Cat 0"}, *products(1_200)]
    rows.append({"line": 1_203, "kind": "product", "sku": "LAST", "name": "Last",
                 "price": "1", "category": "No such category"})  # fmt: skip
    rows.append({"line": 1_204, "kind": "stock", "sku": "NEVER-MADE", "quantity": 3})
    with running_central(database_url) as h:
        admin = h.admin()
        batch = stage(h, admin, rows)
        response = h.client.post(f"/api/v1/import/batches/{batch}/commit", headers=admin)
        categories = h.call("GET", "/api/v1/categories", admin)["items"]
        with h.central.db.connection_context():
            assert (Product.select().count(), Outbox.select().count()) == (0, 0)
        again = h.client.delete(f"/api/v1/import/batches/{batch}", headers=admin)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "import.invalid"
    assert [(e["line"], e["code"]) for e in error["details"]["errors"]] == [
        (1_203, "category.not_found"),
        (1_204, "product.not_found"),
    ]
    assert (error["details"]["error_count"], error["details"]["bad_rows"]) == (2, 2)
    assert categories == []
    assert again.status_code == 404, "a failed commit drops the batch"


def test_staging_refuses_bad_rows_and_keeps_the_batch_as_it_was(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        batch = h.call("POST", "/api/v1/import/batches", admin)["id"]
        path = f"/api/v1/import/batches/{batch}/rows"
        good = {"line": 2, "kind": "category", "name": "Fine"}
        refused = h.client.post(path, headers=admin, json={"rows": [good, {"line": 3}]})
        staged = h.call("POST", path, admin, json={"rows": [good]})
        committed = h.call("POST", f"/api/v1/import/batches/{batch}/commit", admin)

    assert refused.status_code == 422
    assert refused.json()["error"]["details"]["errors"][0]["line"] == 3
    assert staged["rows"] == 1
    assert committed == {"created": 1, "updated": 0, "unchanged": 0}


def test_a_batch_is_only_its_openers(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        second = {"username": "other-admin", "password": "other-password-1", "role": "admin"}
        h.call("POST", "/api/v1/users", admin, json=second)
        other = h.as_user("other-admin", "other-password-1")
        batch = h.call("POST", "/api/v1/import/batches", admin)["id"]
        foreign = h.client.post(f"/api/v1/import/batches/{batch}/commit", headers=other)
        own = h.client.delete(f"/api/v1/import/batches/{batch}", headers=admin)

    assert foreign.status_code == 404
    assert own.status_code == 204


def test_open_batches_are_bounded(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        for _ in range(4):
            h.call("POST", "/api/v1/import/batches", admin)
        refused = h.client.post("/api/v1/import/batches", headers=admin)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "import.too_many_batches"


def test_an_update_row_keeps_the_description_and_active_it_does_not_give(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        full = {"line": 3, "kind": "product", "sku": "A", "name": "A", "price": "1",
                "category": "C", "description": "Kept words", "active": False}  # fmt: skip
        send(h, admin, [{"line": 2, "kind": "category", "name": "C"}, full])
        price_only = {k: v for k, v in full.items() if k not in ("description", "active")}
        result = send(h, admin, [{**price_only, "price": "2.25"}])
        product = h.call("GET", "/api/v1/products/A", admin)

    assert result == {"created": 0, "updated": 1, "unchanged": 0}
    assert (product["price"], product["description"], product["active"]) == (
        "2.25",
        "Kept words",
        False,
    )


def test_every_row_of_a_rejected_request_that_cannot_be_applied_is_named(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        rows = [
            {"line": 2, "kind": "category", "name": "Real"},
            *products(2, category="Missing", line=3),
            *products(2, category="Real", start=10, line=5),
            {"line": 7, "kind": "stock", "sku": "NOPE", "quantity": 1},
        ]
        response = h.client.post("/api/v1/import", headers=admin, json={"rows": rows})

    assert response.status_code == 422
    assert [e["line"] for e in response.json()["error"]["details"]["errors"]] == [3, 4, 7]
