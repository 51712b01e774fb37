"""Allowance grants and returns racing with online orders on a SKU's last units: nothing is
ever sold twice. Afterwards on hand is the initial stock less what was sold, what is held is
what live grants have left, nothing went below zero, and the ledger says the same."""

import json
import random
import threading
import uuid
from collections import Counter

import httpx
import pytest

from central.models import Allowance, Movement, Order, OrderLine, Outbox, Stock
from tests.support.central_harness import running_central, served

pytestmark = pytest.mark.integration

SKU = "LAST-UNITS"
INITIAL = 12
STORES = [f"shop-{i}" for i in range(4)]
SHOPPERS = 8
BUYS_EACH = 8
GRANTERS = 2
GRANTS_EACH = 10


def seed(h):
    admin = h.admin()
    cat = h.call("POST", "/api/v1/categories", admin, json={"name": "Race"})
    product = {"sku": SKU, "name": SKU, "price": "1.00", "category_id": cat["id"]}
    h.call("POST", "/api/v1/products", admin, json=product)
    h.call("PUT", f"/api/v1/stock/{SKU}", admin, json={"quantity": INITIAL})
    keys = {
        s: h.call("POST", "/api/v1/stores", admin, json={"id": s, "name": s})["api_key"]
        for s in STORES
    }
    return admin, keys


def shopper(url, key, seed_, outcomes, started):
    rng = random.Random(seed_)
    # the shoppers wait for a first grant: left to the scheduler, a loaded machine let them
    # take every unit before any granter ran, and the race had no grant in it
    assert started.wait(60), "no grant was answered"
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(BUYS_EACH):
            response = client.post(
                "/api/v1/orders",
                json={"lines": [{"sku": SKU, "quantity": rng.randint(1, 2)}]},
                headers={"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex},
            )
            assert response.status_code in (201, 409), response.text
            outcomes.append(("order", response.status_code))


def granter(url, admin, seed_, outcomes, started):
    rng = random.Random(seed_)
    with httpx.Client(base_url=url, timeout=60, headers=admin) as client:
        for _ in range(GRANTS_EACH):
            body = {
                "store": rng.choice(STORES),
                "sku": SKU,
                "units": rng.randint(1, 3),
                "ttl_s": 600,
            }
            response = client.post("/api/v1/allowances", json=body)
            assert response.status_code in (201, 409), response.text
            outcomes.append(("grant", response.status_code))
            started.set()
            if response.status_code == 201 and rng.random() < 0.3:
                returned = client.post(f"/api/v1/allowances/{response.json()['id']}/return")
                assert returned.status_code in (200, 409), returned.text
                outcomes.append(("return", returned.status_code))


def test_grants_racing_orders_on_the_last_units_never_oversell(database_url):
    with running_central(database_url) as h:
        admin, keys = seed(h)
        outcomes: list[tuple[str, int]] = []
        started = threading.Event()
        with served(h) as url:
            threads = [
                threading.Thread(
                    target=shopper, args=(url, keys[STORES[i % 4]], i, outcomes, started)
                )
                for i in range(SHOPPERS)
            ] + [
                threading.Thread(target=granter, args=(url, admin, 100 + i, outcomes, started))
                for i in range(GRANTERS)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        counts = Counter(outcomes)
        assert counts[("order", 201)] > 0 and counts[("order", 409)] > 0, counts
        assert counts[("grant", 201)] > 0, counts
        books = read_books(h)

    stock, sold, live_remaining, ledger, last_event = books
    assert stock.quantity >= 0 and stock.held >= 0
    assert stock.quantity + stock.held == INITIAL - sold
    assert stock.held == live_remaining
    assert min(m.quantity for m in ledger) >= 0, "what any store may take never went below zero"
    on_hand_moves = sum(m.delta for m in ledger if not m.reason.startswith("allowance."))
    held_moves = sum(m.delta for m in ledger if m.reason.startswith("allowance."))
    assert on_hand_moves == stock.quantity + stock.held
    assert -held_moves == stock.held
    assert -sum(m.delta for m in ledger if m.reason == "order") == sold
    assert last_event == (stock.quantity, stock.version)


def read_books(h):
    with h.central.db.connection_context():
        stock = Stock.get_by_id(SKU)
        confirmed = Order.select(Order.id).where(Order.status == "confirmed")
        sold = sum(
            line.quantity for line in OrderLine.select().where(OrderLine.order_id.in_(confirmed))
        )
        live = Allowance.select().where(Allowance.sku == SKU, Allowance.state == "live")
        live_remaining = sum(a.remaining for a in live)
        ledger = list(Movement.select().where(Movement.sku == SKU).order_by(Movement.id))
        events = [json.loads(row.payload) for row in Outbox.select().where(Outbox.key == SKU)]
    changes = [e["data"] for e in events if e["type"] == "stock.changed"]
    last = max(changes, key=lambda data: data["stock_version"])
    return stock, sold, live_remaining, ledger, (last["quantity"], last["stock_version"])
