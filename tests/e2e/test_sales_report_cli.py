"""`invctl report sales` against a real central: the totals equal the orders the stores
placed (units and revenue, to the cent), whether grouped by SKU, day or store; cancelled
orders are counted apart; a store's key sees its own sales only; `stock history --chart`
draws the ledger those sales left."""

import json
from collections import Counter
from decimal import Decimal

from tests.support.processes import stack

PRICES = {"MILK-1L": "1.10", "GUM": "0.29", "BREAD-800G": "2.35"}
# (store, lines, cancelled afterwards)
SALES = [
    ("store-1", {"MILK-1L": 3, "GUM": 1}, False),
    ("store-1", {"GUM": 7}, False),
    ("store-1", {"BREAD-800G": 2, "MILK-1L": 1}, True),
    ("store-2", {"MILK-1L": 10, "BREAD-800G": 1, "GUM": 2}, False),
    ("store-2", {"GUM": 4}, True),
    ("store-2", {"BREAD-800G": 5}, False),
]


def expected(sales):
    """Orders, units and revenue of these sales, and their units and revenue by SKU."""
    units, revenue = Counter(), Counter()
    for _, lines, _ in sales:
        for sku, quantity in lines.items():
            units[sku] += quantity
            revenue[sku] += Decimal(PRICES[sku]) * quantity
    total = {
        "orders": len(sales),
        "units": sum(units.values()),
        "revenue": f"{sum(revenue.values(), Decimal(0)):.2f}",
    }
    return total, {sku: (units[sku], f"{revenue[sku]:.2f}") for sku in units}


def test_report_sales_totals_equal_the_orders_placed(tmp_path, kafka_cluster, topic_prefix):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        keys = {
            store: s.invctl_json("store", "add", store, "--name", store)["api_key"]
            for store in ("store-1", "store-2")
        }
        category = s.invctl_json("category", "add", "Food")
        for sku, price in PRICES.items():
            s.invctl(
                "product", "add", sku, "--name", sku, "--price", price,
                "--category", str(category["id"]),
            )  # fmt: skip
            s.invctl("stock", "set", sku, "100")

        def as_store(store, *args):
            # Its own config directory: no saved admin login, so the store's key is used.
            env = {"INVCTL_API_KEY": keys[store], "INVCTL_CONFIG_DIR": str(tmp_path / store)}
            return json.loads(s.invctl("--json", *args, env=env).stdout)

        for store, lines, cancel in SALES:
            order = as_store(store, "buy", *(f"{sku}:{qty}" for sku, qty in lines.items()))
            if cancel:
                s.invctl("orders", "cancel", order["id"])

        by_sku = s.invctl_json("report", "sales", "--by", "sku")
        by_day = s.invctl_json("report", "sales", "--by", "day", "--since", "1d")
        by_store = s.invctl_json("report", "sales", "--by", "store")
        own = as_store("store-2", "report", "sales", "--by", "store")
        refused = s.invctl(
            "report", "sales", "--store", "store-1", check=False,
            env={"INVCTL_API_KEY": keys["store-2"], "INVCTL_CONFIG_DIR": str(tmp_path / "s2")},
        )  # fmt: skip
        table = s.invctl("-o", "table", "report", "sales", "--by", "sku", env={"COLUMNS": "80"})
        chart = s.invctl("-o", "table", "stock", "history", "GUM", "--chart")

    confirmed = [sale for sale in SALES if not sale[2]]
    total, per_sku = expected(confirmed)
    cancelled, _ = expected([sale for sale in SALES if sale[2]])
    for report in (by_sku, by_day, by_store):
        assert report["totals"] == total
        assert report["cancelled"] == cancelled
        assert sum(row["units"] for row in report["rows"]) == total["units"]
        assert sum(Decimal(row["revenue"]) for row in report["rows"]) == Decimal(total["revenue"])
    assert {row["key"]: (row["units"], row["revenue"]) for row in by_sku["rows"]} == per_sku
    assert sum(row["orders"] for row in by_day["rows"]) == total["orders"]
    assert [row["key"] for row in by_store["rows"]] == ["store-2", "store-1"]
    store_2 = expected([sale for sale in confirmed if sale[0] == "store-2"])[0]
    assert (own["store"], own["totals"]) == ("store-2", store_2)
    assert [row["key"] for row in own["rows"]] == ["store-2"]
    assert refused.returncode == 6, refused.stderr
    assert "auth.forbidden" in refused.stderr
    assert f"Total: 4 orders, {total['units']} units, revenue {total['revenue']}" in table.stdout
    assert "Cancelled since, not counted: 2 orders" in table.stdout
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    levels = [line.split()[4] for line in chart.stdout.splitlines() if line[:4].isdigit()]
    assert levels == ["100", "99", "92", "90", "86", "90"]  # set, sold 1, 7, 2, 4, 4 back
