"""Allowances topped up by the rules when a store reads its own (it is online): only below
the threshold, by the rule's units less what is left, never past a share of what any store
may take, and never the last units (one per active store). Two stores racing for the last
units never take more than there is."""

import threading
import uuid

import httpx
import pytest

from central.models import Allowance, Movement, Order, OrderLine, Stock
from tests.support.central_harness import running_central, served

pytestmark = pytest.mark.integration

RULES = "/api/v1/allowance-rules"
MINE = "/api/v1/allowances/mine"


def seed(h, stock, stores=("north", "south")):
    admin = h.admin()
    cat = h.call("POST", "/api/v1/categories", admin, json={"name": "Dairy"})
    for sku, quantity in stock.items():
        product = {"sku": sku, "name": sku, "price": "2.00", "category_id": cat["id"]}
        h.call("POST", "/api/v1/products", admin, json=product)
        h.call("PUT", f"/api/v1/stock/{sku}", admin, json={"quantity": quantity})
    keys = {
        s: {
            "X-API-Key": h.call("POST", "/api/v1/stores", admin, json={"id": s, "name": s})[
                "api_key"
            ]
        }
        for s in stores
    }
    return admin, cat["id"], keys


def rule(h, admin, path, units, threshold):
    body = {"units": units, "threshold": threshold, "ttl_s": 3600}
    h.call("PUT", f"{RULES}/{path}", admin, json=body)


def mine(h, key):
    return [(a["sku"], a["remaining"]) for a in h.call("GET", MINE, key)["items"]]


def stock_row(h, sku):
    with h.central.db.connection_context():
        row = Stock.get_by_id(sku)
        return row.quantity, row.held


def buy(h, key, sku, quantity):
    headers = {**key, "Idempotency-Key": uuid.uuid4().hex}
    body = {"lines": [{"sku": sku, "quantity": quantity}]}
    return h.call("POST", "/api/v1/orders", headers, json=body)


def test_a_store_online_is_granted_its_rules_units_once(database_url):
    with running_central(database_url) as h:
        admin, _, keys = seed(h, {"MILK": 100})
        rule(h, admin, "sku/MILK", units=5, threshold=2)

        assert mine(h, keys["north"]) == [("MILK", 5)]
        assert mine(h, keys["north"]) == [("MILK", 5)]  # not below its threshold: no more
        assert stock_row(h, "MILK") == (95, 5)
        with h.central.db.connection_context():
            granted = Movement.select().where(Movement.reason == "allowance.granted").get()
            assert (granted.delta, granted.actor) == (-5, "store:north")


def test_below_the_threshold_the_store_gets_the_rules_units_less_what_is_left(database_url):
    with running_central(database_url) as h:
        admin, _, keys = seed(h, {"MILK": 100})
        rule(h, admin, "sku/MILK", units=5, threshold=3)
        mine(h, keys["north"])
        h.call("PUT", "/api/v1/stock/MILK", admin, json={"quantity": 0})
        buy(h, keys["north"], "MILK", 2)  # from its allowance: 3 left, not below 3
        h.call("PUT", "/api/v1/stock/MILK", admin, json={"quantity": 100})
        assert mine(h, keys["north"]) == [("MILK", 3)]

        h.call("PUT", "/api/v1/stock/MILK", admin, json={"quantity": 0})
        buy(h, keys["north"], "MILK", 1)  # 2 left: below 3
        h.call("PUT", "/api/v1/stock/MILK", admin, json={"quantity": 100})

        assert sorted(mine(h, keys["north"])) == [("MILK", 2), ("MILK", 3)]
        assert stock_row(h, "MILK") == (97, 5)


def test_a_skus_own_rule_comes_before_its_categorys(database_url):
    with running_central(database_url) as h:
        admin, category, keys = seed(h, {"MILK": 100, "EGGS": 100, "BREAD": 100})
        rule(h, admin, f"category/{category}", units=2, threshold=1)
        rule(h, admin, "sku/MILK", units=6, threshold=1)

        assert mine(h, keys["south"]) == [("BREAD", 2), ("EGGS", 2), ("MILK", 6)]

        h.client.delete(f"{RULES}/category/{category}", headers=admin)
        h.call("POST", f"/api/v1/allowances/{_grant_id(h, 'south', 'EGGS')}/return", admin)
        assert "EGGS" not in {sku for sku, _ in mine(h, keys["south"])}  # no rule covers it


