"""POST/GET /orders at the agent with FakeCentral and a temp replica: validation, the
replica-first refusal, the key persisted first, read-your-writes, refusals, outages."""

import uuid

import pytest
from fastapi.testclient import TestClient

from invwire.orders import Line
from storeagent.app import build_sales
from storeagent.http.app import create_app
from storeagent.replica.db import META_BOOTSTRAPPED, Replica, open_replica
from storeagent.replica.local_orders import LocalOrders
from storeagent.sync.apply import apply_batch
from storeagent.sync.loop import topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record
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

MILK = "MILK-1L"


def load(replica: Replica, *events: tuple[str, bytes, bytes]) -> None:
    records = [Record(t, 0, offset, key, value) for offset, (t, key, value) in enumerate(events)]
    apply_batch(replica, records, prefix="", now=FixedClock()())


def stock_of(client: TestClient, sku: str = MILK) -> tuple[int, int]:
    body = client.get(f"/stock/{sku}").json()
    return body["quantity"], body["stock_version"]


def buy(client: TestClient, *lines: tuple[str, int], key: str | None = None, **headers: str):
    if key is not None:
        headers["Idempotency-Key"] = key
    body = {"lines": [{"sku": sku, "quantity": qty} for sku, qty in lines]}
    return client.post("/orders", json=body, headers=headers)


@pytest.fixture
def central(clock) -> FakeCentral:
    fake = FakeCentral(clock=clock)
    fake.set_stock(MILK, 40, 7)
    fake.set_stock("BREAD", 5, 3)
    return fake


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def resilient(central, monotonic, sleeps) -> ResilientCentral:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=3, cooldown_s=15), clock=monotonic)
    return ResilientCentral(
        central, breaker=breaker, sleep=sleeps.append, clock=monotonic, jitter=lambda top: top
    )


@pytest.fixture
def client(replica, resilient, clock) -> TestClient:
    load(
        replica,
        product_event(sku=MILK, name="Milk 1 L"),
        product_event(sku="BREAD", name="Bread"),
        product_event(sku="OLD-1", name="Gone", active=False),
        stock_event(sku=MILK, quantity=40, stock_version=7),
        stock_event(sku="BREAD", quantity=5, stock_version=3),
    )
    with replica.transaction():
        replica.set_meta({META_BOOTSTRAPPED: "1"})
    desk = build_sales(replica, resilient, clock=clock).desk
    app = create_app(
        replica,
        SyncProgress(),
        store_id="s1",
        topics=topic_names(""),
        orders=desk,
        terminal_token=TERMINAL_TOKEN,
    )
    return terminal_client(app)


# --- confirmed: read-your-writes ------------------------------------------------------------


def test_confirmed_order_answers_201_with_centrals_order_and_a_local_ref(client, central):
    response = buy(client, (MILK, 2), ("BREAD", 1), key="till3-sale-0042")

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "confirmed"
    assert uuid.UUID(body["local_ref"])
    assert {k: v for k, v in body.items() if k not in ("local_ref", "order")} == body["order"]
    lines = body["lines"]
    assert [(line["sku"], line["quantity"], line["stock"]) for line in lines] == [
        ("BREAD", 1, {"quantity": 4, "stock_version": 4}),
        (MILK, 2, {"quantity": 38, "stock_version": 8}),
    ]
    assert [call.idempotency_key for call in central.calls] == ["till3-sale-0042"]


def test_confirmed_order_applies_centrals_stock_versions_to_the_replica_at_once(client):
    buy(client, (MILK, 2), ("BREAD", 5))

    assert stock_of(client, MILK) == (38, 8)
    assert stock_of(client, "BREAD") == (0, 4)


def test_stale_stock_in_centrals_answer_does_not_overwrite_a_newer_replica_row(
    client, central, replica
):
    # Another store's sale reached this replica through Kafka before central's answer did.
    central.on_call = lambda key, lines: load(
        replica, stock_event(sku=MILK, quantity=30, stock_version=9)
    )

    response = buy(client, (MILK, 2))

    assert response.json()["order"]["lines"][0]["stock"] == {"quantity": 38, "stock_version": 8}
    assert stock_of(client) == (30, 9)


