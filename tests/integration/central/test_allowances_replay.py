"""Sales a store made under its grants, replayed to central: booked against the grant they
name whatever its state or expiry, never refused for stock, and never below zero."""

import uuid

import pytest

from central.models import Allowance, Order
from tests.integration.central.test_allowances import buy, give, ledger, seed, stock_row
from tests.support.central_fakes import FakeClock
from tests.support.central_harness import running_central
from tests.support.contract import as_order_model_writes_it

pytestmark = pytest.mark.integration


def replay(h, key, lines, idempotency_key=None):
    return h.client.post(
        "/api/v1/orders",
        json={"lines": lines},
        headers={"X-API-Key": key, "Idempotency-Key": idempotency_key or uuid.uuid4().hex},
    )


def line(grant, quantity):
    return {"sku": grant["sku"], "quantity": quantity, "grant_id": grant["id"]}


def grant_row(h, grant_id):
    with h.central.db.connection_context():
        row = Allowance.get(Allowance.id == grant_id)
        return row.remaining, row.state


def test_a_replayed_sale_of_an_expired_grant_is_booked_against_it(database_url):
    clock = FakeClock()
    with running_central(database_url, clock=clock) as h:
        keys = seed(h, {"MILK": 5})
        granted = give(h, "north", "MILK", 4, ttl_s=60)
        clock.advance(3600)  # long past its expiry and the margin
        with h.central.db.connection_context():
            Allowance.update(state="settling").where(Allowance.id == granted["id"]).execute()

        placed = replay(h, keys["north"], [line(granted, 3)])

        assert placed.status_code == 201, placed.text
        assert (placed.json()["status"], placed.json()["review"]) == ("confirmed", None)
        assert grant_row(h, granted["id"]) == (1, "settling")
        assert stock_row(h, "MILK") == (1, 1)
        assert ledger(h, "MILK")[-2:] == [("allowance.used", 3, 4), ("order", -3, 1)]


def test_a_replayed_sale_succeeds_with_nothing_available_to_anyone_else(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 4})
        granted = give(h, "north", "MILK", 4)
        assert buy(h, keys["south"], "MILK", 1).status_code == 409

        placed = replay(h, keys["north"], [line(granted, 4)])

        assert placed.status_code == 201, placed.text
        assert placed.json()["lines"][0]["stock"]["quantity"] == 0
        assert stock_row(h, "MILK") == (0, 0)
        assert grant_row(h, granted["id"]) == (0, "live")


def test_a_shortfall_is_taken_from_available_stock_when_there_is_enough(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 6})
        granted = give(h, "north", "MILK", 2)

        placed = replay(h, keys["north"], [line(granted, 5)])

        assert placed.status_code == 201, placed.text
        assert placed.json()["review"] is None
        assert stock_row(h, "MILK") == (1, 0)


def test_a_shortfall_beyond_available_stock_leaves_the_order_for_review(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 3})
        granted = give(h, "north", "MILK", 2)

        placed = replay(h, keys["north"], [line(granted, 5)])

        assert placed.status_code == 201, placed.text
        order = placed.json()
        assert order["status"] == "confirmed"
        assert order["review"]["code"] == "allowance.uncovered"
        assert order["review"]["details"]["lines"][0]["uncovered"] == 3
        assert order == as_order_model_writes_it(order)
        assert stock_row(h, "MILK") == (1, 0)  # the grant's 2 taken; the 1 left untouched
        listed = h.call("GET", "/api/v1/orders?store=north", h.admin())["items"]
        assert [o["review"]["code"] for o in listed if o["id"] == order["id"]] == [
            "allowance.uncovered"
        ]


def test_another_stores_or_an_unknown_grant_is_refused_before_any_write(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 5})
        granted = give(h, "north", "MILK", 2)
        before = ledger(h, "MILK")

        theirs = replay(h, keys["south"], [line(granted, 1)])
        unknown = replay(h, keys["north"], [{**line(granted, 1), "grant_id": str(uuid.uuid4())}])

        assert (theirs.status_code, theirs.json()["error"]["code"]) == (
            422,
            "allowance.not_yours",
        )
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (
            422,
            "allowance.not_found",
        )
        assert ledger(h, "MILK") == before
        assert grant_row(h, granted["id"]) == (2, "live")
        with h.central.db.connection_context():
            assert Order.select().count() == 0


def test_a_grant_id_that_is_not_a_uuid_is_refused(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 5})
        refused = replay(h, keys["north"], [{"sku": "MILK", "quantity": 1, "grant_id": "x"}])
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, "order.invalid")


def test_the_same_replay_again_answers_the_same_order(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 5})
        granted = give(h, "north", "MILK", 3)
        key = uuid.uuid4().hex

        first = replay(h, keys["north"], [line(granted, 2)], key)
        again = replay(h, keys["north"], [line(granted, 2)], key)

        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        assert grant_row(h, granted["id"]) == (1, "live")
        other = replay(h, keys["north"], [{"sku": "MILK", "quantity": 2}], key)
        assert other.json()["error"]["code"] == "idempotency.mismatch"


def test_mine_says_the_margin_and_centrals_time(database_url):
    clock = FakeClock()
    with running_central(database_url, clock=clock, allowance_margin_s=120) as h:
        keys = seed(h, {"MILK": 5})
        give(h, "north", "MILK", 3)
        mine = h.client.get("/api/v1/allowances/mine", headers={"X-API-Key": keys["north"]})
        assert mine.status_code == 200, mine.text
        assert mine.json()["margin_s"] == 120
        assert mine.json()["server_time"].startswith(clock.now().isoformat()[:19])


def test_cancelling_an_uncovered_sale_gives_back_only_what_it_took(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 3})
        granted = give(h, "north", "MILK", 2)
        placed = replay(h, keys["north"], [line(granted, 5)]).json()
        assert stock_row(h, "MILK") == (1, 0)

        cancelled = h.call("POST", f"/api/v1/orders/{placed['id']}/cancel", h.admin())

        assert cancelled["status"] == "cancelled"
        assert stock_row(h, "MILK") == (3, 0)
        assert ledger(h, "MILK")[-1] == ("cancel", 2, 3)


def test_cancelling_a_sale_that_took_nothing_moves_no_stock(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 2})
        granted = give(h, "north", "MILK", 2)
        h.call("POST", f"/api/v1/allowances/{granted['id']}/write-off", h.admin())
        assert buy(h, keys["south"], "MILK", 2).status_code == 201
        placed = replay(h, keys["north"], [line(granted, 1)]).json()
        assert placed["review"]["code"] == "allowance.uncovered"
        rows = ledger(h, "MILK")

        cancelled = h.call("POST", f"/api/v1/orders/{placed['id']}/cancel", h.admin())

        assert cancelled["status"] == "cancelled"
        assert ledger(h, "MILK") == rows
        assert stock_row(h, "MILK") == (0, 0)
