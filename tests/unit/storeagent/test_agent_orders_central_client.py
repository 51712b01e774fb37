"""The httpx adapter for central's POST /orders: what it sends, and how answers map to
Confirmed, Refused or CentralUnavailable (httpx.MockTransport stands in for the network)."""

import json

import httpx
import pytest

from invwire.orders import Line
from storeagent.upstream.client import (
    CentralUnavailable,
    Confirmed,
    HttpCentralClient,
    NoCentral,
    Refused,
    StockLevel,
    connect_central,
)

API_KEY = "sk-secret-must-not-leak"
ORDER = {
    "id": "0b7e3c9e-0000-4000-8000-000000000001",
    "store_id": "s1",
    "status": "confirmed",
    "created_at": "2026-11-29T10:00:00.123456+00:00",
    "created_by": "store:s1",
    "cancelled_at": None,
    "total": "2.50",
    "lines": [
        {
            "sku": "MILK-1L",
            "quantity": 2,
            "unit_price": "1.25",
            "stock": {"quantity": 38, "stock_version": 8},
        }
    ],
}


def client_answering(handler) -> HttpCentralClient:
    return HttpCentralClient("http://central:8000", API_KEY, transport=httpx.MockTransport(handler))


def answer(status: int, body: object = None):
    return lambda request: httpx.Response(status, json=body)


def place(client: HttpCentralClient):
    return client.place_order("sale-1", [Line("MILK-1L", 2)], request_id="req-1")


def error_body(code: str, message: str = "m", **details: object) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


def test_order_is_posted_as_the_store_with_the_idempotency_key_and_request_id():
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json=ORDER)

    place(client_answering(handler))

    [request] = sent
    assert (request.method, str(request.url)) == ("POST", "http://central:8000/api/v1/orders")
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["Idempotency-Key"] == "sale-1"
    assert request.headers["X-Request-ID"] == "req-1"
    assert json.loads(request.content) == {"lines": [{"sku": "MILK-1L", "quantity": 2}]}


def test_201_is_confirmed_with_each_lines_new_stock():
    result = place(client_answering(answer(201, ORDER)))

    assert isinstance(result, Confirmed)
    assert (result.order, result.order_id) == (ORDER, ORDER["id"])
    assert result.stock == (StockLevel("MILK-1L", 38, 8),)
    assert result.created_at.isoformat() == "2026-11-29T10:00:00.123456+00:00"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (409, "stock.insufficient"),
        (422, "order.sku_unknown"),
        (422, "idempotency.mismatch"),
        (401, "auth.invalid"),
        (404, "not_found"),
    ],
)
def test_4xx_is_a_refusal_carrying_centrals_error(status, code):
    body = error_body(code, "no", lines=[{"sku": "MILK-1L"}])

    result = place(client_answering(answer(status, body)))

    assert result == Refused(status, code, "no", {"lines": [{"sku": "MILK-1L"}]})


def test_4xx_without_an_error_body_still_is_a_refusal():
    result = place(client_answering(lambda request: httpx.Response(418, text="teapot")))

    assert result == Refused(418, "central.refused", "central answered 418", {})


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_central_unavailable(status):
    with pytest.raises(CentralUnavailable) as caught:
        place(client_answering(answer(status, error_body("database.unavailable"))))

    assert caught.value.details["reason"] == f"http.{status}"
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ConnectError("Connection refused"), "connect"),
        (httpx.ConnectTimeout("connect timed out"), "connect"),
        (httpx.ReadTimeout("read timed out"), "timeout"),
        (httpx.RemoteProtocolError("peer closed"), "transport"),
    ],
)
def test_no_answer_is_central_unavailable(exc, reason):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(CentralUnavailable) as caught:
        place(client_answering(handler))

    assert (caught.value.code, caught.value.status) == ("central.unavailable", 503)
    assert caught.value.details["reason"] == reason


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {**ORDER, "id": ""},
        {**ORDER, "lines": [{"sku": "MILK-1L"}]},
        {**ORDER, "lines": [{"sku": "MILK-1L", "stock": {"quantity": "38", "stock_version": 8}}]},
        {**ORDER, "created_at": "yesterday"},
    ],
)
def test_a_201_that_is_not_an_order_is_unavailable_so_the_key_stays_retryable(body):
    with pytest.raises(CentralUnavailable) as caught:
        place(client_answering(answer(201, body)))

    assert caught.value.details["reason"] == "bad_answer"


def test_the_api_key_is_not_in_the_clients_repr_or_its_errors():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    client = client_answering(handler)
    with pytest.raises(CentralUnavailable) as caught:
        place(client)

    assert API_KEY not in repr(client)
    assert API_KEY not in f"{caught.value.message} {caught.value.details}"


def test_timeouts_are_two_seconds_to_connect_and_eight_to_read():
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(201, json=ORDER)

    place(client_answering(handler))

    assert (seen[0]["connect"], seen[0]["read"]) == (2.0, 8.0)


def test_without_a_central_url_orders_are_unavailable_and_not_retried():
    client = connect_central(None, API_KEY)

    with pytest.raises(CentralUnavailable) as caught:
        place(client)  # type: ignore[arg-type]

    assert isinstance(client, NoCentral)
    assert not caught.value.retryable


# --- looking up and cancelling an order (the replayer voiding a failed sale) -----------------


def test_find_order_asks_for_the_stores_key_and_returns_the_order_or_none():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        found = request.url.params["idempotency_key"] == "sale-1"
        return httpx.Response(200, json={"items": [ORDER] if found else [], "next_before": None})

    client = client_answering(handler)

    assert client.find_order("sale-1") == ORDER
    assert client.find_order("sale-2") is None
    assert seen[0].method == "GET"
    assert seen[0].url.path == "/api/v1/orders"
    assert dict(seen[0].url.params) == {"idempotency_key": "sale-1", "limit": "1"}
    assert seen[0].headers["X-API-Key"] == API_KEY


def test_cancel_order_posts_to_the_orders_cancel_path():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={**ORDER, "status": "cancelled"})

    cancelled = client_answering(handler).cancel_order(ORDER["id"])

    assert cancelled["status"] == "cancelled"
    assert (seen[0].method, seen[0].url.path) == ("POST", f"/api/v1/orders/{ORDER['id']}/cancel")


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (500, True), (404, False)])
def test_lookup_that_central_does_not_answer_with_an_order_is_unavailable(status, retryable):
    client = client_answering(answer(status, error_body("order.not_found")))

    with pytest.raises(CentralUnavailable) as caught:
        client.cancel_order("o-1")

    assert caught.value.retryable is retryable
    assert caught.value.details["reason"] == f"http.{status}"


@pytest.mark.parametrize(
    ("exc", "maybe_sent"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow"), False),
        (httpx.ReadTimeout("slow"), True),
        (httpx.RemoteProtocolError("dropped"), True),
    ],
)
def test_only_a_failure_to_connect_proves_central_never_got_the_order(exc, maybe_sent):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(CentralUnavailable) as caught:
        place(client_answering(handler))

    assert caught.value.maybe_sent is maybe_sent


def test_a_5xx_leaves_open_whether_central_committed_the_order():
    with pytest.raises(CentralUnavailable) as caught:
        place(client_answering(answer(503, error_body("database.unavailable"))))

    assert caught.value.maybe_sent
