"""Central's later status of this store's orders at the store (FakeCentral, a temp replica):
`order.updated` events kept for this store only, exactly once in effect, in any order with
the sale's own confirmation; the till's list, filters and lookup; cancel through the agent."""

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from invwire.orders import STORE_STATUSES
from storeagent.app import Sales, build_sales
from storeagent.http.app import create_app
from storeagent.replica.allowances import Allowances, FetchedGrant
from storeagent.replica.db import META_BOOTSTRAPPED, SCHEMA_VERSION, Replica, open_replica
from storeagent.replica.local_orders import LocalOrders
from storeagent.sales.offline_policy import OfflinePolicy
from storeagent.sales.schedule import ReplaySchedule, ReplayTuning
from storeagent.sync.apply import BatchResult, apply_batch
from storeagent.sync.loop import topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record, TopicPartition
from storeagent.upstream.client import CentralRefusedCall, CentralUnavailable, HttpCentralClient
from storeagent.upstream.resilience import BreakerPolicy, CircuitBreaker, ResilientCentral
from tests.support.agent_fakes import (
    FakeCentral,
    FixedClock,
    order_event,
    product_event,
    stock_event,
)
from tests.support.machine_clock import Monotonic
from tests.support.terminal import TERMINAL_TOKEN, terminal_client

STORE = "s1"
MILK = "MILK-1L"
OFFLINE = OfflinePolicy(enabled=True, max_units_per_order=5, max_queued_units=8)


def load(replica: Replica, *events: tuple[str, bytes, bytes], offset: int = 0) -> BatchResult:
    records = [Record(t, 0, offset + n, key, value) for n, (t, key, value) in enumerate(events)]
    return apply_batch(replica, records, prefix="", now=FixedClock()(), store_id=STORE)


@pytest.fixture
def central(clock) -> FakeCentral:
    fake = FakeCentral(STORE, clock=clock)
    fake.set_stock(MILK, 40, 7)
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
def stocked(replica) -> Replica:
    load(replica, product_event(sku=MILK), stock_event(sku=MILK, quantity=40, stock_version=7))
    with replica.transaction():
        replica.set_meta({META_BOOTSTRAPPED: "1"})
    return replica


def make_sales(replica, resilient, clock, monotonic, policy=OFFLINE) -> Sales:
    schedule = ReplaySchedule(ReplayTuning(), clock=monotonic, jitter=lambda top: top)
    return build_sales(
        replica, resilient, policy=policy, clock=clock, schedule=schedule, store_id=STORE
    )


@pytest.fixture
def sales(stocked, resilient, clock, monotonic) -> Sales:
    return make_sales(stocked, resilient, clock, monotonic)


def terminal_app(replica: Replica, sales: Sales) -> FastAPI:
    return create_app(
        replica,
        SyncProgress(),
        store_id=STORE,
        topics=topic_names(""),
        orders=sales.desk,
        terminal_token=TERMINAL_TOKEN,
    )


@pytest.fixture
def client(stocked, sales) -> TestClient:
    return terminal_client(terminal_app(stocked, sales))


def buy(client: TestClient, quantity: int = 2, key: str | None = None):
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(
        "/orders", json={"lines": [{"sku": MILK, "quantity": quantity}]}, headers=headers
    )


