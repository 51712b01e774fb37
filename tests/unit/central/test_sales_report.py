"""`GET /api/v1/reports/sales` on SQLite: confirmed orders grouped in SQL by UTC day, SKU or
store, with totals counted apart (so a cut list still totals everything), cancelled orders
outside both, exact cents, and each store seeing only its own sales."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central.api import create_app
from central.services import accounts
from tests.support.central_fakes import FakeClock

pytestmark = pytest.mark.unit

ROUTE = "/api/v1/reports/sales"
# Prices whose sums go wrong in binary floating point (0.1 + 0.2 style).
PRICES = {"MILK-1L": "1.10", "GUM": "0.29", "BREAD": "2.35"}
DAY_1 = datetime(2026, 11, 28, 23, 59, 59, 999999)  # the last microsecond of a UTC day
DAY_2 = datetime(2026, 11, 29, 0, 0, 0)


@dataclass
class Shop:
    client: TestClient
    clock: FakeClock
    admin: dict[str, str]
    stores: dict[str, dict[str, str]]

    def buy(self, store: str, at: datetime, **lines: int) -> dict[str, Any]:
        body = {"lines": [{"sku": sku, "quantity": qty} for sku, qty in lines.items()]}
        headers = {**self.stores[store], "Idempotency-Key": uuid.uuid4().hex}
        # Placed at `at`; then the clock is back at now, where tokens are issued and checked.
        now, self.clock.current = self.clock.current, at
        try:
            answer = self.client.post("/api/v1/orders", json=body, headers=headers)
        finally:
            self.clock.current = now
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def cancel(self, order: dict[str, Any]) -> None:
        answer = self.client.post(f"/api/v1/orders/{order['id']}/cancel", headers=self.admin)
        assert answer.status_code == 200, answer.text

    def report(self, headers: dict[str, str] | None = None, **params: Any) -> Any:
        answer = self.client.get(ROUTE, params=params, headers=headers or self.admin)
        assert answer.status_code == 200, answer.text
        return answer.json()


def login(client: TestClient, username: str, password: str) -> dict[str, str]:
    form = {"username": username, "password": password}
    token = client.post("/api/v1/auth/token", data=form).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def shop(central, clock):
    accounts.create_user(central.uow(), accounts.NewUser("root", "root-password-1", "admin"))
    with TestClient(create_app(central, manage_relay=False)) as client:
        admin = login(client, "root", "root-password-1")
        category = client.post("/api/v1/categories", json={"name": "All"}, headers=admin).json()
        for sku, price in PRICES.items():
            product = {"sku": sku, "name": sku, "price": price, "category_id": category["id"]}
            assert client.post("/api/v1/products", json=product, headers=admin).status_code == 201
            client.put(f"/api/v1/stock/{sku}", json={"quantity": 10_000}, headers=admin)
        stores = {}
        for store in ("north", "south"):
            made = client.post("/api/v1/stores", json={"id": store, "name": store}, headers=admin)
            stores[store] = {"X-API-Key": made.json()["api_key"]}
        yield Shop(client, clock, admin, stores)


def by_key(report: dict[str, Any]) -> dict[str, tuple[int, int, str]]:
    return {row["key"]: (row["orders"], row["units"], row["revenue"]) for row in report["rows"]}


def figures(part: dict[str, Any]) -> tuple[int, int, str]:
    return part["orders"], part["units"], part["revenue"]


def test_sales_by_sku_count_confirmed_orders_and_cancelled_ones_apart(shop):
    shop.buy("north", DAY_1, **{"MILK-1L": 3, "GUM": 1})
    shop.buy("south", DAY_2, **{"MILK-1L": 1})
    shop.cancel(shop.buy("north", DAY_2, **{"BREAD": 4, "GUM": 2}))

    report = shop.report(by="sku")

    assert by_key(report) == {"MILK-1L": (2, 4, "4.40"), "GUM": (1, 1, "0.29")}
    assert [row["key"] for row in report["rows"]] == ["MILK-1L", "GUM"]  # revenue first
    assert figures(report["totals"]) == (2, 5, "4.69")
    assert figures(report["cancelled"]) == (1, 6, "9.98")
    assert (report["truncated"], report["keys"], report["store"]) == (False, 2, None)


def test_days_are_utc_days_oldest_first_and_the_window_is_half_open(shop):
    shop.buy("north", DAY_1, GUM=1)
    shop.buy("north", DAY_2, GUM=2)
    shop.buy("south", datetime(2026, 11, 30, 12), GUM=4)

    every_day = shop.report(by="day")
    window = shop.report(by="day", since="2026-11-29T00:00:00Z", until="2026-11-30T12:00:00Z")

    assert by_key(every_day) == {
        "2026-11-28": (1, 1, "0.29"),
        "2026-11-29": (1, 2, "0.58"),
        "2026-11-30": (1, 4, "1.16"),
    }
    assert list(by_key(every_day)) == ["2026-11-28", "2026-11-29", "2026-11-30"]
    assert by_key(window) == {"2026-11-29": (1, 2, "0.58")}
    assert figures(window["totals"]) == (1, 2, "0.58")
    assert (window["since"], window["until"]) == (
        "2026-11-29T00:00:00+00:00",
        "2026-11-30T12:00:00+00:00",
    )


def test_a_moment_with_an_offset_is_placed_in_utc(shop):
    shop.buy("north", DAY_1, GUM=1)  # 2026-11-29 00:59:59 in +01:00

    report = shop.report(by="day", since="2026-11-29T00:00:00+01:00")

    assert by_key(report) == {"2026-11-28": (1, 1, "0.29")}


def test_sales_by_store_and_one_store_narrowed(shop):
    shop.buy("north", DAY_1, BREAD=1)
    shop.buy("north", DAY_2, BREAD=1)
    shop.buy("south", DAY_2, GUM=3)

    every_store = shop.report(by="store")
    north = shop.report(by="sku", store="north")

    assert by_key(every_store) == {"north": (2, 2, "4.70"), "south": (1, 3, "0.87")}
    assert by_key(north) == {"BREAD": (2, 2, "4.70")}
    assert north["store"] == "north"


def test_a_cut_report_still_totals_every_order(shop):
    shop.buy("north", DAY_1, **{"MILK-1L": 1, "GUM": 1, "BREAD": 1})

    cut = shop.report(by="sku", limit=2)

    assert [row["key"] for row in cut["rows"]] == ["BREAD", "MILK-1L"]
    assert (cut["truncated"], cut["keys"]) == (True, 3)
    assert figures(cut["totals"]) == (1, 3, "3.74")


def test_a_cut_day_report_keeps_the_newest_days(shop):
    for day in (27, 28, 29):
        shop.buy("north", datetime(2026, 11, day, 9), GUM=1)

    cut = shop.report(by="day", limit=2)

    assert list(by_key(cut)) == ["2026-11-28", "2026-11-29"]
    assert (cut["truncated"], figures(cut["totals"])) == (True, (3, 3, "0.87"))


def test_revenue_is_exact_where_floats_would_drift(shop):
    for _ in range(10):
        shop.buy("north", DAY_1, **{"MILK-1L": 1, "GUM": 1})

    report = shop.report(by="sku")

    assert by_key(report)["MILK-1L"][2] == "11.00"
    assert report["totals"]["revenue"] == "13.90"
    assert Decimal(report["totals"]["revenue"]) == 10 * (Decimal("1.10") + Decimal("0.29"))


def test_the_biggest_prices_and_quantities_sum_exactly(shop):
    big = {"sku": "GOLD", "name": "Gold", "price": "999999999.99", "category_id": 1}
    shop.client.post("/api/v1/products", json=big, headers=shop.admin)
    shop.client.put("/api/v1/stock/GOLD", json={"quantity": 100_000}, headers=shop.admin)
    for _ in range(3):
        shop.buy("north", DAY_1, GOLD=10_000)

    report = shop.report(by="sku")

    assert report["totals"]["revenue"] == str(Decimal("999999999.99") * 30_000)


def test_an_empty_window_answers_zeros(shop):
    report = shop.report(by="sku", since="2030-01-01T00:00:00Z")

    assert report["rows"] == []
    assert figures(report["totals"]) == figures(report["cancelled"]) == (0, 0, "0.00")
    assert (report["keys"], report["truncated"]) == (0, False)


def test_a_store_key_sees_only_its_own_sales(shop):
    shop.buy("north", DAY_1, GUM=1)
    shop.buy("south", DAY_1, GUM=5)

    own = shop.report(shop.stores["south"], by="store")
    other = shop.client.get(ROUTE, params={"store": "north"}, headers=shop.stores["south"])

    assert by_key(own) == {"south": (1, 5, "1.45")}
    assert own["store"] == "south"
    assert (other.status_code, other.json()["error"]["code"]) == (403, "auth.forbidden")


def test_staff_see_their_store_and_ops_see_every_store(shop):
    shop.buy("north", DAY_1, GUM=1)
    shop.buy("south", DAY_1, GUM=5)
    made = [
        accounts.NewUser("sam", "sam-password-1", "staff", "north"),
        accounts.NewUser("olga", "olga-password-1", "ops"),
        accounts.NewUser("lone", "lone-password-1", "staff"),
    ]
    uow = shop.client.app.state.central.uow()  # type: ignore[attr-defined]
    for user in made:
        accounts.create_user(uow, user)

    staff = shop.report(login(shop.client, "sam", "sam-password-1"), by="store")
    ops = shop.report(login(shop.client, "olga", "olga-password-1"), by="store")
    lone = shop.client.get(ROUTE, headers=login(shop.client, "lone", "lone-password-1"))
    nobody = shop.client.get(ROUTE)

    assert list(by_key(staff)) == ["north"]
    assert list(by_key(ops)) == ["south", "north"]
    assert (lone.status_code, lone.json()["error"]["code"]) == (403, "auth.forbidden")
    assert (nobody.status_code, nobody.json()["error"]["code"]) == (401, "auth.required")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"by": "week"}, "by"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"store": "s" * 65}, "store"),
        ({"since": "2026-11-29T00:00:00Z", "until": "2026-11-29T00:00:00Z"}, "until"),
        ({"since": "9999-12-31T23:00:00-05:00"}, "since"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(shop, params, field):
    answer = shop.client.get(ROUTE, params=params, headers=shop.admin)

    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "request.invalid"
    named = [problem["field"] for problem in error["details"].get("errors", [])]
    assert f"query.{field}" in named or error["details"].get("field") == field
