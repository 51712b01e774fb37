"""Offline mode with FakeCentral and a temp replica: the queue's limits and stock check, the
replayer's order and outcomes, its capped backoff, sales left pending, and failed sales that
central may hold (looked up and voided)."""

import threading
from functools import partial

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from harness.waiting import eventually
from invwire.logs import EventLog
from invwire.orders import Line
from storeagent.app import Sales, build_sales
from storeagent.http.app import create_app
from storeagent.ops.supervisor import SupervisedTask
from storeagent.replica.db import META_BOOTSTRAPPED, Replica
from storeagent.replica.queries import ReplicaReads
from storeagent.sales.desk import OrderDesk, PlaceOrder
from storeagent.sales.offline_policy import OfflinePolicy, queued_units_by_sku
from storeagent.sales.replay import Replayer
from storeagent.sales.rules import OrderInProgress
from storeagent.sales.schedule import ReplaySchedule, ReplayTuning
from storeagent.sync.apply import apply_batch
from storeagent.sync.loop import topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record
from storeagent.upstream.client import NoCentral
from storeagent.upstream.resilience import BreakerPolicy, CircuitBreaker, ResilientCentral
from tests.support.agent_fakes import (
    FakeCentral,
    FixedClock,
    left_by_a_killed_agent,
    product_event,
    stock_event,
)
from tests.support.machine_clock import Monotonic
from tests.support.terminal import TERMINAL_TOKEN, terminal_client

MILK, BREAD = "MILK-1L", "BREAD"
POLICY = OfflinePolicy(enabled=True, max_units_per_order=5, max_queued_units=8)


def load(replica: Replica, *events: tuple[str, bytes, bytes]) -> None:
    records = [Record(t, 0, offset, key, value) for offset, (t, key, value) in enumerate(events)]
    apply_batch(replica, records, prefix="", now=FixedClock()())


@pytest.fixture
def central(clock) -> FakeCentral:
    fake = FakeCentral(clock=clock)
    fake.set_stock(MILK, 40, 7)
    fake.set_stock(BREAD, 5, 3)
    return fake


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


@pytest.fixture
def resilient(central, monotonic) -> ResilientCentral:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=3, cooldown_s=15), clock=monotonic)
    return ResilientCentral(
        central, breaker=breaker, sleep=lambda _: None, clock=monotonic, jitter=lambda top: top
    )


@pytest.fixture
def schedule(monotonic) -> ReplaySchedule:
    return ReplaySchedule(ReplayTuning(), clock=monotonic, jitter=lambda top: top)


@pytest.fixture
def stocked(replica) -> Replica:
    load(
        replica,
        product_event(sku=MILK, name="Milk 1 L"),
        product_event(sku=BREAD, name="Bread"),
        stock_event(sku=MILK, quantity=40, stock_version=7),
        stock_event(sku=BREAD, quantity=5, stock_version=3),
    )
    with replica.transaction():
        replica.set_meta({META_BOOTSTRAPPED: "1"})
    return replica


def make_sales(replica, resilient, clock, schedule, policy=POLICY) -> Sales:
    return build_sales(replica, resilient, policy=policy, clock=clock, schedule=schedule)


@pytest.fixture
def sales(stocked, resilient, clock, schedule) -> Sales:
    return make_sales(stocked, resilient, clock, schedule)


@pytest.fixture
def desk(sales) -> OrderDesk:
    return sales.desk


@pytest.fixture
def replayer(sales) -> Replayer:
    return sales.replayer


@pytest.fixture
def client(stocked, desk) -> TestClient:
    app = terminal_app(stocked, desk)
    return terminal_client(app)


def terminal_app(replica: Replica, desk: OrderDesk) -> FastAPI:
    return create_app(
        replica,
        SyncProgress(),
        store_id="s1",
        topics=topic_names(""),
        orders=desk,
        terminal_token=TERMINAL_TOKEN,
    )


def buy(client: TestClient, *lines: tuple[str, int], key: str | None = None):
    headers = {} if key is None else {"Idempotency-Key": key}
    body = {"lines": [{"sku": sku, "quantity": qty} for sku, qty in lines]}
    return client.post("/orders", json=body, headers=headers)


