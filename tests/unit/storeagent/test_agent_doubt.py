"""The till's word is final, with FakeCentral and real replica files: a sale whose outcome
the replica could not record (its write lock held by another connection, as a stalled disk
would hold it) is answered 503 `outcome: voided` and voided, never completed; only sales left
pending by a process that died before answering are completed; the doubt journal carries the
voided ones over a restart; a replayed answer for a key this agent never sent is a conflict.
"""

import json
import stat
from pathlib import Path

import httpx
import peewee
import pytest
from fastapi.testclient import TestClient

from invwire.orders import Line
from storeagent.app import Sales, build_sales, start_sales
from storeagent.http.app import create_app
from storeagent.replica.db import META_BOOTSTRAPPED, PRAGMAS, Replica
from storeagent.replica.local_orders import LocalOrders, LocalSale
from storeagent.sales import rules
from storeagent.sales.desk import PlaceOrder
from storeagent.sales.doubt import Doubt, DoubtJournal, journal_path
from storeagent.sales.offline_policy import OfflinePolicy
from storeagent.sales.schedule import ReplaySchedule
from storeagent.sync.apply import apply_batch
from storeagent.sync.loop import topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record
from storeagent.upstream.client import HttpCentralClient
from storeagent.upstream.resilience import ResilientCentral
from tests.support.agent_fakes import (
    FakeCentral,
    FixedClock,
    ReplicaWriteLock,
    left_by_a_killed_agent,
    product_event,
    stock_event,
)
from tests.support.machine_clock import Monotonic
from tests.support.terminal import TERMINAL_TOKEN, terminal_client

MILK = "MILK-1L"
OFFLINE_ON = OfflinePolicy(enabled=True, max_units_per_order=5, max_queued_units=20)
OFFLINE_OFF = OfflinePolicy()
BUSY_MS = 50  # the agent's busy timeout here: a held lock fails its write in 50 ms, not 5 s


def open_quick_replica(path: Path) -> Replica:
    """The replica as the agent opens it, but giving up on a held lock after BUSY_MS."""
    pragmas = {**PRAGMAS, "busy_timeout": BUSY_MS}
    replica = Replica(peewee.SqliteDatabase(str(path), pragmas=pragmas, timeout=BUSY_MS / 1000))
    replica.migrate()
    return replica


def stock(replica: Replica) -> Replica:
    records = [
        Record(topic, 0, offset, key, value)
        for offset, (topic, key, value) in enumerate(
            [product_event(sku=MILK), stock_event(sku=MILK, quantity=40, stock_version=7)]
        )
    ]
    apply_batch(replica, records, prefix="", now=FixedClock()())
    with replica.transaction():
        replica.set_meta({META_BOOTSTRAPPED: "1"})
    return replica


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "replica.db"


@pytest.fixture
def replica(db):
    opened = stock(open_quick_replica(db))
    yield opened
    opened.close()


@pytest.fixture
def central(clock) -> FakeCentral:
    fake = FakeCentral(clock=clock)
    fake.set_stock(MILK, 40, 7)
    return fake


@pytest.fixture
def lock(db):
    held = ReplicaWriteLock(db)
    yield held
    held.close()


def resilient(central: FakeCentral) -> ResilientCentral:
    return ResilientCentral(central, sleep=lambda _: None, jitter=lambda top: top)


def agent(replica: Replica, central: FakeCentral, clock, policy=OFFLINE_OFF, **kw) -> Sales:
    """One agent process's sales (a new instance id each time: a restart)."""
    schedule = ReplaySchedule(clock=Monotonic(), jitter=lambda top: top)
    return build_sales(
        replica, resilient(central), policy=policy, clock=clock, schedule=schedule, **kw
    )


def till(sales: Sales, replica: Replica) -> TestClient:
    app = create_app(
        replica,
        SyncProgress(),
        store_id="s1",
        topics=topic_names(""),
        orders=sales.desk,
        terminal_token=TERMINAL_TOKEN,
    )
    return terminal_client(app)


def buy(client: TestClient, key: str, quantity: int = 2) -> httpx.Response:
    body = {"lines": [{"sku": MILK, "quantity": quantity}]}
    return client.post("/orders", json=body, headers={"Idempotency-Key": key})


