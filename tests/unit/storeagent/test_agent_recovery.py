"""Sales given back to a restored central (sales.recovery) with FakeCentral and a temp replica:
what is sent and when, each outcome as the replica records it, retries that never sell twice,
backoff, and what /sync/status and /metrics say."""

import pytest
from fastapi.testclient import TestClient

from invwire.events import order_updated
from storeagent.app import Sales, build_sales
from storeagent.http.app import create_app
from storeagent.ops.metrics import AgentMetrics, WatchedState
from storeagent.ops.vitals import Vitals
from storeagent.replica import order_status
from storeagent.replica.db import META_EPOCH, Replica
from storeagent.sales.desk import PlaceOrder
from storeagent.sales.recovery import SalesRecovery
from storeagent.sales.schedule import ReplaySchedule, ReplayTuning
from storeagent.sync.loop import topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.upstream.client import Refused
from storeagent.upstream.resilience import ResilientCentral
from tests.support.agent_fakes import (
    FakeCentral,
    FixedClock,
    bootstrapped,
    product_event,
    stock_event,
)
from tests.support.machine_clock import Monotonic
from tests.support.terminal import TERMINAL_TOKEN, terminal_client

MILK, BREAD = "MILK-1L", "BREAD"


@pytest.fixture
def central(clock) -> FakeCentral:
    fake = FakeCentral(clock=clock)
    fake.set_stock(MILK, 40, 7)
    fake.set_stock(BREAD, 5, 3)
    return fake


@pytest.fixture
def stocked(replica) -> Replica:
    return bootstrapped(
        replica,
        product_event(sku=MILK, name="Milk 1 L"),
        product_event(sku=BREAD, name="Bread"),
        stock_event(sku=MILK, quantity=40, stock_version=7),
        stock_event(sku=BREAD, quantity=5, stock_version=3),
    )


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


@pytest.fixture
def sales(stocked, central, clock, monotonic) -> Sales:
    resilient = ResilientCentral(central, sleep=lambda _: None, clock=monotonic)
    return build_sales(stocked, resilient, clock=clock)


@pytest.fixture
def recovery(sales, stocked, monotonic) -> SalesRecovery:
    """The agent's recovery with a schedule on a clock of the test's."""
    schedule = ReplaySchedule(ReplayTuning(), clock=monotonic, jitter=lambda top: top)
    shelf = sales.recovery._shelf  # the same shelf the agent's recovery writes through
    central = sales.recovery._central
    return SalesRecovery(
        sales.orders, shelf, central, replica_epoch=stocked.epoch, schedule=schedule
    )


def sell(sales: Sales, key: str, *lines: tuple[str, int]) -> str:
    placed = sales.desk.place(
        PlaceOrder([{"sku": sku, "quantity": qty} for sku, qty in lines], idempotency_key=key)
    )
    return placed.local_ref


def restore(central: FakeCentral, replica: Replica, keep=(), epoch: int = 2) -> None:
    """Central restored from a backup holding the orders of `keep`; the replica heard of the
    new epoch (central's republish)."""
    central.restore(keep=keep, epoch=epoch)
    with replica.transaction():
        replica.set_meta({META_EPOCH: str(epoch)})


def sale(sales: Sales, key: str):
    found = sales.orders.by_key(key)
    assert found is not None
    return found


def test_nothing_is_sent_while_central_was_never_restored(sales, recovery, central):
    sell(sales, "k1", (MILK, 2))

    assert recovery.step() is False
    assert central.recoveries == []
    assert recovery.status()["to_check"] == 0


def test_after_a_restore_each_sale_central_lost_is_placed_again_and_one_it_kept_is_present(
    sales, recovery, central, stocked
):
    sell(sales, "kept", (MILK, 2))
    sell(sales, "lost", (MILK, 3), (BREAD, 1))
    lost_order = sale(sales, "lost").order_id
    restore(central, stocked, keep={"kept"})
    central.set_stock(MILK, 35, 20)  # the restored central's stock, before the lost sale

    assert recovery.step() is True
    assert recovery.step() is False  # nothing left: a batch is never sent twice

    [sent] = central.recoveries
    assert [o["idempotency_key"] for o in sent] == ["kept", "lost"]
    lost = sent[1]
    assert lost["id"] == lost_order
    assert lost["lines"] == [
        {"sku": BREAD, "quantity": 1, "unit_price": "1.25"},
        {"sku": MILK, "quantity": 3, "unit_price": "1.25"},
    ]
    assert lost["created_at"] == sale(sales, "lost").central_order["created_at"]
    assert lost["cancelled_at"] is None
    assert (sale(sales, "kept").recovery, sale(sales, "kept").central_epoch) == ("present", 2)
    assert (sale(sales, "lost").recovery, sale(sales, "lost").status) == ("recovered", "confirmed")
    assert central.stock[MILK].quantity == 32
    assert sales.orders.replica.db.execute_sql(
        "SELECT quantity, epoch FROM stock WHERE sku = ?", (MILK,)
    ).fetchone() == (32, 2), "the recovered sale's stock is in the replica at once"
    status = recovery.status()
    assert (status["to_check"], status["present"], status["recovered"]) == (0, 1, 1)


