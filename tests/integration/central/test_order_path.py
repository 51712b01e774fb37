"""POST /api/v1/orders answered by central.api.order_path (plain ASGI, for plainly
well-formed store orders) and by the FastAPI route alone: the same status, headers and body
for every request, and each request served by the path expected."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central.api import create_app
from central.api.order_path import OrderPath
from central.services import accounts
from tests.support.central_harness import running_central

SKUS = ["PATH-1", "PATH-2", "PATH-3", "PATH-LOW"]
FAST, ROUTE = "order_path", "fastapi_route"
VARYING = {"x-request-id", "date"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Both apps sell from the same stock rows: the level after a line is the other's plus one.
LEVEL = re.compile(r'"stock":\{"quantity":\d+,"stock_version":\d+\}')
MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


class Recorded:
    """The app behind a probe that notes who served each request: FastAPI's router puts the
    endpoint in the scope; the order path answers before any routing."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.served_by: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.served_by.append(ROUTE if "endpoint" in scope else FAST)


def without_order_path(app: Any) -> Any:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not OrderPath]
    return app


@pytest.fixture
def clients(database_url: str) -> Iterator[dict[str, Any]]:
    with running_central(database_url) as h:
        admin = h.admin()
        category = h.call("POST", "/api/v1/categories", admin, json={"name": "Path"})
        for sku in SKUS:
            product = {"sku": sku, "name": sku, "price": "1.25", "category_id": category["id"]}
            h.call("POST", "/api/v1/products", admin, json=product)
            h.call(
                "PUT",
                f"/api/v1/stock/{sku}",
                admin,
                json={"quantity": 2 if "LOW" in sku else 10_000},
            )
        key = h.call("POST", "/api/v1/stores", admin, json={"id": "path-1", "name": "Path"})[
            "api_key"
        ]
        revoked = h.call("POST", "/api/v1/stores/path-1/keys", admin)
        h.call("DELETE", f"/api/v1/stores/path-1/keys/{revoked['key_id']}", admin)
        accounts.create_user(
            h.central.uow(), accounts.NewUser("clerk", "clerk-password-1", "staff", "path-1")
        )
        fast = Recorded(create_app(h.central, manage_relay=False))
        route = Recorded(without_order_path(create_app(h.central, manage_relay=False)))
        with TestClient(fast) as fast_client, TestClient(route) as route_client:
            yield {
                "fast": (fast_client, fast),
                "route": (route_client, route),
                "key": key,
                "revoked": revoked["api_key"],
                "clerk": h.token("clerk", "clerk-password-1"),
            }


def line(sku: str = "PATH-1", quantity: Any = 1, **extra: Any) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, **extra}


def order_body(*lines: dict[str, Any]) -> bytes:
    return json.dumps({"lines": list(lines)}).encode()


JSON_TYPE = {"Content-Type": "application/json"}


