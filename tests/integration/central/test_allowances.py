"""Allowances at central: units set aside for one store are taken by nobody else, its own
orders take them after what anyone may take, and each move has its ledger row and event."""

import json
import uuid
from collections import defaultdict

import pytest

from central.models import Allowance, Movement, Outbox, Stock
from central.services import accounts, allowances, orders
from central.services.principal import Principal, Role
from central.uow import UnitOfWork
from invwire.errors.central import (
    AllowanceClosed,
    InsufficientStock,
    ProductNotFound,
    StoreInactive,
    StoreNotFound,
)
from tests.support.central_harness import running_central
from tests.support.contract import as_order_model_writes_it

pytestmark = pytest.mark.integration

ADMIN = Principal("root", Role.ADMIN)
NORTH = Principal("north", Role.STORE, "north")
STORES = ("north", "south")


def seed(h, stock):
    admin = h.admin()
    cat = h.call("POST", "/api/v1/categories", admin, json={"name": "Held"})
    for sku, quantity in stock.items():
        product = {"sku": sku, "name": sku, "price": "2.00", "category_id": cat["id"]}
        h.call("POST", "/api/v1/products", admin, json=product)
        h.call("PUT", f"/api/v1/stock/{sku}", admin, json={"quantity": quantity})
    return {
        s: h.call("POST", "/api/v1/stores", admin, json={"id": s, "name": s})["api_key"]
        for s in STORES
    }


def give(h, store, sku, units, ttl_s=3600):
    wanted = allowances.GrantRequest(store, sku, units, ttl_s)
    return allowances.grant(h.central.uow(), ADMIN, wanted)


def buy(h, key, sku, quantity):
    return h.client.post(
        "/api/v1/orders",
        json={"lines": [{"sku": sku, "quantity": quantity}]},
        headers={"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex},
    )


def stock_row(h, sku):
    with h.central.db.connection_context():
        row = Stock.get_by_id(sku)
        return row.quantity, row.held


def ledger(h, sku):
    with h.central.db.connection_context():
        rows = Movement.select().where(Movement.sku == sku).order_by(Movement.id)
        return [(m.reason, m.delta, m.quantity) for m in rows]


def stock_events(h, sku):
    with h.central.db.connection_context():
        rows = Outbox.select().where(Outbox.key == sku).order_by(Outbox.id)
        data = [json.loads(row.payload)["data"] for row in rows]
    return [(d["reason"], d["delta"], d["quantity"]) for d in data if "reason" in d]


def test_a_grant_sets_units_aside_with_its_ledger_row_and_event(database_url):
    with running_central(database_url) as h:
        seed(h, {"MILK": 10})
        granted = give(h, "north", "MILK", 4)

        assert (granted["units"], granted["remaining"], granted["state"]) == (4, 4, "live")
        assert stock_row(h, "MILK") == (6, 4)
        assert ledger(h, "MILK")[-1] == ("allowance.granted", -4, 6)
        assert stock_events(h, "MILK")[-1] == ("allowance.granted", -4, 6)
        assert h.call("GET", "/api/v1/stock/MILK", h.admin())["quantity"] == 6


def test_a_grant_beyond_what_is_available_sets_nothing_aside(database_url):
    with running_central(database_url) as h:
        seed(h, {"MILK": 3})
        give(h, "north", "MILK", 2)
        with pytest.raises(InsufficientStock):
            give(h, "south", "MILK", 2)
        assert stock_row(h, "MILK") == (1, 2)
        with h.central.db.connection_context():
            assert Allowance.select().count() == 1


def test_a_grant_needs_a_known_active_store_and_a_known_sku(database_url):
    with running_central(database_url) as h:
        seed(h, {"MILK": 3})
        with pytest.raises(StoreNotFound):
            give(h, "nowhere", "MILK", 1)
        with pytest.raises(ProductNotFound):
            give(h, "north", "NO-SUCH", 1)
        accounts.deactivate_store(h.central.uow(), "south")
        with pytest.raises(StoreInactive):
            give(h, "south", "MILK", 1)
        assert stock_row(h, "MILK") == (3, 0)


def test_a_return_gives_the_unused_units_back_once(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 5})
        granted = give(h, "north", "MILK", 4)
        assert buy(h, keys["north"], "MILK", 2).status_code == 201  # 1 of them from its grant

        closed = allowances.return_grant(h.central.uow(), ADMIN, granted["id"], 300)

        assert (closed["state"], closed["remaining"]) == ("closed", 0)
        assert stock_row(h, "MILK") == (3, 0)
        assert ledger(h, "MILK")[-1] == ("allowance.returned", 3, 3)
        assert stock_events(h, "MILK")[-1] == ("allowance.returned", 3, 3)
        with pytest.raises(AllowanceClosed):
            allowances.return_grant(h.central.uow(), ADMIN, granted["id"], 300)
        assert stock_row(h, "MILK") == (3, 0)


def test_other_stores_never_take_held_units(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 5})
        give(h, "north", "MILK", 4)

        refused = buy(h, keys["south"], "MILK", 2)

        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "stock.insufficient"
        assert refused.json()["error"]["details"]["lines"][0]["available"] == 1
        assert stock_row(h, "MILK") == (1, 4)