def test_confirmed_order_is_listed_with_centrals_order_id(client):
    order = buy(client, (MILK, 2)).json()

    items = client.get("/orders").json()["items"]

    assert items == [
        {
            "local_ref": order["local_ref"],
            "status": "confirmed",
            "order_id": order["order"]["id"],
            "lines": [{"sku": MILK, "quantity": 2}],
            "created_at": "2026-11-29T10:00:00.000000+00:00",
            "reason": None,
            "total": order["total"],
            "cancelled_at": None,
        }
    ]


def test_request_id_is_forwarded_to_central(client, central):
    buy(client, (MILK, 1), **{"X-Request-ID": "req-7f3a"})

    assert central.calls[0].request_id == "req-7f3a"


# --- validation: central's codes, central never called ---------------------------------------


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        ([], "order.invalid"),
        ([{"sku": f"S-{n}", "quantity": 1} for n in range(101)], "order.invalid"),
        ([{"sku": MILK, "quantity": 0}], "quantity.invalid"),
        ([{"sku": MILK, "quantity": 10_001}], "quantity.invalid"),
        ([{"sku": MILK, "quantity": "2"}], "quantity.invalid"),
        ([{"sku": MILK, "quantity": True}], "quantity.invalid"),
        ([{"sku": MILK}], "quantity.invalid"),
        ([{"sku": "milk-1l", "quantity": 1}], "sku.invalid"),
        ([{"quantity": 1}], "sku.invalid"),
        ([{"sku": MILK, "quantity": 1}, {"sku": MILK, "quantity": 2}], "order.duplicate_line"),
    ],
)
def test_invalid_lines_are_refused_with_centrals_codes(client, central, lines, code):
    response = client.post("/orders", json={"lines": lines})

    assert (response.status_code, response.json()["error"]["code"]) == (422, code)
    assert central.calls == []


@pytest.mark.parametrize("body", [{}, {"lines": "MILK-1L"}, {"lines": ["MILK-1L"]}, []])
def test_malformed_body_is_request_invalid(client, central, body):
    response = client.post("/orders", json=body)

    assert (response.status_code, response.json()["error"]["code"]) == (422, "request.invalid")
    assert central.calls == []


def test_duplicate_line_names_the_repeated_skus(client):
    response = buy(client, (MILK, 1), ("BREAD", 1), (MILK, 2))

    assert response.json()["error"]["details"] == {"skus": [MILK]}


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "tab\there"])
def test_malformed_idempotency_key_is_refused(client, central, key):
    response = buy(client, (MILK, 1), key=key)

    assert (response.status_code, response.json()["error"]["code"]) == (
        400,
        "idempotency.key_invalid",
    )
    assert central.calls == []


# --- the replica first: fast refusals ------------------------------------------------------


def test_short_replica_stock_is_refused_without_calling_central(client, central, replica):
    response = buy(client, (MILK, 2), ("BREAD", 6))

    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "stock.insufficient",
        "message": "Not enough stock for some lines; nothing was reserved.",
        "details": {"lines": [{"sku": "BREAD", "requested": 6, "available": 5}]},
    }
    assert central.calls == []
    assert LocalOrders(replica).newest_first(None, 10) == []


def test_sku_unknown_to_the_replica_is_refused_without_calling_central(client, central):
    response = buy(client, (MILK, 1), ("NOPE-9", 1))

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "order.sku_unknown"
    assert response.json()["error"]["details"] == {"skus": ["NOPE-9"]}
    assert central.calls == []


def test_inactive_product_is_refused_without_calling_central(client, central):
    response = buy(client, ("OLD-1", 1))

    assert response.json()["error"]["code"] == "order.sku_inactive"
    assert central.calls == []


def test_orders_before_the_first_sync_are_replica_not_ready(client, central, replica):
    with replica.transaction():
        replica.set_meta({META_BOOTSTRAPPED: "0"})

    response = buy(client, (MILK, 1))

    assert (response.status_code, response.json()["error"]["code"]) == (503, "replica.not_ready")
    assert central.calls == []