def sale(replica: Replica, key: str) -> LocalSale:
    found = LocalOrders(replica).by_key(key)
    assert found is not None
    return found


def lock_when_central_is_called(central: FakeCentral, lock: ReplicaWriteLock) -> None:
    """The stalled disk: the replica's write lock is taken once the pending sale is saved and
    central is being asked, so the agent cannot record central's answer."""
    central.on_call = lambda key, lines: lock.take()


def error_of(response: httpx.Response) -> tuple[int, str, dict]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["details"]


def drain(sales: Sales, limit: int = 20) -> None:
    steps = 0
    while sales.replayer.step():
        steps += 1
        assert steps < limit


# --- outcome before answer: a confirmation the replica could not record --------------------


@pytest.mark.parametrize("policy", [OFFLINE_OFF, OFFLINE_ON], ids=["offline-off", "offline-on"])
def test_a_sale_whose_confirmation_cannot_be_recorded_is_answered_voided_and_cancelled_at_central(
    replica, central, clock, lock, policy
):
    sales = agent(replica, central, clock, policy)
    lock_when_central_is_called(central, lock)

    response = buy(till(sales, replica), "sale-1")
    lock.release()
    central.on_call = None
    order_id = central.order_for("sale-1")["id"]
    drain(sales)

    status, code, details = error_of(response)
    assert (status, code, details["outcome"]) == (503, "database.unavailable", "voided")
    assert details["local_ref"] == sale(replica, "sale-1").local_ref
    assert central.cancels == [order_id]
    assert central.order_for("sale-1")["status"] == "cancelled"
    assert central.stock[MILK].quantity == 40
    voided = sale(replica, "sale-1")
    assert (voided.status, voided.reason_code, voided.order_id) == (
        "failed",
        rules.VOIDED,
        order_id,
    )
    assert [call.idempotency_key for call in central.calls] == ["sale-1"]  # never replayed


def test_a_refusal_that_cannot_be_recorded_is_voided_without_asking_central_again(
    replica, central, clock, lock
):
    sales = agent(replica, central, clock)
    lock_when_central_is_called(central, lock)
    central.refuse_next(409, "stock.insufficient", "short")

    response = buy(till(sales, replica), "sale-1")
    lock.release()
    clock.advance(60)
    drain(sales)

    assert error_of(response)[2]["outcome"] == "voided"
    failed = sale(replica, "sale-1")
    assert (failed.status, failed.reason_code, failed.outcome_unknown) == (
        "failed",
        rules.NOT_RECORDED,
        False,
    )
    assert (len(central.calls), central.lookups, central.cancels) == (1, [], [])


def test_a_queueing_write_that_fails_is_voided_and_looked_up_once_central_is_done(
    replica, central, clock, lock
):
    """Offline on, central answers nothing (it committed the order, the answers are lost)
    and the queueing write meets the held lock: the sale is not queued, the till is told it
    is void, and after 30 s the order central holds is cancelled."""
    sales = agent(replica, central, clock, OFFLINE_ON)
    lock_when_central_is_called(central, lock)
    central.lose_answers(3)

    response = buy(till(sales, replica), "sale-1")
    lock.release()
    central.on_call = None
    drain(sales)
    before_lookup = (sale(replica, "sale-1").status, list(central.lookups))
    clock.advance(31)
    drain(sales)

    assert error_of(response)[2]["outcome"] == "voided"
    assert sales.desk.offline_queue_depth() == 0
    assert before_lookup == ("failed", [])
    assert central.lookups == ["sale-1"]
    assert central.order_for("sale-1")["status"] == "cancelled"
    assert sale(replica, "sale-1").reason_code == rules.VOIDED


def test_a_till_replaying_a_voided_key_is_refused_before_and_after_the_replica_records_it(
    replica, central, clock, lock
):
    sales = agent(replica, central, clock)
    client = till(sales, replica)
    lock_when_central_is_called(central, lock)
    first = buy(client, "sale-1")
    central.on_call = None

    while_locked = buy(client, "sale-1")
    lock.release()
    sales.replayer.fold_doubts()
    recorded = buy(client, "sale-1")

    assert error_of(first)[2]["outcome"] == "voided"
    for again in (while_locked, recorded):
        assert error_of(again)[:2] == (409, "order.voided")
        assert error_of(again)[2]["local_ref"] == error_of(first)[2]["local_ref"]
    assert len(central.calls) == 1


