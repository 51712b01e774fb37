"""The store terminal API's edge: only loopback Hosts, no foreign Origin, and every POST as
JSON with the terminal token; the metrics app serves the probes and /metrics, nothing else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from invwire.http import Message, Scope
from storeagent.http.app import create_app, create_metrics_app
from storeagent.http.guard import LoopbackOnly, TerminalWrites
from storeagent.ops.metrics import AgentMetrics
from storeagent.replica.db import Replica
from storeagent.sync.loop import topic_names
from storeagent.sync.progress import SyncProgress
from tests.support.terminal import TERMINAL_TOKEN, TERMINAL_URL, terminal_client

JSON = {"Content-Type": "application/json"}
BEARER = {"Authorization": f"Bearer {TERMINAL_TOKEN}"}


class Resyncs:
    """The resync route's callable: counts the requests that got through to the app."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def resyncs() -> Resyncs:
    return Resyncs()


def terminal_app(replica: Replica, resyncs: Resyncs, **overrides: Any) -> FastAPI:
    options: dict[str, Any] = {"terminal_token": TERMINAL_TOKEN, **overrides}
    return create_app(
        replica, SyncProgress(), store_id="s1", topics=topic_names(""), resync=resyncs, **options
    )


@pytest.fixture
def bare(replica: Replica, resyncs: Resyncs) -> TestClient:
    """A client at the loopback address that sends no token of its own."""
    return TestClient(terminal_app(replica, resyncs), base_url=TERMINAL_URL)


@pytest.fixture
def till(replica: Replica, resyncs: Resyncs) -> TestClient:
    return terminal_client(terminal_app(replica, resyncs), raise_server_exceptions=True)


def resync(client: TestClient, **headers: str) -> Any:
    return client.post("/sync/resync", json={}, headers=headers)


def error_of(response: Any) -> str:
    return str(response.json()["error"]["code"])


# --- Host --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8787", "localhost:8787", "[::1]:8787", "LocalHost:8787", "127.0.0.9:8787"]
)
def test_a_loopback_host_with_the_served_port_is_served(till, resyncs, host):
    assert till.get("/healthz", headers={"Host": host}).status_code == 200
    assert resync(till, Host=host).status_code == 202
    assert resyncs.count == 1


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example:8787",  # DNS rebinding: the page's own name, the agent's address
        "127.0.0.1.nip.io:8787",
        "localhost.:8787",
        "localhost.attacker.example:8787",
        "0.0.0.0:8787",
        "192.168.1.20:8787",
        "localhost",  # no port: port 80, not the agent's
        "127.0.0.1:8788",
        "127.0.0.1:08787x",
        "user@localhost:8787",
        "localhost:8787/",
    ],
)
def test_any_other_host_is_refused_before_the_app_for_reads_and_writes(till, resyncs, host):
    read = till.get("/products", headers={"Host": host})
    write = resync(till, Host=host)

    assert (read.status_code, error_of(read)) == (421, "request.host_refused")
    assert (write.status_code, error_of(write)) == (421, "request.host_refused")
    assert resyncs.count == 0


def test_the_refusal_names_the_host_it_refused(till):
    body = till.get("/stock/A", headers={"Host": "attacker.example:8787"}).json()["error"]
    assert body["details"] == {"host": "attacker.example:8787"}
    assert "127.0.0.1, localhost or [::1]" in body["message"]


def test_a_portless_host_is_served_when_the_agent_listens_on_port_80(replica, resyncs):
    client = TestClient(terminal_app(replica, resyncs), base_url="http://localhost")
    assert client.get("/healthz").status_code == 200


def run_guard(guard_for: Any, headers: list[tuple[bytes, bytes]], method: str = "GET") -> int:
    """Calls the guard on a raw ASGI scope (what a client library would not send); the
    status answered, 200 when it let the request through."""
    answered: list[int] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        answered.append(200)

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answered.append(message["status"])

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}"}

    scope = {
        "type": "http",
        "method": method,
        "path": "/sync/resync",
        "headers": headers,
        "server": ("127.0.0.1", 8787),
    }
    asyncio.run(guard_for(app)(scope, receive, send))
    return answered[0]


def test_no_host_or_two_hosts_are_refused():
    assert run_guard(LoopbackOnly, []) == 421
    assert run_guard(LoopbackOnly, [(b"host", b"localhost:8787")]) == 200
    two = [(b"host", b"localhost:8787"), (b"host", b"attacker.example:8787")]
    assert run_guard(LoopbackOnly, two) == 421


# --- Origin ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",
        "https://127.0.0.1:8787",
        "http://127.0.0.1:9999",
        "http://attacker.example:8787",
        "http://localhost:8787/page",
    ],
)
def test_a_foreign_origin_is_refused_for_reads_and_writes(till, resyncs, origin):
    read = till.get("/sync/status", headers={"Origin": origin})
    write = resync(till, Origin=origin)

    assert (read.status_code, error_of(read)) == (403, "request.origin_refused")
    assert (write.status_code, error_of(write)) == (403, "request.origin_refused")
    assert resyncs.count == 0


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8787", "http://localhost:8787"])
def test_the_agents_own_loopback_origin_is_served(till, resyncs, origin):
    assert resync(till, Origin=origin).status_code == 202
    assert resyncs.count == 1