# --- the key is persisted before central hears of the sale ----------------------------------


def test_idempotency_key_is_committed_as_pending_before_central_is_called(
    client, central, tmp_path
):
    seen = []

    def look_from_another_connection(key, lines):
        other = open_replica(tmp_path / "replica.db")
        try:
            row = LocalOrders(other).by_key(key)
            seen.append((row.status, row.lines) if row else None)
        finally:
            other.close()

    central.on_call = look_from_another_connection

    buy(client, (MILK, 2), key="sale-1")

    assert seen == [("pending", (Line(MILK, 2),))]


def test_without_an_idempotency_key_the_agent_makes_and_stores_one(client, central, replica):
    buy(client, (MILK, 1))

    key = central.calls[0].idempotency_key
    assert uuid.UUID(key)
    assert LocalOrders(replica).by_key(key).status == "confirmed"


# --- replays ---------------------------------------------------------------------------------


def test_same_key_replayed_returns_the_same_order_without_calling_central_twice(client, central):
    first = buy(client, (MILK, 2), key="sale-1")
    second = buy(client, (MILK, 2), key="sale-1")

    assert second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(central.calls) == 1
    assert len(client.get("/orders").json()["items"]) == 1


def test_same_key_with_other_lines_is_an_idempotency_mismatch(client, central):
    buy(client, (MILK, 2), key="sale-1")

    response = buy(client, (MILK, 3), key="sale-1")

    assert (response.status_code, response.json()["error"]["code"]) == (
        422,
        "idempotency.mismatch",
    )
    assert len(central.calls) == 1


def test_sale_that_failed_is_retried_at_central_with_the_same_key(client, central):
    central.go_down(3)
    failed = buy(client, (MILK, 2), key="sale-1")

    retried = buy(client, (MILK, 2), key="sale-1")

    assert failed.status_code == 503
    assert retried.status_code == 201
    assert {call.idempotency_key for call in central.calls} == {"sale-1"}
    assert failed.json()["error"]["details"]["local_ref"] == retried.json()["local_ref"]


def test_sale_left_pending_by_a_crash_is_sent_again_with_the_same_key(client, central, replica):
    local_ref = left_by_a_killed_agent(replica, "sale-1", [Line(MILK, 2)])

    retried = buy(client, (MILK, 2), key="sale-1")

    assert (retried.status_code, retried.json()["local_ref"]) == (201, local_ref)
    assert [call.idempotency_key for call in central.calls] == ["sale-1"]


def test_unfinished_sale_goes_to_central_even_when_the_replica_now_shows_too_little(
    client, central, replica
):
    # Central may hold the sale already and its stock event may have reached the replica:
    # only central can answer for a key it may have seen.
    central.go_down(3)
    buy(client, (MILK, 2), key="sale-1")
    load(replica, stock_event(sku=MILK, quantity=1, stock_version=20))

    retried = buy(client, (MILK, 2), key="sale-1")

    assert retried.status_code == 201


# --- refusals by central ---------------------------------------------------------------------


def test_centrals_refusal_is_answered_as_is_and_recorded_as_rejected(client, central):
    short = [{"sku": MILK, "requested": 2, "available": 1}]
    central.refuse_next(409, "stock.insufficient", "Not enough stock", lines=short)

    response = buy(client, (MILK, 2))

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "stock.insufficient",
            "message": "Not enough stock",
            "details": {"lines": short},
        }
    }
    [item] = client.get("/orders", params={"status": "rejected"}).json()["items"]
    assert (item["status"], item["order_id"]) == ("rejected", None)
    assert item["reason"] == "stock.insufficient: Not enough stock"


def test_refusal_is_never_retried(client, central, sleeps):
    central.refuse_next(422, "order.sku_inactive", "not for sale", skus=[MILK])

    response = buy(client, (MILK, 1))

    assert (response.status_code, response.json()["error"]["code"]) == (422, "order.sku_inactive")
    assert (len(central.calls), sleeps) == (1, [])