def test_a_sale_whose_stock_was_sold_meanwhile_is_unrecovered_and_the_till_still_sees_it_sold(
    sales, recovery, central, stocked
):
    local_ref = sell(sales, "gone", (BREAD, 4))
    order = sale(sales, "gone").central_order
    restore(central, stocked)
    central.set_stock(BREAD, 1, 9)  # re-sold at the restored central meanwhile

    recovery.step()

    gone = sale(sales, "gone")
    assert (gone.status, gone.reason_code, gone.recovery) == (
        "unrecovered",
        "stock.insufficient",
        "unrecovered",
    )
    assert central.stock[BREAD].quantity == 1, "nothing taken"
    assert recovery.status()["unrecovered"] == 1
    again = sales.desk.place(PlaceOrder([{"sku": BREAD, "quantity": 4}], idempotency_key="gone"))
    assert (again.local_ref, again.order, again.replayed) == (local_ref, order, True)
    assert len(central.calls) == 1, "the till's retry is answered here, never sold again"


def test_unrecovered_sales_are_listed_by_that_status_with_central_s_reason(
    sales, recovery, central, stocked
):
    sell(sales, "gone", (BREAD, 4))
    sell(sales, "fine", (MILK, 1))
    restore(central, stocked)
    central.set_stock(BREAD, 0, 9)
    recovery.step()
    app = create_app(
        stocked,
        SyncProgress(),
        store_id="s1",
        topics=topic_names(""),
        orders=sales.desk,
        recovery=recovery.status,
        terminal_token=TERMINAL_TOKEN,
    )
    client: TestClient = terminal_client(app)

    listed = client.get("/orders", params={"status": "unrecovered"}).json()["items"]
    status = client.get("/sync/status").json()["recovery"]

    assert [item["status"] for item in listed] == ["unrecovered"]
    assert listed[0]["reason"].startswith("stock.insufficient: ")
    assert (status["epoch"], status["to_check"], status["recovered"], status["unrecovered"]) == (
        2,
        0,
        1,
        1,
    )


def test_a_key_central_holds_with_other_lines_is_a_conflict_and_unrecovered(
    sales, recovery, central, stocked
):
    sell(sales, "k", (MILK, 1))
    restore(central, stocked)
    central.place_order("k", [], request_id=None)  # another sale took the key meanwhile

    recovery.step()

    assert (sale(sales, "k").status, sale(sales, "k").recovery) == ("unrecovered", "conflict")
    assert sale(sales, "k").reason_code == "idempotency.mismatch"


def test_central_down_keeps_every_sale_and_backs_off_until_it_answers(
    sales, recovery, central, stocked, monotonic
):
    sell(sales, "lost", (MILK, 2))
    restore(central, stocked)
    central.go_down()

    assert recovery.step() is False
    status = recovery.status()
    assert (status["to_check"], status["consecutive_failures"]) == (1, 1)
    assert status["next_attempt_in_s"] == 1.0
    assert "down" in status["last_error"]

    central.come_back()
    assert recovery.step() is True
    assert sale(sales, "lost").recovery == "recovered"
    assert recovery.status()["consecutive_failures"] == 0


def test_one_sale_central_refuses_by_itself_is_unrecovered_and_the_rest_go_on(
    sales, recovery, central, stocked
):
    sell(sales, "bad", (MILK, 1))
    sell(sales, "good", (MILK, 1))
    restore(central, stocked)
    central.recover_refusal = Refused(422, "request.invalid", "bad created_at", {"index": 0})

    assert recovery.step() is True
    central.recover_refusal = None
    assert recovery.step() is True

    assert (sale(sales, "bad").status, sale(sales, "bad").reason_code) == (
        "unrecovered",
        "recovery.refused",
    )
    assert sale(sales, "good").recovery == "recovered"
    assert [o["idempotency_key"] for o in central.recoveries[-1]] == ["good"]


def test_a_refusal_of_the_whole_call_backs_off_and_marks_nothing(sales, recovery, central, stocked):
    sell(sales, "lost", (MILK, 1))
    restore(central, stocked)
    central.recover_refusal = Refused(401, "auth.invalid", "revoked key")

    assert recovery.step() is False

    assert sale(sales, "lost").recovery is None
    assert "auth.invalid" in recovery.status()["last_error"]


def test_a_sale_confirmed_by_the_restored_central_is_not_sent_and_its_answer_tells_the_epoch(
    sales, recovery, central, stocked
):
    sell(sales, "before", (MILK, 1))
    central.restore(epoch=2)  # the replica has not heard of it: no record of epoch 2 yet
    sell(sales, "after", (MILK, 1))

    assert recovery.known_epoch() == 2
    recovery.step()

    assert [o["idempotency_key"] for o in central.recoveries[0]] == ["before"]
    assert sale(sales, "after").recovery is None


def test_a_sale_central_cancelled_is_sent_with_its_cancel_time(sales, recovery, central, stocked):
    sell(sales, "k", (MILK, 1))
    order_id = str(sale(sales, "k").order_id)
    event = order_updated(order_id, "s1", "cancelled", FixedClock()())
    with stocked.transaction():
        order_status.record(stocked.db, event, updated_at="2026-12-01T10:00:00+00:00")
    restore(central, stocked)

    recovery.step()

    assert central.recoveries[0][0]["cancelled_at"] == event.cancelled_at


def test_the_metrics_show_sales_to_recover_and_unrecovered(sales, recovery, central, stocked):
    sell(sales, "a", (BREAD, 3))
    sell(sales, "b", (MILK, 1))
    restore(central, stocked)
    metrics = AgentMetrics()
    metrics.watch(
        WatchedState(Vitals(stocked, sales.orders, SyncProgress()), recovery=recovery.status)
    )

    before = metrics.registry.get_sample_value("storeagent_sales_to_recover")
    central.set_stock(BREAD, 0, 9)
    recovery.step()

    assert before == 2
    assert metrics.registry.get_sample_value("storeagent_sales_to_recover") == 0
    assert metrics.registry.get_sample_value("storeagent_sales_unrecovered") == 1