def statuses(client: TestClient) -> list[tuple[str, str | None]]:
    """(status, reason) of every sale, oldest first."""
    items = client.get("/orders").json()["items"]
    return [(item["status"], item["reason"]) for item in reversed(items)]


def replica_stock(replica: Replica, sku: str) -> tuple[int, int]:
    level = ReplicaReads(replica).stock_level(sku)
    assert level is not None
    return level.quantity, level.stock_version


def drain(replayer: Replayer, limit: int = 50) -> int:
    steps = 0
    while replayer.step():
        steps += 1
        assert steps < limit
    return steps


# --- queueing a sale offline -----------------------------------------------------------------


def test_with_offline_off_an_unreachable_central_still_answers_503(
    stocked, resilient, clock, schedule, central
):
    desk = make_sales(stocked, resilient, clock, schedule, policy=OfflinePolicy()).desk
    app = terminal_app(stocked, desk)
    central.go_down()

    response = buy(terminal_client(app, raise_server_exceptions=True), (MILK, 1))

    assert (response.status_code, response.json()["error"]["code"]) == (503, "central.unavailable")
    assert "offline" not in response.json()["error"]["details"]
    assert desk.offline_queue_depth() == 0


def test_sale_within_the_limits_is_queued_with_202_and_a_local_reference(client, central, stocked):
    central.go_down()

    response = buy(client, (MILK, 2), (BREAD, 1), key="till1-0001")

    assert response.status_code == 202
    body = response.json()
    assert body == {
        "status": "queued",
        "local_ref": body["local_ref"],
        "lines": [{"sku": BREAD, "quantity": 1}, {"sku": MILK, "quantity": 2}],
        "reason": "allowance.none",  # the store holds no allowance of these SKUs
    }
    assert statuses(client) == [("queued", "central.unavailable: fake central is down")]
    assert replica_stock(stocked, MILK) == (40, 7)


