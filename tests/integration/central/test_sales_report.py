"""The sales report's SQL on SQLite and on the real MariaDB: the same rows, totals and exact
cents from both, UTC days cut at midnight, cancelled orders counted apart."""

import uuid
from datetime import datetime
from decimal import Decimal

from central.models import Order
from tests.support.central_harness import running_central

PRICES = {"MILK-1L": "1.10", "GUM": "0.29", "GOLD": "999999999.99"}
ROUTE = "/api/v1/reports/sales"


def seed(h):
    admin = h.admin()
    category = h.call("POST", "/api/v1/categories", admin, json={"name": "All"})
    for sku, price in PRICES.items():
        product = {"sku": sku, "name": sku, "price": price, "category_id": category["id"]}
        h.call("POST", "/api/v1/products", admin, json=product)
        h.call("PUT", f"/api/v1/stock/{sku}", admin, json={"quantity": 100_000})
    keys = {}
    for store in ("north", "south"):
        made = h.call("POST", "/api/v1/stores", admin, json={"id": store, "name": store})
        keys[store] = {"X-API-Key": made["api_key"]}
    return admin, keys


def buy(h, key, at, **lines):
    """An order placed now, then moved to `at` (naive UTC) as if placed then."""
    body = {"lines": [{"sku": sku, "quantity": qty} for sku, qty in lines.items()]}
    order = h.call(
        "POST", "/api/v1/orders", {**key, "Idempotency-Key": uuid.uuid4().hex}, json=body
    )
    with h.central.db.connection_context():
        Order.update(created_at=at).where(Order.id == order["id"]).execute()
    return order


def rows(report):
    return {r["key"]: (r["orders"], r["units"], r["revenue"]) for r in report["rows"]}


def test_sales_report_sums_exactly_and_groups_by_utc_day_sku_and_store(database_url):
    late = datetime(2026, 11, 28, 23, 59, 59, 999999)
    midnight = datetime(2026, 11, 29, 0, 0, 0)
    with running_central(database_url) as h:
        admin, keys = seed(h)
        for _ in range(10):
            buy(h, keys["north"], late, **{"MILK-1L": 1, "GUM": 1})
        buy(h, keys["south"], midnight, GOLD=10_000, GUM=3)
        cancelled = buy(h, keys["south"], midnight, **{"MILK-1L": 7})
        h.call("POST", f"/api/v1/orders/{cancelled['id']}/cancel", admin)

        by_sku = h.call("GET", ROUTE, admin, params={"by": "sku"})
        by_day = h.call("GET", ROUTE, admin, params={"by": "day"})
        by_store = h.call("GET", ROUTE, admin, params={"by": "store", "limit": 1})
        south_only = h.call(
            "GET", ROUTE, keys["south"], params={"by": "day", "since": "2026-11-29T00:00:00Z"}
        )

    gold = str(Decimal("999999999.99") * 10_000)
    total = str(Decimal("999999999.99") * 10_000 + Decimal("11.00") + Decimal("0.29") * 13)
    assert rows(by_sku) == {
        "GOLD": (1, 10_000, gold),
        "MILK-1L": (10, 10, "11.00"),
        "GUM": (11, 13, "3.77"),
    }
    assert list(rows(by_sku)) == ["GOLD", "MILK-1L", "GUM"]
    assert rows(by_day) == {
        "2026-11-28": (10, 20, "13.90"),
        "2026-11-29": (1, 10_003, str(Decimal(gold) + Decimal("0.87"))),
    }
    for report in (by_sku, by_day, by_store):
        assert (report["totals"]["orders"], report["totals"]["units"]) == (11, 10_023)
        assert report["totals"]["revenue"] == total
        assert report["cancelled"] == {"orders": 1, "units": 7, "revenue": "7.70"}
    assert rows(by_store) == {"south": (1, 10_003, str(Decimal(gold) + Decimal("0.87")))}
    assert (by_store["truncated"], by_store["keys"]) == (True, 2)
    assert rows(south_only) == {"2026-11-29": (1, 10_003, str(Decimal(gold) + Decimal("0.87")))}
    assert south_only["store"] == "south"