def sale_list(client: TestClient, **params: str) -> list[dict]:
    response = client.get("/orders", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def cancelled_at_central(order_id: str, **overrides) -> tuple[str, bytes, bytes]:
    return order_event(order_id=order_id, store_id=STORE, **overrides)


# --- the event at the store ------------------------------------------------------------------


def test_a_sale_cancelled_at_central_shows_cancelled_when_its_event_is_applied(client, stocked):
    order = buy(client).json()

    result = load(stocked, cancelled_at_central(order["id"]))

    [sale] = sale_list(client)
    assert (result.applied, sale["status"], sale["order_id"]) == (1, "cancelled", order["id"])
    assert sale["cancelled_at"] == "2026-11-29T10:05:00+00:00"
    assert sale["total"] == order["total"]
    assert client.get(f"/orders/{order['local_ref']}").json() == sale


def test_the_status_filters_agree_with_the_status_shown(client, stocked):
    kept = buy(client, key="kept").json()
    dropped = buy(client, key="dropped").json()
    load(stocked, cancelled_at_central(dropped["id"]))

    assert [s["order_id"] for s in sale_list(client, status="cancelled")] == [dropped["id"]]
    assert [s["order_id"] for s in sale_list(client, status="confirmed")] == [kept["id"]]


def test_another_stores_event_is_not_kept(client, stocked):
    order = buy(client).json()

    result = load(stocked, order_event(order_id=order["id"], store_id="s2"))

    assert (result.applied, result.stale) == (0, 1)
    assert sale_list(client)[0]["status"] == "confirmed"
    rows = stocked.db.execute_sql("SELECT COUNT(*) FROM order_status").fetchone()
    assert rows == (0,)


def test_an_event_applied_twice_or_an_older_status_after_it_changes_nothing(client, stocked):
    order = buy(client).json()
    cancelled = cancelled_at_central(order["id"])
    confirmed = cancelled_at_central(order["id"], status="confirmed", version=1, cancelled_at=None)

    first = load(stocked, cancelled)
    again = load(stocked, cancelled, confirmed, offset=1)

    assert (first.applied, again.applied, again.stale) == (1, 0, 2)
    assert sale_list(client)[0]["status"] == "cancelled"


def test_the_event_and_its_offset_are_stored_in_one_transaction(client, stocked):
    order = buy(client).json()

    load(stocked, cancelled_at_central(order["id"]), offset=41)

    assert stocked.stored_offsets()[TopicPartition("order-updated", 0)] == 42


def test_a_poison_order_record_is_dead_lettered_and_the_batch_goes_on(client, stocked):
    order = buy(client).json()
    wrong_version = cancelled_at_central(order["id"], version=1)

    result = load(stocked, wrong_version, cancelled_at_central(order["id"]), offset=7)

    assert (result.dead_lettered, result.applied) == (1, 1)
    assert dict(result.dead_letter_reasons) == {"field.invalid": 1}
    assert stocked.stored_offsets()[TopicPartition("order-updated", 0)] == 9
    assert sale_list(client)[0]["status"] == "cancelled"


def test_the_status_is_kept_apart_so_it_joins_a_confirmation_recorded_later(client, stocked, sales):
    """The event is applied while the sale is still pending (no order id recorded yet)."""
    orders = LocalOrders(stocked, FixedClock(), STORE)
    with orders.transaction():
        orders.add_pending("ref-1", "key-1", "print", [])
    order_id = "7d1e9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13"

    load(stocked, cancelled_at_central(order_id))
    assert sale_list(client)[0]["status"] == "pending"
    with orders.transaction():
        orders.confirm("ref-1", order_id, {"id": order_id, "total": "2.50"})

    assert sale_list(client)[0]["status"] == "cancelled"


def test_a_voided_sale_stays_failed_when_its_cancellation_comes_back(client, stocked):
    orders = LocalOrders(stocked, FixedClock(), STORE)
    order_id = "7d1e9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13"
    with orders.transaction():
        orders.add_pending("ref-1", "key-1", "print", [])
        orders.void("ref-1", order_id, "central had recorded the failed sale; cancelled there")

    load(stocked, cancelled_at_central(order_id))

    [sale] = sale_list(client)
    assert (sale["status"], sale["cancelled_at"]) == ("failed", None)
    assert sale["reason"].startswith("order.voided: ")


def test_every_status_shown_can_be_filtered_on(client, stocked, central):
    confirmed = buy(client, key="confirmed").json()
    load(stocked, cancelled_at_central(buy(client, key="cancelled").json()["id"]))
    central.refuse_next(409, "stock.insufficient", "gone")
    buy(client, key="rejected")
    central.go_down()
    buy(client, key="queued")
    buy(client, 6, key="failed")  # over the offline limit: not queued, failed
    central.come_back()
    buy(client, key="unrecovered")  # then lost by a restored central (sales.recovery)
    orders = LocalOrders(stocked, FixedClock(), STORE)
    with orders.transaction():
        orders.add_pending("ref-p", "pending", "print", [])
        lost = orders.by_key("unrecovered")
        assert lost is not None
        orders.unrecovered(lost.local_ref, 2, "unrecovered", "stock.insufficient", "re-sold")
        grant = FetchedGrant("g1", MILK, 5, 5, "2999-01-01T00:00:00+00:00")
        Allowances(stocked).record_fetch(
            [grant], mark=0, fetched_at="t", margin_s=1, server_time=None
        )
    central.go_down()
    assert buy(client, key="allowance").json()["status"] == "allowance"

    shown = {s["status"] for s in sale_list(client)}
    assert shown == set(STORE_STATUSES)
    for status in shown:
        assert {s["status"] for s in sale_list(client, status=status)} == {status}
    assert sale_list(client, status="confirmed")[0]["order_id"] == confirmed["id"]


def test_an_unknown_status_filter_is_request_invalid_naming_the_statuses(client):
    response = client.get("/orders", params={"status": "voided"})

    assert response.status_code == 422
    assert "failed" in response.json()["error"]["message"]


# --- since / until ---------------------------------------------------------------------------


def test_since_and_until_select_the_sales_placed_in_between(client, clock):
    buy(client, key="early")
    clock.advance(3600)
    buy(client, key="late")

    def keys(**params: str) -> list[str]:
        return [s["created_at"][11:16] for s in sale_list(client, **params)]

    assert keys(since="2026-11-29T10:30:00Z") == ["11:00"]
    assert keys(until="2026-11-29T10:30:00+00:00") == ["10:00"]
    assert keys(since="2026-11-29T11:30:00+01:00") == ["11:00"]  # 10:30 UTC
    assert keys(since="2026-11-29T10:00:00") == ["11:00", "10:00"]  # no offset: UTC


@pytest.mark.parametrize(
    "since", ["yesterday", "2026-13-01", "0001-01-01T00:00:00+14:00", "x" * 200]
)
def test_a_bad_since_is_request_invalid_never_a_500(client, since):
    response = client.get("/orders", params={"since": since})

    assert (response.status_code, response.json()["error"]["code"]) == (422, "request.invalid")


# --- one sale --------------------------------------------------------------------------------


def test_one_sale_is_found_by_local_reference_order_id_or_a_prefix(client):
    order = buy(client).json()

    by_ref = client.get(f"/orders/{order['local_ref']}").json()
    by_id = client.get(f"/orders/{order['id']}").json()
    by_prefix = client.get(f"/orders/{order['id'][:8]}").json()

    assert by_ref == by_id == by_prefix
    assert (by_ref["local_ref"], by_ref["order_id"]) == (order["local_ref"], order["id"])


def test_an_unknown_reference_is_404_and_an_ambiguous_prefix_409(client, stocked):
    orders = LocalOrders(stocked, FixedClock(), STORE)
    with orders.transaction():
        for n in range(7):
            orders.add_pending(f"abcd-{n}", f"key-{n}", "print", [])

    unknown = client.get("/orders/ffffffff-none")
    ambiguous = client.get("/orders/abcd")
    exact = client.get("/orders/abcd-3")

    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "order.not_found")
    error = ambiguous.json()["error"]
    assert (ambiguous.status_code, error["code"]) == (409, "order.ambiguous")
    assert error["details"]["matches"] == [f"abcd-{n}" for n in (6, 5, 4, 3, 2)]
    assert error["message"].startswith("more than 5 sales start with 'abcd'")
    assert exact.json()["local_ref"] == "abcd-3"