def cases(key: str, revoked: str, clerk: str) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(name, the path expected to serve it, its requests: headers and body, sent in turn
    with {idem} replaced by a key of the case's own)."""
    store = {"X-API-Key": key, **JSON_TYPE}
    keyed = {**store, "Idempotency-Key": "{idem}"}

    def req(headers: dict[str, str], body: bytes) -> dict[str, Any]:
        return {"headers": headers, "body": body}

    one = order_body(line())
    return [
        ("one line", FAST, [req(keyed, one)]),
        (
            "three lines",
            FAST,
            [req(keyed, order_body(line("PATH-1"), line("PATH-2", 3), line("PATH-3")))],
        ),
        ("replayed key", FAST, [req(keyed, one), req(keyed, one)]),
        (
            "key reused for other lines",
            FAST,
            [req(keyed, one), req(keyed, order_body(line("PATH-2")))],
        ),
        ("no idempotency key", FAST, [req(store, one)]),
        ("malformed idempotency key", FAST, [req({**store, "Idempotency-Key": "not a key!"}, one)]),
        ("unknown sku", FAST, [req(keyed, order_body(line("NOPE-1")))]),
        ("insufficient stock", FAST, [req(keyed, order_body(line("PATH-LOW", 3)))]),
        ("duplicate line", FAST, [req(keyed, order_body(line(), line()))]),
        ("no lines", FAST, [req(keyed, order_body())]),
        ("quantity as text", FAST, [req(keyed, order_body(line(quantity="1")))]),
        ("unknown line field", FAST, [req(keyed, order_body(line(colour="red")))]),
        ("unknown grant", FAST, [req(keyed, order_body(line(grant_id=str(uuid.uuid4()))))]),
        (
            "lone surrogate in a sku",
            FAST,
            [req(keyed, b'{"lines": [{"sku": "\\ud800", "quantity": 1}]}')],
        ),
        ("101 lines", FAST, [req(keyed, order_body(*[line(f"S-{i}") for i in range(101)]))]),
        ("unknown key", FAST, [req({**keyed, "X-API-Key": "invk_" + "0" * 40}, one)]),
        ("revoked key", FAST, [req({**keyed, "X-API-Key": revoked}, one)]),
        (
            "unknown top-level field",
            ROUTE,
            [req(keyed, json.dumps({"lines": [line()], "note": "x"}).encode())],
        ),
        ("lines not a list", ROUTE, [req(keyed, b'{"lines": {"sku": "PATH-1"}}')]),
        ("a line not an object", ROUTE, [req(keyed, b'{"lines": ["PATH-1"]}')]),
        ("body a list", ROUTE, [req(keyed, b"[]")]),
        ("not JSON", ROUTE, [req(keyed, b'{"lines": [')]),
        ("nested past the parser", ROUTE, [req(keyed, b"[" * 100_000 + b"]" * 100_000)]),
        ("1,001 lines", ROUTE, [req(keyed, order_body(*[line(f"S-{i}") for i in range(1001)]))]),
        ("idempotency key over 1,000", ROUTE, [req({**keyed, "Idempotency-Key": "k" * 1001}, one)]),
        ("no content type", ROUTE, [req({"X-API-Key": key, "Idempotency-Key": "{idem}"}, one)]),
        ("text content type", ROUTE, [req({**keyed, "Content-Type": "text/plain"}, one)]),
        (
            "JSON with a charset",
            ROUTE,
            [req({**keyed, "Content-Type": "application/json; charset=utf-8"}, one)],
        ),
        (
            "staff token",
            ROUTE,
            [
                req(
                    {"Authorization": f"Bearer {clerk}", "Idempotency-Key": "{idem}", **JSON_TYPE},
                    one,
                )
            ],
        ),
        ("no credentials", ROUTE, [req({"Idempotency-Key": "{idem}", **JSON_TYPE}, one)]),
        ("empty key header", ROUTE, [req({**keyed, "X-API-Key": ""}, one)]),
    ]


def answer(client: TestClient, request: dict[str, Any], idem: str) -> dict[str, Any]:
    headers = {name: value.replace("{idem}", idem) for name, value in request["headers"].items()}
    response = client.post("/api/v1/orders", content=request["body"], headers=headers)
    return {
        "status": response.status_code,
        "headers": sorted((k, v) for k, v in response.headers.items() if k not in VARYING),
        "body": LEVEL.sub("<level>", MOMENT.sub("<moment>", UUID.sub("<uuid>", response.text))),
    }


def test_both_paths_answer_every_order_request_alike(clients: dict[str, Any]) -> None:
    fast_client, fast = clients["fast"]
    route_client, route = clients["route"]
    for name, expected, requests in cases(clients["key"], clients["revoked"], clients["clerk"]):
        fast_idem, route_idem = uuid.uuid4().hex, uuid.uuid4().hex
        fast.served_by.clear()
        for request in requests:
            by_path = answer(fast_client, request, fast_idem)
            by_route = answer(route_client, request, route_idem)
            assert by_path == by_route, name
        assert fast.served_by == [expected] * len(requests), name
        assert set(route.served_by) == {ROUTE}, name


def test_a_served_order_is_logged_and_measured_under_its_route(clients: dict[str, Any]) -> None:
    fast_client, fast = clients["fast"]
    response = fast_client.post(
        "/api/v1/orders",
        content=order_body(line()),
        headers={
            "X-API-Key": clients["key"],
            **JSON_TYPE,
            "Idempotency-Key": uuid.uuid4().hex,
            "X-Request-ID": "req-order-path-1",
        },
    )
    assert response.status_code == 201, response.text
    assert fast.served_by == [FAST]
    assert response.headers["x-request-id"] == "req-order-path-1"
    assert response.headers["invctl-epoch"] == "1"
    metrics = fast_client.get("/metrics").text
    served = [
        row
        for row in metrics.splitlines()
        if row.startswith("invctl_http_requests_total{")
        and 'route="/api/v1/orders"' in row
        and 'method="POST"' in row
        and 'status="201"' in row
    ]
    assert served and float(served[0].rsplit(" ", 1)[1]) >= 1