def test_replaying_a_queued_key_answers_the_same_202_without_calling_central(client, central):
    central.go_down()
    first = buy(client, (MILK, 1), key="k1")
    calls = len(central.calls)

    again = buy(client, (MILK, 1), key="k1")

    assert (again.status_code, again.json()) == (202, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(central.calls) == calls


def test_sale_over_the_per_sale_limit_is_not_queued_and_answers_503(client, central):
    central.go_down()

    response = buy(client, (MILK, 6))

    assert response.status_code == 503
    assert response.json()["error"]["details"]["offline"] == {
        "code": "offline.order_too_large",
        "message": "the sale has 6 units; at most 5 per sale may be sold offline",
    }
    assert [status for status, _ in statuses(client)] == ["failed"]


def test_sale_that_would_pass_the_total_of_queued_units_is_not_queued(client, central):
    central.go_down()
    assert buy(client, (MILK, 5)).status_code == 202
    assert buy(client, (MILK, 3)).status_code == 202

    response = buy(client, (MILK, 1))

    assert response.status_code == 503
    assert response.json()["error"]["details"]["offline"]["code"] == "offline.queue_full"


def test_offline_sale_must_fit_the_replica_stock_less_the_queued_sales(client, central):
    central.go_down()
    assert buy(client, (BREAD, 3)).status_code == 202

    response = buy(client, (BREAD, 3))

    # The replica's own check already counts the queued units: 5 - 3 = 2 left.
    assert response.status_code == 409
    assert response.json()["error"]["details"]["lines"] == [
        {"sku": BREAD, "requested": 3, "available": 2}
    ]


def test_queued_units_reduce_what_a_later_online_sale_may_take(client, central):
    central.go_down()
    buy(client, (BREAD, 3))
    central.come_back()
    calls = len(central.calls)

    response = buy(client, (BREAD, 3))

    assert response.status_code == 409
    assert len(central.calls) == calls


def test_two_tills_at_once_cannot_both_queue_the_last_units(sales, central):
    """Both pass the online check (nothing queued yet) and both find central down: the
    offline check and the queueing share one transaction, so only one gets the 4 loaves."""
    central.go_down()
    both_sent = threading.Barrier(2, timeout=5)
    seen: set[str] = set()

    def meet_once(key, lines):
        if key not in seen:
            seen.add(key)
            both_sent.wait()

    central.on_call = meet_once
    results: dict[str, object] = {}

    def till(key: str) -> None:
        try:
            results[key] = sales.desk.place(PlaceOrder([{"sku": BREAD, "quantity": 4}], key))
        except Exception as exc:
            results[key] = exc

    threads = [threading.Thread(target=till, args=(k,)) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    kinds = sorted(type(r).__name__ for r in results.values())
    assert kinds == ["CentralUnavailable", "Queued"]
    [refused] = [r for r in results.values() if type(r).__name__ == "CentralUnavailable"]
    assert refused.details["offline"]["code"] == "offline.stock_short"
    assert queued_units_by_sku(sales.orders.queued_lines()) == {BREAD: 4}


def test_agent_without_a_central_url_never_queues(stocked, clock, schedule):
    desk = make_sales(stocked, ResilientCentral(NoCentral()), clock, schedule).desk

    with pytest.raises(Exception) as caught:
        desk.place(PlaceOrder([{"sku": MILK, "quantity": 1}]))

    assert caught.value.details["offline"]["code"] == "offline.no_central"


def test_sync_status_shows_the_offline_queue(client, central, clock):
    central.go_down()
    buy(client, (MILK, 2))
    clock.advance(90)
    buy(client, (BREAD, 1))

    queue = client.get("/sync/status").json()["offline_queue"]

    assert queue == {
        "offline": "on",
        "depth": 2,
        "units": 3,
        "oldest_age_s": 90.0,
        "overdue": False,
        "rejected": 0,
        "pending": 0,
        "in_doubt": 0,
        "next_attempt_in_s": None,
        "consecutive_failures": 0,
        "last_error": None,
    }


# --- the replayer ----------------------------------------------------------------------------


def test_replayer_sends_queued_sales_oldest_first_with_their_own_keys(
    client, central, replayer, stocked
):
    central.go_down()
    for key in ("s-1", "s-2", "s-3"):
        buy(client, (MILK, 1), key=key)
    central.come_back()
    before = len(central.calls)

    settled = drain(replayer)

    assert settled == 3
    assert [c.idempotency_key for c in central.calls[before:]] == ["s-1", "s-2", "s-3"]
    assert [status for status, _ in statuses(client)] == ["confirmed"] * 3
    assert replica_stock(stocked, MILK) == (37, 10)
    assert client.get("/sync/status").json()["offline_queue"]["depth"] == 0


def test_replay_that_central_refuses_is_rejected_with_its_code_and_message(
    client, central, replayer, desk
):
    central.go_down()
    buy(client, (MILK, 2), key="s-1")
    buy(client, (MILK, 1), key="s-2")
    central.come_back()
    central.refuse_next(409, "stock.insufficient", "Not enough stock for some lines")

    drain(replayer)

    assert statuses(client) == [
        ("rejected", "stock.insufficient: Not enough stock for some lines"),
        ("confirmed", None),
    ]
    rejected = client.get("/orders", params={"status": "rejected"}).json()["items"]
    assert [item["lines"] for item in rejected] == [[{"sku": MILK, "quantity": 2}]]
    assert (desk.rejected_count(), desk.offline_queue_depth()) == (1, 0)
    assert client.get("/sync/status").json()["offline_queue"]["rejected"] == 1


def test_an_online_refusal_is_not_counted_as_rejected_offline(client, central, desk):
    central.refuse_next(409, "stock.insufficient", "short")

    buy(client, (MILK, 1))

    assert [status for status, _ in statuses(client)] == ["rejected"]
    assert desk.rejected_count() == 0


def test_unavailable_central_keeps_the_sale_queued_and_backs_off_capped(
    client, central, replayer, schedule, monotonic
):
    central.go_down()
    buy(client, (MILK, 1))
    delays = []

    for _ in range(9):
        assert not replayer.step()
        delays.append(schedule.status()[0])

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert [status for status, _ in statuses(client)] == ["queued"]
    queue = client.get("/sync/status").json()["offline_queue"]
    assert (queue["consecutive_failures"], queue["next_attempt_in_s"]) == (9, 60.0)
    assert queue["last_error"] == "fake central is down"
    monotonic.now += 25
    assert client.get("/sync/status").json()["offline_queue"]["next_attempt_in_s"] == 35.0


def test_backoff_is_jittered_between_half_and_all_of_the_ceiling(monotonic):
    schedule = ReplaySchedule(clock=monotonic)

    delays = [schedule.failed("down") for _ in range(12)]

    ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))