def test_a_replica_still_locked_keeps_the_doubt_journaled_and_the_replayer_backs_off(
    replica, central, clock, lock, db
):
    sales = agent(replica, central, clock)
    lock_when_central_is_called(central, lock)
    buy(till(sales, replica), "sale-1")

    still_locked = sales.replayer.step()
    journaled = [doubt.key for doubt in DoubtJournal(journal_path(db)).entries()]
    lock.release()
    drain(sales)

    assert (still_locked, journaled) == (False, ["sale-1"])
    assert sales.schedule.status()[1] == 0  # a step that settled one reset the backoff
    assert sale(replica, "sale-1").reason_code == rules.VOIDED
    assert not journal_path(db).exists()


def test_a_replica_that_cannot_take_the_sale_answers_not_sent_and_nothing_happens(
    replica, central, clock, lock
):
    sales = agent(replica, central, clock)
    lock.take()

    response = buy(till(sales, replica), "sale-1")
    lock.release()

    status, code, details = error_of(response)
    assert (status, code, details) == (503, "database.unavailable", {"outcome": "not_sent"})
    assert (central.calls, LocalOrders(replica).by_key("sale-1")) == ([], None)


def test_a_request_that_fails_unexpectedly_after_sending_is_voided_not_completed(
    replica, central, clock
):
    sales = agent(replica, central, clock)

    def bug(key, lines):
        central.on_call = None
        central.place_order(key, lines)  # central committed it, then the agent failed
        raise RuntimeError("a bug")

    central.on_call = bug
    response = buy(till(sales, replica), "sale-1")
    drain(sales)
    clock.advance(31)  # central's answer is unknown: looked up once central is done with it
    drain(sales)

    assert response.status_code == 500
    assert central.order_for("sale-1")["status"] == "cancelled"
    assert sale(replica, "sale-1").reason_code == rules.VOIDED


# --- orphans and restarts ---------------------------------------------------------------------


def test_a_pending_sale_of_this_process_that_no_till_holds_is_voided_never_completed(
    replica, central, clock
):
    sales = agent(replica, central, clock)
    with replica.transaction():
        LocalOrders(replica).add_pending(
            "r1",
            "sale-1",
            rules.fingerprint([Line(MILK, 2)]),
            [Line(MILK, 2)],
            instance_id=sales.instance_id,
        )

    drain(sales)
    clock.advance(31)
    drain(sales)

    failed = sale(replica, "sale-1")
    assert (failed.status, failed.reason_code) == ("failed", rules.NOT_RECORDED)
    assert (central.calls, central.lookups) == ([], ["sale-1"])


def test_a_pending_sale_left_by_a_killed_process_is_completed_by_the_next(replica, central, clock):
    left_by_a_killed_agent(replica, "sale-1", [Line(MILK, 2)])
    sales = agent(replica, central, clock)

    drain(sales)

    assert sale(replica, "sale-1").status == "confirmed"
    assert central.order_for("sale-1")["status"] == "confirmed"


def test_a_voided_sale_journaled_before_a_crash_is_voided_by_the_next_process_not_completed(
    replica, central, clock, lock, db
):
    """The process answered 503 voided, journaled the sale, and died before the replica
    took it: its row is still `pending` under a dead instance id, like an orphan's, yet the
    next process voids it."""
    dead = agent(replica, central, clock)
    lock_when_central_is_called(central, lock)
    buy(till(dead, replica), "sale-1")
    central.on_call = None
    lock.release()
    assert sale(replica, "sale-1").status == "pending"

    restarted = start_sales(
        replica, resilient(central), instance_id="next", policy=OFFLINE_OFF, clock=clock
    )
    at_start = sale(replica, "sale-1")
    drain(restarted)

    assert (at_start.status, at_start.reason_code) == ("failed", rules.NOT_RECORDED)
    assert [call.idempotency_key for call in central.calls] == ["sale-1"]
    assert central.order_for("sale-1")["status"] == "cancelled"
    assert sale(replica, "sale-1").reason_code == rules.VOIDED
    assert not journal_path(db).exists()


