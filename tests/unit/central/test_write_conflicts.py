"""Write conflicts (Galera certification failures, error 1213) are run again whole by the unit
of work, a bounded number of times; a node out of its cluster (1047) answers 503."""

from __future__ import annotations

import json

import peewee
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from central.api import errors as api_errors
from central.models import Movement, Order, Outbox, RelayLease, Stock
from central.outbox import Relay
from central.services import catalog, inventory, orders
from central.services.principal import Principal
from central.uow import ConflictRetry, UnitOfWork
from invwire.errors.central import NodeUnavailable, WriteConflict
from invwire.events import StockChanged
from tests.support.central_fakes import FakeClock, FakePublisher
from tests.support.galera_fakes import GaleraLikeSqlite, galera_like_database, mysql_error

from .conftest import ADMIN

STORE = Principal("store:s1", "store", "s1")


@pytest.fixture
def db(tmp_path):
    database = galera_like_database(str(tmp_path / "central.db"))
    yield database
    database.close()


@pytest.fixture
def waits():
    return []


@pytest.fixture
def uow_of(db, waits):
    """`uow_of()` a unit of work on the Galera-like database, its waits recorded, not slept."""
    clock = FakeClock()

    def make(attempts: int = 5, on_commit=None) -> UnitOfWork:
        retry = ConflictRetry(attempts=attempts, sleep=waits.append, jitter=lambda: 0.5)
        return UnitOfWork(db, clock, on_commit, retry)

    return make


def a_product_with_stock(uow_of, sku: str = "MILK-1L", quantity: int = 10) -> None:
    category = catalog.create_category(uow_of(), "Dairy")
    catalog.create_product(
        uow_of(), catalog.NewProduct(sku=sku, name="Milk", price="1.25", category_id=category["id"])
    )
    inventory.set_stock(uow_of(), ADMIN, sku, quantity)


def stock_changes(db: GaleraLikeSqlite) -> list[int]:
    with db.connection_context():
        rows = Outbox.select().where(Outbox.topic == "inventory-updated").order_by(Outbox.id)
        return [json.loads(row.payload)["data"]["stock_version"] for row in rows]


def test_a_commit_lost_to_another_node_runs_the_whole_transaction_again(db, uow_of, waits):
    a_product_with_stock(uow_of)
    woken = []
    db.conflicts = 2
    uow = uow_of(on_commit=lambda: woken.append(True))
    runs = []

    def adjust() -> None:
        runs.append(1)
        stock = Stock.get_by_id("MILK-1L")
        stock.quantity, stock.version = stock.quantity - 1, stock.version + 1
        stock.save()
        uow.record(
            StockChanged(
                sku="MILK-1L",
                quantity=stock.quantity,
                delta=-1,
                reason="adjust",
                stock_version=stock.version,
            )
        )

    uow.run(adjust)

    assert len(runs) == 3 and db.refused == 2
    assert len(waits) == 2
    with db.connection_context():
        assert Stock.get_by_id("MILK-1L").quantity == 9
    assert stock_changes(db) == [1, 2], "the lost attempts' events were rolled back with them"
    assert woken == [True], "the relay is woken once, after the commit that held"


def test_an_order_that_lost_a_conflict_is_placed_once_under_its_first_id(db, uow_of):
    a_product_with_stock(uow_of, quantity=10)
    db.conflicts = 1
    lines = [{"sku": "MILK-1L", "quantity": 3}]

    placed = orders.place_order(uow_of(), STORE, "key-1", lines)
    again = orders.place_order(uow_of(), STORE, "key-1", lines)

    assert not placed.replayed and again.replayed
    assert again.order["id"] == placed.order["id"]
    with db.connection_context():
        assert Order.select().count() == 1
        assert Stock.get_by_id("MILK-1L").quantity == 7
        assert [m.delta for m in Movement.select().order_by(Movement.id)] == [10, -3]
    assert stock_changes(db) == [1, 2]