def test_rejected_key_is_tried_again_like_central_does(client, central):
    central.refuse_next(409, "stock.insufficient", "Not enough stock")
    buy(client, (MILK, 2), key="sale-1")

    again = buy(client, (MILK, 2), key="sale-1")

    assert again.status_code == 201
    assert [i["status"] for i in client.get("/orders").json()["items"]] == ["confirmed"]


def test_rejected_api_key_is_central_auth_failed_and_leaves_the_sale_retryable(client, central):
    central.refuse_next(401, "auth.invalid", "The credentials are invalid or expired.")

    response = buy(client, (MILK, 1), key="sale-1")

    assert (response.status_code, response.json()["error"]["code"]) == (502, "central.auth_failed")
    assert client.get("/orders").json()["items"][0]["status"] == "failed"
    assert buy(client, (MILK, 1), key="sale-1").status_code == 201


# --- central unavailable: 503, retries, the circuit breaker ---------------------------------


def test_unavailable_central_is_503_after_two_quick_retries_and_the_sale_is_failed(
    client, central, sleeps
):
    central.go_down()

    response = buy(client, (MILK, 2))

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "central.unavailable"
    assert len(central.calls) == 3
    assert sleeps == [0.1, 0.2]
    [item] = client.get("/orders").json()["items"]
    assert (item["status"], item["reason"]) == (
        "failed",
        "central.unavailable: fake central is down",
    )
    assert stock_of(client) == (40, 7)


def test_circuit_opens_after_three_unavailable_buys_and_then_fails_fast(client, central):
    central.go_down()
    for _ in range(3):
        buy(client, (MILK, 1))
    calls = len(central.calls)

    response = buy(client, (MILK, 1))

    assert response.status_code == 503
    assert response.json()["error"]["details"]["reason"] == "circuit_open"
    assert len(central.calls) == calls
    assert client.get("/sync/status").json()["central"] == {
        "circuit": "open",
        "consecutive_failures": 3,
        "last_error": "fake central is down",
    }


def test_circuit_half_opens_after_the_cool_down_and_closes_on_success(client, central, monotonic):
    central.go_down()
    for _ in range(3):
        buy(client, (MILK, 1))
    central.come_back()
    monotonic.now += 15

    assert client.get("/sync/status").json()["central"]["circuit"] == "half-open"
    assert buy(client, (MILK, 1)).status_code == 201
    assert client.get("/sync/status").json()["central"] == {
        "circuit": "closed",
        "consecutive_failures": 0,
        "last_error": "fake central is down",
    }


def test_sync_status_keeps_its_fields_and_adds_the_central_circuit(client):
    body = client.get("/sync/status").json()

    assert {"store_id", "ready", "partitions", "dead_letters", "events_applied"} <= set(body)
    assert body["central"] == {"circuit": "closed", "consecutive_failures": 0, "last_error": None}


# --- GET /orders -----------------------------------------------------------------------------


def test_orders_are_listed_newest_first_and_filtered_by_status(client, central, clock):
    central.refuse_next(409, "stock.insufficient", "short")
    buy(client, (MILK, 1), key="a")
    clock.advance(1)
    buy(client, (MILK, 2), key="b")
    clock.advance(1)
    buy(client, (MILK, 3), key="c")

    every = client.get("/orders").json()["items"]
    confirmed = client.get("/orders", params={"status": "confirmed", "limit": 1}).json()["items"]

    assert [i["lines"][0]["quantity"] for i in every] == [3, 2, 1]
    assert [i["status"] for i in every] == ["confirmed", "confirmed", "rejected"]
    assert [i["lines"][0]["quantity"] for i in confirmed] == [3]


@pytest.mark.parametrize(
    "params", [{"status": "lost"}, {"limit": 0}, {"limit": 201}, {"limit": "x"}]
)
def test_bad_order_list_query_is_request_invalid(client, params):
    response = client.get("/orders", params=params)

    assert (response.status_code, response.json()["error"]["code"]) == (422, "request.invalid")


def test_cancelled_filter_is_accepted_and_matches_nothing_yet(client):
    buy(client, (MILK, 1))

    assert client.get("/orders", params={"status": "cancelled"}).json() == {"items": []}