def test_a_prefix_shorter_than_four_characters_finds_nothing(client):
    order = buy(client).json()

    assert client.get(f"/orders/{order['id'][:3]}").status_code == 404


@pytest.mark.parametrize("ref", ["a%25", "a_b_", "..", "x" * 65])
def test_a_reference_that_could_act_as_a_wildcard_or_is_too_long_finds_nothing(client, ref):
    buy(client)

    assert client.get(f"/orders/{ref}").status_code in (404, 422)


# --- cancel through the agent ----------------------------------------------------------------


def test_cancel_through_the_agent_cancels_at_central_and_shows_at_once(client, central):
    order = buy(client).json()

    response = client.post(f"/orders/{order['local_ref'][:8]}/cancel", json={})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["status"], body["local_ref"]) == (
        order["id"],
        "cancelled",
        order["local_ref"],
    )
    assert central.cancels == [order["id"]]
    assert central.stock[MILK].quantity == 40
    [sale] = sale_list(client, status="cancelled")
    assert sale["order_id"] == order["id"]


def test_a_second_cancel_changes_nothing_and_its_event_after_it_neither(client, stocked, central):
    order = buy(client).json()
    client.post(f"/orders/{order['id']}/cancel", json={})

    again = client.post(f"/orders/{order['id']}/cancel", json={})
    result = load(stocked, cancelled_at_central(order["id"]))

    assert (again.status_code, again.json()["status"]) == (200, "cancelled")
    assert central.stock[MILK].quantity == 40
    assert (result.applied, result.stale) == (0, 1)


