"""Sales replayed under grants racing online orders and write-offs on a SKU's last units:
every replay is accepted, nothing goes below zero, what is held is what open grants have
left, and the ledger says the same; statements then close what is left."""

import threading
import uuid
from collections import Counter

import httpx
import pytest

from central.models import Allowance
from central.services import allowances
from tests.integration.central.test_allowances import ADMIN
from tests.integration.central.test_allowances_race import SKU, STORES, read_books, seed
from tests.support.central_harness import running_central, served

pytestmark = pytest.mark.integration

INITIAL = 20
UNITS = 4  # each store's grant; 4 stores hold 16 of the 20


def replayer(url, key, grant_id, outcomes):
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(UNITS):
            line = {"sku": SKU, "quantity": 1, "grant_id": grant_id}
            response = client.post(
                "/api/v1/orders",
                json={"lines": [line]},
                headers={"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex},
            )
            assert response.status_code == 201, response.text
            review = response.json()["review"]
            outcomes.append(("replay", review["code"] if review else "booked"))


def shopper(url, key, outcomes):
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(3):
            response = client.post(
                "/api/v1/orders",
                json={"lines": [{"sku": SKU, "quantity": 1}]},
                headers={"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex},
            )
            assert response.status_code in (201, 409), response.text
            outcomes.append(("order", response.status_code))


def writer_off(url, admin, grant_ids, outcomes):
    with httpx.Client(base_url=url, timeout=60, headers=admin) as client:
        for grant_id in grant_ids:
            response = client.post(f"/api/v1/allowances/{grant_id}/write-off")
            assert response.status_code == 200, response.text
            outcomes.append(("write-off", response.status_code))


def test_replays_racing_orders_and_write_offs_never_go_below_zero(database_url):
    with running_central(database_url) as h:
        admin, keys = seed(h)
        h.call("PUT", f"/api/v1/stock/{SKU}", admin, json={"quantity": INITIAL})
        grants = {
            store: allowances.grant(
                h.central.uow(), ADMIN, allowances.GrantRequest(store, SKU, UNITS, 600)
            )["id"]
            for store in STORES
        }
        outcomes: list[tuple[str, object]] = []
        with served(h) as url:
            threads = [
                threading.Thread(target=replayer, args=(url, keys[s], grants[s], outcomes))
                for s in STORES
            ] + [threading.Thread(target=shopper, args=(url, keys[s], outcomes)) for s in STORES]
            threads.append(
                threading.Thread(
                    target=writer_off, args=(url, admin, [grants[s] for s in STORES[:2]], outcomes)
                )
            )
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        counts = Counter(outcomes)
        assert counts[("write-off", 200)] == 2, counts
        for store in STORES[2:]:
            with h.central.db.connection_context():
                row = Allowance.get(Allowance.id == grants[store])
            booked = row.units - row.remaining
            closed = h.client.post(
                f"/api/v1/allowances/{row.id}/statement",
                json={"sold": booked},
                headers={"X-API-Key": keys[store]},
            )
            assert closed.status_code == 200, closed.text
        stock, _, _, ledger, last_event = read_books(h)
        with h.central.db.connection_context():
            still_open = Allowance.select().where(Allowance.state != "closed").count()

    assert still_open == 0
    assert stock.quantity >= 0 and stock.held == 0
    assert min(m.quantity for m in ledger) >= 0, "what any store may take never went below zero"
    on_hand_moves = sum(m.delta for m in ledger if not m.reason.startswith("allowance."))
    held_moves = sum(m.delta for m in ledger if m.reason.startswith("allowance."))
    assert on_hand_moves == stock.quantity + stock.held
    assert held_moves == 0
    assert last_event == (stock.quantity, stock.version)