# --- POST: JSON and the terminal token ----------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain", None],
)
def test_a_post_that_is_not_json_is_refused_415_even_with_the_token(till, resyncs, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    answer = till.post("/sync/resync", content=b"a=1", headers=headers)

    assert (answer.status_code, error_of(answer)) == (415, "request.json_required")
    assert resyncs.count == 0


def test_a_json_content_type_with_parameters_is_json(till, resyncs):
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    assert till.post("/sync/resync", content=b"{}", headers=headers).status_code == 202


def test_a_cross_site_form_post_to_the_orders_route_is_refused(bare, resyncs):
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}
    answer = bare.post("/orders", content=b"lines=MILK", headers=form)
    assert (answer.status_code, error_of(answer)) == (403, "request.origin_refused")


def test_a_post_without_the_token_is_refused_401_with_a_challenge(bare, resyncs):
    answer = resync(bare)

    assert (answer.status_code, error_of(answer)) == (401, "agent.token_required")
    assert answer.headers["www-authenticate"] == 'Bearer realm="storeagent"'
    assert resyncs.count == 0


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong-token",
        f"Bearer {TERMINAL_TOKEN}x",
        f"Bearer {TERMINAL_TOKEN[:-1]}",
        f"Basic {TERMINAL_TOKEN}",
        TERMINAL_TOKEN,
        "Bearer",
        "Bearer ",
    ],
)
def test_a_post_with_any_other_token_is_refused_401(bare, resyncs, authorization):
    answer = resync(bare, Authorization=authorization)

    assert (answer.status_code, error_of(answer)) == (401, "agent.token_invalid")
    assert TERMINAL_TOKEN not in answer.text
    assert resyncs.count == 0


def test_the_right_token_is_accepted_whatever_the_case_of_its_scheme(bare, resyncs):
    assert resync(bare, Authorization=f"bearer {TERMINAL_TOKEN}").status_code == 202
    assert resync(bare, Authorization=f"Bearer {TERMINAL_TOKEN}").status_code == 202
    assert resyncs.count == 2


def test_two_authorization_headers_are_refused():
    token = f"Bearer {TERMINAL_TOKEN}".encode()
    host, json = (b"host", b"127.0.0.1:8787"), (b"content-type", b"application/json")

    def writes(app: Any) -> TerminalWrites:
        return TerminalWrites(app, TERMINAL_TOKEN)

    one = [host, json, (b"authorization", token)]
    assert run_guard(writes, one, "POST") == 200
    assert run_guard(writes, [*one, (b"authorization", b"Bearer other")], "POST") == 401


def test_reads_need_no_token(bare, replica):
    assert bare.get("/sync/status").status_code == 200
    assert bare.get("/products").json()["error"]["code"] == "replica.not_ready"


def test_every_method_but_get_and_head_needs_the_token(bare):
    assert bare.request("DELETE", "/products", json={}).status_code == 401
    assert bare.request("PUT", "/sync/resync", json={}).status_code == 401
    assert bare.head("/healthz").status_code != 401


def test_an_empty_token_cannot_make_an_open_api(replica, resyncs):
    with pytest.raises(ValueError):
        terminal_app(replica, resyncs, terminal_token="")


def test_a_refusal_is_logged_with_its_code_and_never_the_token(bare, caplog):
    caplog.set_level(logging.WARNING, "storeagent.http")
    resync(bare, Authorization="Bearer not-the-token-0123456789")

    [record] = [r for r in caplog.records if r.getMessage() == "http.refused"]
    fields = record.__dict__["event_fields"]
    assert (fields["code"], fields["status"], fields["method"]) == (
        "agent.token_invalid",
        401,
        "POST",
    )
    assert "not-the-token" not in str(fields)


# --- body limit --------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_413(replica, resyncs):
    client = terminal_client(terminal_app(replica, resyncs, max_body=64))

    answer = client.post("/sync/resync", content=b"{" + b" " * 100 + b"}", headers=JSON)

    assert (answer.status_code, error_of(answer)) == (413, "request.too_large")
    assert resyncs.count == 0


# --- the metrics listener's app ----------------------------------------------------------------


@pytest.fixture
def metrics_client(replica: Replica) -> Iterator[TestClient]:
    app = create_metrics_app(replica, SyncProgress(), metrics=AgentMetrics(), loopback_only=True)
    yield TestClient(app, base_url="http://127.0.0.1:9787")


def test_the_metrics_app_serves_metrics_and_probes(metrics_client):
    assert metrics_client.get("/metrics").status_code == 200
    assert "storeagent_" in metrics_client.get("/metrics").text
    assert metrics_client.get("/healthz").json() == {"status": "ok"}
    assert metrics_client.get("/readyz").json()["error"]["code"] == "replica.not_ready"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/orders"),
        ("GET", "/orders"),
        ("POST", "/sync/resync"),
        ("GET", "/stock/MILK-1L"),
        ("GET", "/products"),
        ("GET", "/sync/status"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
    ],
)
def test_the_metrics_app_has_no_other_route(metrics_client, method, path):
    answer = metrics_client.request(method, path, json={}, headers=BEARER)
    assert (answer.status_code, error_of(answer)) == (404, "not_found")


def test_the_metrics_app_on_loopback_checks_host_and_origin(metrics_client):
    assert metrics_client.get("/metrics", headers={"Host": "evil.example:9787"}).status_code == 421
    evil = {"Origin": "http://evil.example"}
    assert metrics_client.get("/metrics", headers=evil).status_code == 403


def test_the_metrics_app_open_to_the_network_answers_any_host(replica):
    app = create_metrics_app(replica, SyncProgress(), metrics=AgentMetrics(), loopback_only=False)
    client = TestClient(app, base_url="http://store-42.lan:9787")
    assert client.get("/metrics").status_code == 200
    assert client.post("/orders", json={}).status_code == 404
