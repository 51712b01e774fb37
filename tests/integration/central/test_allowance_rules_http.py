"""Allowance rules over HTTP: an admin sets a SKU's or a category's rule, lists them a page
at a time and deletes them; bad numbers, unknown targets and missing rules keep their codes.
Migration 13 adds the rules' table to a database of schema 12."""

import pytest

from central import migrations, models
from central.db import connect
from tests.support.central_harness import running_central

pytestmark = pytest.mark.integration

RULES = "/api/v1/allowance-rules"
RULE = {"units": 6, "threshold": 2, "ttl_s": 3600}


def seed(h):
    admin = h.admin()
    cat = h.call("POST", "/api/v1/categories", admin, json={"name": "Dairy"})
    for sku in ("MILK", "EGGS"):
        product = {"sku": sku, "name": sku, "price": "2.00", "category_id": cat["id"]}
        h.call("POST", "/api/v1/products", admin, json=product)
    return admin, cat["id"]


def refusal(response):
    return response.status_code, response.json()["error"]["code"]


def test_an_admin_sets_replaces_lists_and_deletes_rules(database_url):
    with running_central(database_url) as h:
        admin, category = seed(h)

        sku_rule = h.call("PUT", f"{RULES}/sku/MILK", admin, json=RULE)
        replaced = h.call("PUT", f"{RULES}/sku/MILK", admin, json={**RULE, "units": 8})
        h.call("PUT", f"{RULES}/category/{category}", admin, json=RULE)

        assert (sku_rule["scope"], sku_rule["target"], sku_rule["units"]) == ("sku", "MILK", 6)
        assert (replaced["id"], replaced["units"], replaced["updated_by"]) == (
            sku_rule["id"],
            8,
            "user:admin",
        )
        listed = h.call("GET", RULES, admin)
        assert [(r["scope"], r["target"]) for r in listed["items"]] == [
            ("sku", "MILK"),
            ("category", str(category)),
        ]
        assert listed["next_after"] is None

        assert h.client.delete(f"{RULES}/sku/MILK", headers=admin).status_code == 204
        gone = h.client.delete(f"{RULES}/sku/MILK", headers=admin)
        assert refusal(gone) == (404, "allowance_rule.not_found")
        assert h.client.delete(f"{RULES}/category/{category}", headers=admin).status_code == 204
        assert h.call("GET", RULES, admin)["items"] == []


def test_rules_are_listed_a_page_at_a_time_and_a_cut_page_says_so(database_url):
    with running_central(database_url) as h:
        admin, category = seed(h)
        for sku in ("MILK", "EGGS"):
            h.call("PUT", f"{RULES}/sku/{sku}", admin, json=RULE)
        h.call("PUT", f"{RULES}/category/{category}", admin, json=RULE)

        first = h.call("GET", RULES, admin, params={"limit": 2})
        rest = h.call("GET", RULES, admin, params={"limit": 2, "after": first["next_after"]})

        assert [r["target"] for r in first["items"]] == ["MILK", "EGGS"]
        assert [r["target"] for r in rest["items"]] == [str(category)]
        assert rest["next_after"] is None


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/sku/NO-SUCH", RULE, 404, "product.not_found"),
        ("/category/999999", RULE, 404, "category.not_found"),
        ("/sku/milk 1l", RULE, 422, "sku.invalid"),
        ("/sku/MILK", {**RULE, "units": 0}, 422, "quantity.invalid"),
        ("/sku/MILK", {**RULE, "threshold": 7}, 422, "request.invalid"),
        ("/sku/MILK", {**RULE, "ttl_s": 10}, 422, "request.invalid"),
        ("/sku/MILK", {"units": 6}, 422, "request.invalid"),
        ("/category/0", RULE, 422, "request.invalid"),
        ("/sku/MILK", {**RULE, "share": 1.5}, 422, "request.invalid"),
        ("/sku/MILK", {**RULE, "share_days": 7}, 422, "request.invalid"),
        ("/sku/MILK", {**RULE, "share": 0.5, "share_days": 0}, 422, "request.invalid"),
    ],
)
def test_a_bad_rule_is_refused_with_its_code_and_nothing_is_set(
    database_url, path, body, status, code
):
    with running_central(database_url) as h:
        admin, _ = seed(h)

        response = h.client.put(RULES + path, json=body, headers=admin)

        assert refusal(response) == (status, code), response.text
        assert h.call("GET", RULES, admin)["items"] == []


def test_migration_13_adds_the_rules_table(database_url):
    db = connect(database_url)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    migrations.migrate(db)
    with db.connection_context():  # back to schema 12
        db.execute_sql("DROP TABLE allowance_rules")
        models.SchemaMigration.delete().where(models.SchemaMigration.version == 13).execute()

    assert migrations.migrate(db) == [13]

    with db.connection_context():
        assert db.table_exists("allowance_rules")
    assert migrations.migrate(db) == []
    db.close()


def test_a_share_is_kept_with_its_window_and_a_plain_put_clears_it(database_url):
    with running_central(database_url) as h:
        admin, _ = seed(h)

        shared = h.call("PUT", f"{RULES}/sku/MILK", admin, json={**RULE, "share": 0.25})
        plain = h.call("PUT", f"{RULES}/sku/MILK", admin, json=RULE)

        assert (shared["share"], shared["share_days"]) == (0.25, 7)
        assert (plain["share"], plain["share_days"]) == (None, None)