def test_a_replay_that_reaches_central_resets_the_backoff_and_closes_the_circuit(
    client, central, replayer, resilient
):
    central.go_down()
    for _ in range(3):
        buy(client, (MILK, 1))
    replayer.step()
    assert resilient.status()["circuit"] == "open"
    central.come_back()

    drain(replayer)

    assert resilient.status()["circuit"] == "closed"
    assert client.get("/sync/status").json()["offline_queue"]["consecutive_failures"] == 0


def test_a_till_reaching_central_wakes_the_replayer_and_resets_its_backoff(
    client, central, replayer, schedule
):
    central.go_down()
    buy(client, (MILK, 1))
    replayer.step()
    central.come_back()

    buy(client, (BREAD, 1))

    assert schedule.status() == (None, 0, "fake central is down")


def test_replay_refused_for_the_stores_key_stays_queued_and_backs_off(client, central, replayer):
    central.go_down()
    buy(client, (MILK, 1))
    central.come_back()
    central.refuse_next(401, "auth.invalid", "The credentials are invalid or expired.")

    assert not replayer.step()

    assert [status for status, _ in statuses(client)] == ["queued"]
    assert client.get("/sync/status").json()["offline_queue"]["last_error"] == (
        "central refused the store's API key (auth.invalid)"
    )


def replay_task(replayer: Replayer) -> tuple[SupervisedTask, threading.Event, list[int]]:
    """The replayer, run by a supervised task as the agent does."""
    stop, failures = threading.Event(), []
    task = SupervisedTask(
        "storeagent-replay",
        partial(replayer.run, stop),
        crashed="offline.replayer_crashed",
        stop=stop,
        on_failure=lambda: failures.append(1),
        log=EventLog("storeagent"),
        errors_once_stopping_fail=False,
    )
    return task, stop, failures


def test_replayer_thread_drains_the_queue_and_stops_on_request(client, central, replayer, schedule):
    central.go_down()
    buy(client, (MILK, 1))
    buy(client, (MILK, 1))
    central.come_back()
    thread, stop, failures = replay_task(replayer)

    thread.start()
    eventually(
        lambda: client.get("/sync/status").json()["offline_queue"]["depth"] == 0,
        5,
        "offline queue drained",
        interval=0.1,
    )
    stop.set()
    thread.join(5)

    assert not thread.is_alive()
    assert (thread.failed, failures) == (False, [])
    assert [status for status, _ in statuses(client)] == ["confirmed", "confirmed"]


def test_replayer_thread_that_crashes_marks_itself_failed_and_stops_the_agent(
    client, central, replayer
):
    central.go_down()
    buy(client, (MILK, 1))
    central.come_back()

    def bug(key, lines):
        raise RuntimeError("bug")

    central.on_call = bug
    thread, _, failures = replay_task(replayer)

    thread.start()
    thread.join(5)

    assert (thread.failed, failures) == (True, [1])


# --- sales left pending ----------------------------------------------------------------------


def leave_pending(client, replica, central, key: str, *, committed: bool) -> None:
    """A sale an earlier agent process sent and was killed over before it answered its till:
    central committed it or never saw it."""
    lines = [Line(MILK, 2)]
    left_by_a_killed_agent(replica, key, lines)
    if committed:
        central.place_order(key, lines)
    assert [status for status, _ in statuses(client)][-1] == "pending"


def test_pending_sale_that_central_committed_is_replayed_and_gets_the_same_order(
    client, central, replayer, stocked
):
    leave_pending(client, stocked, central, "sale-1", committed=True)
    order_id = central.order_for("sale-1")["id"]

    drain(replayer)

    [item] = client.get("/orders").json()["items"]
    assert (item["status"], item["order_id"]) == ("confirmed", order_id)
    assert central.stock[MILK].quantity == 38
    assert replica_stock(stocked, MILK) == (38, 8)