def test_a_stores_order_takes_what_anyone_may_take_first_then_its_own_grant(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 5})
        granted = give(h, "north", "MILK", 4)

        placed = buy(h, keys["north"], "MILK", 3)

        assert placed.status_code == 201, placed.text
        assert placed.json()["lines"][0]["stock"]["quantity"] == 0
        assert stock_row(h, "MILK") == (0, 2)
        order_id = placed.json()["id"]
        assert ledger(h, "MILK")[-2:] == [("allowance.used", 2, 3), ("order", -3, 0)]
        with h.central.db.connection_context():
            assert Allowance.get(Allowance.id == granted["id"]).remaining == 2
            used = Movement.select().where(Movement.reason == "allowance.used").get()
            assert used.order_id == order_id
        assert buy(h, keys["north"], "MILK", 3).status_code == 409  # 2 left, all its own
        assert buy(h, keys["north"], "MILK", 2).status_code == 201
        assert stock_row(h, "MILK") == (0, 0)


def test_an_expired_grant_is_not_drawn_on_by_orders(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 2})
        granted = give(h, "north", "MILK", 2)
        with h.central.db.connection_context():
            row = Allowance.get(Allowance.id == granted["id"])
            Allowance.update(expires_at=row.created_at).where(Allowance.id == row.id).execute()

        assert buy(h, keys["north"], "MILK", 1).status_code == 409
        assert stock_row(h, "MILK") == (0, 2)


def test_grants_are_listed_newest_first_a_page_at_a_time(database_url):
    with running_central(database_url) as h:
        seed(h, {"MILK": 10, "EGGS": 10})
        made = [give(h, store, sku, 1) for store in STORES for sku in ("MILK", "EGGS")]
        uow = h.central.uow()

        first = allowances.list_grants(uow, allowances.GrantFilter(limit=3))
        rest = allowances.list_grants(
            uow, allowances.GrantFilter(limit=3, before=first["next_before"])
        )

        ids = [g["id"] for g in first["items"] + rest["items"]]
        assert ids == [g["id"] for g in reversed(made)]
        assert rest["next_before"] is None
        north = allowances.list_grants(uow, allowances.GrantFilter(store="north", sku="EGGS"))
        assert [g["id"] for g in north["items"]] == [made[1]["id"]]


def test_the_ledger_adds_up_to_what_is_available_and_what_is_held(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 9})
        give(h, "north", "MILK", 3)
        south = give(h, "south", "MILK", 2)
        buy(h, keys["north"], "MILK", 6)
        allowances.return_grant(h.central.uow(), ADMIN, south["id"], 300)

        sums = defaultdict(int)
        for reason, delta, _ in ledger(h, "MILK"):
            sums[reason.startswith("allowance.")] += delta
        quantity, held = stock_row(h, "MILK")
        assert sums[False] + sums[True] == quantity
        assert -sums[True] == held == 1  # north has 1 of its 3 left; south gave its 2 back
        assert sums[False] == quantity + held == 9 - 6


def test_an_order_says_what_it_took_from_its_stores_grants_and_its_statement_counts_it(
    database_url,
):
    with running_central(database_url) as h:
        keys = seed(h, {"MILK": 5, "EGGS": 9})
        granted = give(h, "north", "MILK", 4)
        key = uuid.uuid4().hex
        body = {"lines": [{"sku": "MILK", "quantity": 3}, {"sku": "EGGS", "quantity": 1}]}
        headers = {"X-API-Key": keys["north"], "Idempotency-Key": key}

        placed = h.client.post("/api/v1/orders", json=body, headers=headers)
        again = h.client.post("/api/v1/orders", json=body, headers=headers)
        plain = buy(h, keys["north"], "EGGS", 1)

        drew = [{"grant_id": granted["id"], "sku": "MILK", "units": 2}]
        assert placed.status_code == 201, placed.text
        assert placed.json()["allowances"] == drew  # 1 anyone's, then 2 of its own
        assert placed.json() == as_order_model_writes_it(placed.json())
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["allowances"] == drew  # a lost answer asked again says the same
        order = h.client.get(f"/api/v1/orders/{placed.json()['id']}", headers=h.admin())
        assert order.json()["allowances"] == drew
        assert plain.json()["allowances"] == []
        with h.central.db.connection_context():
            Allowance.update(expires_at=Allowance.expires_at.python_value("2000-01-01")).where(
                Allowance.id == granted["id"]
            ).execute()
        statement = h.client.post(
            f"/api/v1/allowances/{granted['id']}/statement",
            json={"sold": 2},
            headers={"X-API-Key": keys["north"]},
        )
        assert statement.status_code == 200, statement.text
        assert statement.json()["state"] == "closed"
        assert stock_row(h, "MILK") == (2, 0)


class WritesAtCommit(UnitOfWork):
    """The real unit of work, noting the statements handed to `later` (made at the commit,
    with the outbox rows: in one query where the database takes several)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.deferred: list[str] = []

    def later(self, call, check=None):
        if call is not None:
            self.deferred.append(call.sql.split(" SET ")[0].split(" (")[0])
        super().later(call, check)


def test_an_order_drawing_on_its_grants_writes_them_at_the_commit_with_its_outbox_rows(
    database_url,
):
    with running_central(database_url) as h:
        seed(h, {"MILK": 5})
        granted = give(h, "north", "MILK", 4)
        uow = WritesAtCommit(h.central.db, h.central.clock)

        placed = orders.place_order(uow, NORTH, uuid.uuid4().hex, [{"sku": "MILK", "quantity": 3}])

        drew = [{"grant_id": granted["id"], "sku": "MILK", "units": 2}]
        assert placed.order["allowances"] == drew
        assert [statement.replace("`", '"') for statement in uow.deferred] == [
            'UPDATE "stock"',
            'INSERT INTO "stock_movements"',
            'UPDATE "allowances"',
            'UPDATE "orders"',
            'INSERT INTO "order_lines"',
        ]
        with h.central.db.connection_context():
            assert Allowance.get(Allowance.id == granted["id"]).remaining == 2
        assert stock_row(h, "MILK") == (0, 2)