def test_top_ups_shrink_as_stock_runs_low_and_leave_the_last_units_online(database_url):
    with running_central(database_url) as h:
        admin, _, keys = seed(h, {"MILK": 9}, stores=("north", "south", "east"))
        rule(h, admin, "sku/MILK", units=5, threshold=5)

        assert mine(h, keys["north"]) == [("MILK", 2)]  # 9 // (3 stores + 1)
        assert mine(h, keys["south"]) == [("MILK", 1)]  # 7 // 4
        assert mine(h, keys["east"]) == [("MILK", 1)]  # 6 // 4
        assert mine(h, keys["north"]) == [("MILK", 2), ("MILK", 1)]  # 5 // 4
        assert mine(h, keys["south"]) == [("MILK", 1), ("MILK", 1)]  # 4 // 4

        assert stock_row(h, "MILK")[0] == 3  # one unit per active store stays available
        for key in keys.values():
            mine(h, key)
        assert stock_row(h, "MILK") == (3, 6)


def test_a_share_rule_splits_its_part_between_the_stores_that_sold_it(database_url):
    with running_central(database_url) as h:
        admin, _, keys = seed(h, {"MILK": 100}, stores=("north", "south", "east"))
        buy(h, keys["north"], "MILK", 2)
        buy(h, keys["south"], "MILK", 2)
        body = {"units": 50, "threshold": 1, "ttl_s": 3600, "share": 0.25, "share_days": 7}
        h.call("PUT", f"{RULES}/sku/MILK", admin, json=body)

        assert mine(h, keys["north"]) == [("MILK", 12)]  # 0.25 x 96 // 2 sellers
        assert mine(h, keys["south"]) == [("MILK", 10)]  # 0.25 x 84 // 2
        assert mine(h, keys["east"]) == []  # it sold none: nothing by share
        assert stock_row(h, "MILK") == (74, 22)


def _grant_id(h, store, sku):
    with h.central.db.connection_context():
        return Allowance.get(Allowance.store_id == store, Allowance.sku == sku).id


RACE_SKU = "LAST"
RACE_INITIAL = 10
READS_EACH = 12
BUYS = 10


def reader(url, key, gates, failures):
    gates[0].wait(30)
    with httpx.Client(base_url=url, timeout=60, headers=key) as client:
        for read in range(READS_EACH):
            response = client.get(MINE)
            if response.status_code != 200:
                failures.append(response.text)
            if read == 0:
                gates[1].wait(30)


def shopper(url, key, gates, failures):
    # Sales start once both readers have read once: each first read tops its store up while
    # stock is there, so the race below always has grants in it. (Started together, the
    # shopper could sell the last unit before either reader's first request was served.)
    gates[0].wait(30)
    gates[1].wait(30)
    with httpx.Client(base_url=url, timeout=60, headers=key) as client:
        for _ in range(BUYS):
            response = client.post(
                "/api/v1/orders",
                json={"lines": [{"sku": RACE_SKU, "quantity": 1}]},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            if response.status_code not in (201, 409):
                failures.append(response.text)


def test_two_stores_topping_up_on_the_last_units_never_take_more_than_there_is(database_url):
    with running_central(database_url) as h:
        stores = ("north", "south", "kiosk")
        admin, _, keys = seed(h, {RACE_SKU: RACE_INITIAL}, stores=stores)
        rule(h, admin, f"sku/{RACE_SKU}", units=4, threshold=4)
        gates = (threading.Barrier(3), threading.Barrier(3))
        failures: list[str] = []
        with served(h) as url:
            threads = [
                threading.Thread(target=reader, args=(url, keys["north"], gates, failures)),
                threading.Thread(target=reader, args=(url, keys["south"], gates, failures)),
                threading.Thread(target=shopper, args=(url, keys["kiosk"], gates, failures)),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert failures == []
        books = read_books(h)

    quantity, held, live_remaining, sold, ledger = books
    assert quantity >= 0 and held == live_remaining
    assert quantity + held == RACE_INITIAL - sold
    assert min(m.quantity for m in ledger) >= 0
    granted = [m for m in ledger if m.reason == "allowance.granted"]
    assert granted, "no store was topped up"
    for m in granted:  # each grant at most a share of what was available before it
        before = m.quantity - m.delta
        assert -m.delta <= before // (len(stores) + 1), (m.delta, before)


def read_books(h):
    with h.central.db.connection_context():
        stock = Stock.get_by_id(RACE_SKU)
        live = Allowance.select().where(Allowance.sku == RACE_SKU, Allowance.state == "live")
        confirmed = Order.select(Order.id).where(Order.status == "confirmed")
        lines = OrderLine.select().where(OrderLine.order_id.in_(confirmed))
        ledger = list(Movement.select().where(Movement.sku == RACE_SKU).order_by(Movement.id))
        return (
            stock.quantity,
            stock.held,
            sum(a.remaining for a in live),
            sum(line.quantity for line in lines),
            ledger,
        )