def test_a_queued_sale_has_nothing_at_central_to_cancel(client, central):
    central.go_down()
    queued = buy(client).json()
    central.come_back()

    response = client.post(f"/orders/{queued['local_ref']}/cancel", json={})

    assert (response.status_code, response.json()["error"]["code"]) == (409, "order.not_placed")
    assert "queued offline" in response.json()["error"]["message"]
    assert central.cancels == []


def test_with_central_unreachable_a_cancel_is_503_and_changes_nothing(client, central):
    order = buy(client).json()
    central.go_down()

    response = client.post(f"/orders/{order['id']}/cancel", json={})

    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (503, "central.unavailable")
    assert "never queued" in error["message"]
    assert sale_list(client)[0]["status"] == "confirmed"


def test_a_refused_store_key_is_502_auth_failed_naming_the_store(client, central, resilient):
    order = buy(client).json()
    central.refuse_cancels(401, "auth.invalid")

    response = client.post(f"/orders/{order['id']}/cancel", json={})

    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (502, "central.auth_failed")
    assert error["details"] == {"central_code": "auth.invalid", "store_id": STORE}
    assert resilient.status()["consecutive_failures"] == 0, "central answered: it is up"


def test_an_order_central_does_not_hold_is_404(client, stocked, central):
    orders = LocalOrders(stocked, FixedClock(), STORE)
    with orders.transaction():
        orders.add_pending("ref-1", "key-1", "print", [])
        orders.confirm("ref-1", "7d1e9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13", {})

    response = client.post("/orders/ref-1/cancel", json={})

    assert (response.status_code, response.json()["error"]["code"]) == (404, "order.not_found")


def test_a_cancel_needs_the_terminal_token(stocked, sales):
    client = terminal_client(terminal_app(stocked, sales), token="wrong")

    response = client.post("/orders/anything/cancel", json={})

    assert (response.status_code, response.json()["error"]["code"]) == (401, "agent.token_invalid")


def test_a_sale_placed_after_a_replica_from_schema_5_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    replica = open_replica(path)
    replica.db.execute_sql("DROP TABLE order_status")
    replica.set_meta({"schema_version": "5"})
    replica.close()

    upgraded = open_replica(path)

    assert upgraded.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert "order_status" in upgraded.db.get_tables()
    upgraded.close()


def test_a_till_reads_its_own_cancel_with_centrals_time(client, clock):
    order = buy(client).json()
    clock.advance(60)

    client.post(f"/orders/{order['id']}/cancel", json={})

    [sale] = sale_list(client)
    assert sale["cancelled_at"] == "2026-11-29T10:01:00+00:00"


# --- the HTTP client ------------------------------------------------------------------------


def _client_answering(status: int, body: dict) -> HttpCentralClient:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/orders/o-1/cancel"
        assert request.headers["X-API-Key"] == "store-key"
        return httpx.Response(status, json=body)

    return HttpCentralClient(
        "http://central.test", "store-key", transport=httpx.MockTransport(answer)
    )


def test_centrals_refusal_of_a_cancel_carries_its_status_code_and_message():
    body = {"error": {"code": "order.not_found", "message": "no such order", "details": {}}}

    with pytest.raises(CentralRefusedCall) as caught:
        _client_answering(404, body).cancel_order("o-1")

    refusal = caught.value.refusal
    assert (refusal.status, refusal.code, refusal.message) == (
        404,
        "order.not_found",
        "no such order",
    )
    assert not caught.value.retryable


def test_a_5xx_to_a_cancel_is_unavailable_and_retryable_not_a_refusal():
    with pytest.raises(CentralUnavailable) as caught:
        _client_answering(503, {}).cancel_order("o-1")

    assert not isinstance(caught.value, CentralRefusedCall)
    assert caught.value.retryable