def test_stock_set_adjust_and_cancel_ride_through_a_conflict(db, uow_of):
    a_product_with_stock(uow_of, quantity=10)
    order = orders.place_order(uow_of(), STORE, "k", [{"sku": "MILK-1L", "quantity": 4}]).order
    for change in (
        lambda: inventory.set_stock(uow_of(), ADMIN, "MILK-1L", 20),
        lambda: inventory.adjust_stock(uow_of(), ADMIN, "MILK-1L", -5),
        lambda: orders.cancel_order(uow_of(), STORE, order["id"]),
    ):
        db.conflicts = 1
        change()
        assert db.refused and db.conflicts == 0
    with db.connection_context():
        assert Stock.get_by_id("MILK-1L").quantity == 19
        assert Order.get(Order.id == order["id"]).status == "cancelled"
    assert stock_changes(db) == [1, 2, 3, 4, 5]


def test_conflicts_past_the_bound_answer_a_retryable_503_and_change_nothing(db, uow_of, waits):
    a_product_with_stock(uow_of, quantity=10)
    db.conflicts = 99
    before = stock_changes(db)

    with pytest.raises(WriteConflict) as refused:
        inventory.adjust_stock(uow_of(attempts=5), ADMIN, "MILK-1L", -1)

    error = refused.value
    assert (error.status, error.code) == (503, "database.write_conflict")
    assert error.details == {"retry_after": 1, "attempts": 5}
    assert db.refused == 5 and len(waits) == 4
    db.conflicts = 0
    with db.connection_context():
        assert Stock.get_by_id("MILK-1L").quantity == 10
    assert stock_changes(db) == before


def test_other_database_errors_are_not_run_again(uow_of, waits):
    runs = []

    def fails() -> None:
        runs.append(1)
        raise mysql_error(1205, "Lock wait timeout exceeded; try restarting transaction")

    with pytest.raises(peewee.OperationalError):
        uow_of().run(fails)
    assert runs == [1] and waits == []


def test_inside_an_open_transaction_only_the_outermost_retries(db, uow_of):
    a_product_with_stock(uow_of)
    db.conflicts = 1
    outer, inner_runs = uow_of(), []

    def inner() -> None:
        inner_runs.append(1)
        inventory.set_in_tx(outer, ADMIN, "MILK-1L", 3, "set")

    outer.run(lambda: uow_of().run(inner))

    assert len(inner_runs) == 2, "the outer transaction ran twice, the inner once each time"
    with db.connection_context():
        assert Stock.get_by_id("MILK-1L").quantity == 3


def test_waits_double_from_10_ms_up_to_a_cap_with_jitter():
    low = ConflictRetry(jitter=lambda: 0.0)
    high = ConflictRetry(jitter=lambda: 0.999999)
    assert [low.wait(n) for n in (1, 2, 3, 4)] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert [high.wait(n) for n in (1, 2, 3, 4)] == pytest.approx([0.01, 0.02, 0.04, 0.08])
    assert high.wait(20) == pytest.approx(0.2), "capped"


def test_a_lost_lease_race_is_standby_not_a_failure(db):
    clock = FakeClock()
    relay = Relay(db, FakePublisher(), clock)
    db.conflicts = 1

    assert relay.run_once() == 0
    assert not relay.stats.leader and relay.stats.failures == 0

    relay.run_once()
    assert relay.stats.leader
    with db.connection_context():
        assert RelayLease.get().owner == relay.owner


def error_app(db: GaleraLikeSqlite) -> TestClient:
    """The API's error mapping, over one route that reads the Galera-like database."""
    app = FastAPI()
    api_errors.install(app)

    @app.get("/stock")
    def stock() -> dict[str, object]:
        return inventory.get_stock(UnitOfWork(db, FakeClock()), "MILK-1L")

    @app.post("/conflict")
    def conflict() -> None:
        raise mysql_error(1213, "WSREP detected deadlock/conflict and aborted the transaction")

    return TestClient(app)


def test_a_node_out_of_its_cluster_answers_503_with_retry_after(db, uow_of):
    a_product_with_stock(uow_of)
    client = error_app(db)
    assert client.get("/stock").status_code == 200
    db.out_of_cluster = True

    response = client.get("/stock")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == NodeUnavailable.code


def test_a_conflict_outside_a_retrying_use_case_answers_503_not_500(db):
    response = error_app(db).post("/conflict")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "database.write_conflict"