def test_new_pending_sales_record_the_instance_that_sent_them(replica, central, clock):
    sales = agent(replica, central, clock, instance_id="this-one")
    left_by_a_killed_agent(replica, "sale-1", [Line(MILK, 2)])

    buy(till(sales, replica), "sale-1")
    buy(till(sales, replica), "sale-2")

    assert [sale(replica, key).instance_id for key in ("sale-1", "sale-2")] == ["this-one"] * 2


# --- the doubt journal --------------------------------------------------------------------------


def doubt(local_ref: str = "r1", key: str = "k1") -> Doubt:
    return Doubt(local_ref, key, True, "o1", "why", "i1", "2026-11-29T10:00:00+00:00")


def test_the_journal_is_private_and_survives_a_reopen(tmp_path):
    path = tmp_path / "replica.db.doubt"
    DoubtJournal(path).add(doubt())

    reopened = DoubtJournal(path)

    assert reopened.entries() == [doubt()]
    assert reopened.holding("k1") == doubt()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_line_torn_by_a_crash_is_dropped_and_the_next_entry_is_kept(tmp_path):
    path = tmp_path / "replica.db.doubt"
    path.write_bytes(doubt().to_line() + b'{"local_ref": "r2", "ke')

    journal = DoubtJournal(path)
    journal.add(doubt("r3", "k3"))

    assert [d.local_ref for d in DoubtJournal(path).entries()] == ["r1", "r3"]
    assert all(json.loads(line) for line in path.read_text().splitlines())


# --- the replayed answer: another agent's sale ----------------------------------------------------


@pytest.fixture
def second_replica(tmp_path):
    (tmp_path / "b").mkdir()
    opened = stock(open_quick_replica(tmp_path / "b" / "replica.db"))
    yield opened
    opened.close()


def test_two_agents_with_one_key_give_one_sale_and_one_key_conflict(
    replica, second_replica, central, clock
):
    first = agent(replica, central, clock)
    second = agent(second_replica, central, clock)

    sold = buy(till(first, replica), "till1-0001")
    refused = buy(till(second, second_replica), "till1-0001")
    again = buy(till(second, second_replica), "till1-0001")
    clock.advance(31)
    drain(second)

    order_id = sold.json()["id"]
    status, code, details = error_of(refused)
    assert (sold.status_code, status, code) == (201, 409, "order.key_conflict")
    assert details["order_id"] == order_id
    assert error_of(again)[:2] == (409, "order.key_conflict")
    conflicted = sale(second_replica, "till1-0001")
    assert (conflicted.status, conflicted.reason_code, conflicted.order_id) == (
        "failed",
        rules.KEY_CONFLICT,
        None,
    )
    assert (len(central.calls), central.lookups, central.cancels) == (2, [], [])
    assert central.stock[MILK].quantity == 38


def test_a_replayed_answer_to_this_agents_own_earlier_attempt_is_a_confirmation(
    replica, central, clock
):
    sales = agent(replica, central, clock)
    central.lose_answers(1)  # the first attempt is committed; its answer times out

    response = buy(till(sales, replica), "sale-1")

    assert response.status_code == 201
    assert [call.idempotency_key for call in central.calls] == ["sale-1", "sale-1"]
    assert sale(replica, "sale-1").status == "confirmed"


def test_a_second_request_for_a_key_another_request_is_sending_is_told_to_try_again(
    replica, central, clock
):
    sales = agent(replica, central, clock)

    with sales.claims.till("sale-1"), pytest.raises(rules.OrderInProgress):
        sales.desk.place(PlaceOrder([{"sku": MILK, "quantity": 1}], "sale-1"))


def test_centrals_idempotent_replayed_header_marks_the_answer_replayed():
    order = {
        "id": "o1",
        "created_at": "2026-11-29T10:00:00+00:00",
        "lines": [{"sku": MILK, "quantity": 1, "stock": {"quantity": 1, "stock_version": 2}}],
    }

    def answering(headers: dict[str, str]) -> HttpCentralClient:
        transport = httpx.MockTransport(lambda _: httpx.Response(201, json=order, headers=headers))
        return HttpCentralClient("http://central", "key", transport=transport)

    replayed = answering({"Idempotent-Replayed": "true"}).place_order("k", [Line(MILK, 1)])
    first = answering({}).place_order("k", [Line(MILK, 1)])

    assert (replayed.replayed, first.replayed) == (True, False)