def test_pending_sale_that_central_never_saw_is_placed_on_replay(
    client, central, replayer, stocked
):
    leave_pending(client, stocked, central, "sale-1", committed=False)

    drain(replayer)

    assert central.order_for("sale-1")["status"] == "confirmed"
    assert [status for status, _ in statuses(client)] == ["confirmed"]
    assert central.stock[MILK].quantity == 38


def test_pending_sale_a_till_is_sending_is_left_to_the_till(
    client, central, replayer, sales, stocked
):
    leave_pending(client, stocked, central, "sale-1", committed=False)
    calls = len(central.calls)

    with sales.claims.till("sale-1"):
        assert not replayer.step()

    assert len(central.calls) == calls


def test_a_till_asking_for_a_key_the_replayer_holds_is_told_to_try_again(sales):
    with sales.claims.replayer("sale-1") as mine, pytest.raises(OrderInProgress):
        assert mine
        sales.desk.place(PlaceOrder([{"sku": MILK, "quantity": 1}], "sale-1"))


# --- failed sales that central may hold --------------------------------------------------------


def fail_with_lost_answer(client, central, key: str) -> None:
    """Central commits the first attempt but its answer is lost; the retries cannot connect."""

    def then_unreachable(k, lines):
        if len(central.calls) == 2:
            central.go_down(2)

    central.lose_answers(1)
    central.on_call = then_unreachable
    response = buy(client, (MILK, 2), key=key)
    central.on_call = None
    assert response.status_code == 503


@pytest.fixture
def online_only(stocked, resilient, clock, schedule) -> tuple[TestClient, Replayer]:
    sales = make_sales(stocked, resilient, clock, schedule, policy=OfflinePolicy())
    return terminal_client(terminal_app(stocked, sales.desk)), sales.replayer


def test_failed_sale_that_central_committed_is_cancelled_there_and_recorded_voided(
    online_only, central, clock
):
    client, replayer = online_only
    fail_with_lost_answer(client, central, "sale-1")
    order_id = central.order_for("sale-1")["id"]
    assert central.stock[MILK].quantity == 38
    assert client.get("/sync/status").json()["offline_queue"]["in_doubt"] == 1
    clock.advance(31)

    assert replayer.step()

    assert central.cancels == [order_id]
    assert central.stock[MILK].quantity == 40
    assert client.get("/sync/status").json()["offline_queue"]["in_doubt"] == 0
    [item] = client.get("/orders").json()["items"]
    assert (item["status"], item["order_id"]) == ("failed", order_id)
    assert item["reason"].startswith("order.voided: central had recorded the failed sale")


def test_voided_key_replayed_by_the_till_is_refused_with_order_voided(online_only, central, clock):
    client, replayer = online_only
    fail_with_lost_answer(client, central, "sale-1")
    clock.advance(31)
    replayer.step()

    again = buy(client, (MILK, 2), key="sale-1")

    assert (again.status_code, again.json()["error"]["code"]) == (409, "order.voided")


def test_failed_sale_is_not_looked_up_before_central_is_done_with_it(online_only, central, clock):
    client, replayer = online_only
    fail_with_lost_answer(client, central, "sale-1")
    clock.advance(29)

    assert not replayer.step()

    assert central.lookups == []


def test_failed_sale_that_central_does_not_hold_is_looked_up_once(online_only, central, clock):
    client, replayer = online_only
    central.go_down(3, reason="timeout")
    buy(client, (MILK, 2), key="sale-1")
    clock.advance(31)

    assert replayer.step()
    assert not replayer.step()

    assert (central.lookups, central.cancels) == (["sale-1"], [])
    assert statuses(client) == [("failed", "central.unavailable: fake central is down")]


def test_failure_to_connect_is_certain_and_never_looked_up(online_only, central, clock):
    client, replayer = online_only
    central.go_down(3)
    buy(client, (MILK, 2), key="sale-1")
    clock.advance(31)

    assert not replayer.step()

    assert central.lookups == []


def test_failed_sale_replayed_by_the_till_before_the_lookup_is_placed_once(
    online_only, central, clock
):
    client, replayer = online_only
    fail_with_lost_answer(client, central, "sale-1")

    again = buy(client, (MILK, 2), key="sale-1")
    clock.advance(31)

    assert again.status_code == 201
    assert again.json()["order"]["id"] == central.order_for("sale-1")["id"]
    assert not replayer.step()
    assert central.lookups == []
