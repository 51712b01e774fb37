"""One `invctl buy`, one trace (issue #17): real processes (central with its relay, two store
agents, the CLI) export their spans over OTLP/HTTP to a receiver inside this test, which
decodes them as a collector would (ExportTraceServiceRequest).

The sale's trace holds the CLI's span, the agent's server span under it, the agent's call to
central, central's server span under that call and the reservation under central's span; the
relay's publish links to the reservation (the outbox row kept its context), and each store's
apply of the sale's records links to it (and, being a batch of that sale's records only, is
its child). No attribute anywhere holds a key, a token or a password.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from harness.waiting import eventually
from tests.support.processes import ADMIN_PASSWORD, SECRET, Stack, stack
from tests.support.terminal import token_in

SERVER, CLIENT = SpanProto.SPAN_KIND_SERVER, SpanProto.SPAN_KIND_CLIENT
PRODUCER, CONSUMER = SpanProto.SPAN_KIND_PRODUCER, SpanProto.SPAN_KIND_CONSUMER


@dataclass(frozen=True)
class Received:
    """One exported span, decoded: ids as hex, attributes as plain values."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]  # (trace id, span id) of each linked span
    other_values: tuple[Any, ...] = ()  # the resource's, events' and links' attribute values

    def linked_to(self, span: Received) -> bool:
        return (span.trace_id, span.span_id) in self.links

    def child_of(self, span: Received) -> bool:
        return (self.trace_id, self.parent_id) == (span.trace_id, span.span_id)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _values(pairs: list[KeyValue]) -> list[Any]:
    return list(_attributes(pairs).values())


def decode(body: bytes) -> list[Received]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                others = [*resource.values()]
                for event in span.events:
                    others += _values(list(event.attributes))
                for link in span.links:
                    others += _values(list(link.attributes))
                spans.append(
                    Received(
                        service=str(resource.get("service.name")),
                        name=span.name,
                        kind=span.kind,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes=_attributes(span.attributes),
                        links=tuple(
                            (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                        ),
                        other_values=tuple(others),
                    )
                )
    return spans


@dataclass
class OtlpReceiver:
    """POST /v1/traces as an OTLP/HTTP collector takes it (protobuf, uncompressed, which is
    the exporter's default); every span kept."""

    spans: list[Received] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, body: bytes) -> None:
        decoded = decode(body)
        with self.lock:
            self.requests += 1
            self.spans.extend(decoded)

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.spans)


@pytest.fixture
def receiver() -> Iterator[tuple[OtlpReceiver, str]]:
    """The receiver and its endpoint URL (OTEL_EXPORTER_OTLP_ENDPOINT)."""
    kept = OtlpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/traces" or self.headers.get("Content-Encoding"):
                self.send_error(400, f"not an uncompressed OTLP trace export: {self.path}")
                return
            kept.take(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the test reads spans
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield kept, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tracing_env(endpoint: str) -> dict[str, str]:
    """Every process of the stack traces, sends to `endpoint` and flushes every 100 ms; each
    names itself (central invctl-central, the agents storeagent, the CLI invctl)."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }


def set_up_two_stores(s: Stack) -> tuple[str, str]:
    """Central with one product in stock, and two stores; their API keys."""
    s.start_central()
    s.login_admin()
    keys = [s.invctl_json("store", "add", store, "--name", store)["api_key"] for store in STORES]
    category = s.invctl_json("category", "add", "Dairy")
    s.invctl(
        "product", "add", MILK, "--name", "Milk 1 L", "--price", "1.25",
        "--category", str(category["id"]),
    )  # fmt: skip
    s.invctl("stock", "set", MILK, "40")
    return keys[0], keys[1]


STORES = ("store-1", "store-2")
MILK = "MILK-1L"


def secrets_of(s: Stack, api_keys: tuple[str, ...]) -> list[str]:
    """What no span may hold: the stores' API keys, the admin's password and saved login
    token, the terminal token, the JWT secret and central's Kafka passwords."""
    found = [*api_keys, ADMIN_PASSWORD, SECRET, token_in(s.terminal_token_file)]
    credentials = json.loads((s.workdir / "invctl-config" / "credentials.json").read_text())
    found += [login["token"] for login in credentials["logins"].values()]
    for name, value in s.central_env().items():
        if name.endswith("PASSWORD_FILE"):
            found.append(Path(value).read_text().strip())
    return found


def one(spans: list[Received], what: str, **match: Any) -> Received:
    chosen = [span for span in spans if all(getattr(span, k) == v for k, v in match.items())]
    assert len(chosen) == 1, f"{what}: {len(chosen)} of {[(x.service, x.name) for x in spans]}"
    return chosen[0]


def test_one_buy_is_one_trace_from_the_cli_to_every_stores_replica(
    tmp_path, kafka_cluster, topic_prefix, receiver
):
    otlp, endpoint = receiver
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.env.update(tracing_env(endpoint))
        keys = set_up_two_stores(s)
        agents = [s.start_agent(store, key) for store, key in zip(STORES, keys, strict=True)]
        for agent in agents:
            eventually(
                lambda agent=agent: s.stock_at_agent(agent.url).get(MILK) == 40,
                what=f"{MILK} at {agent.name}",
            )

        bought = s.invctl("--agent", agents[0].url, "--json", "buy", f"{MILK}:2")
        sale = json.loads(bought.stdout)

        def sale_fanned_out() -> dict[str, Received]:
            return _the_sales_trace(otlp.received())

        trace = eventually(sale_fanned_out, 60, "the sale's spans from every process")
        for agent in agents:
            assert agent.stop() == 0  # the agent flushes its spans and stops at once
        secrets = secrets_of(s, keys)
        every_span = otlp.received()

    cli, server, client = trace["cli"], trace["agent_server"], trace["agent_client"]
    servers = sorted(
        (span.service, span.name)
        for span in every_span
        if span.trace_id == cli.trace_id and span.kind == SERVER
    )  # one each: FastAPI's own tracing (which would wrap them in another) is off
    assert servers == [
        ("invctl-central", trace["central_server"].name),
        ("storeagent", server.name),
    ]
    assert cli.attributes["invctl.command"] == "buy"
    assert cli.parent_id == ""
    assert (server.kind, client.kind) == (SERVER, CLIENT)
    assert server.child_of(cli)
    assert server.attributes["http.response.status_code"] == 201
    assert client.child_of(server)
    assert client.attributes["invctl.store_id"] == "store-1"
    assert client.attributes["invctl.local_ref"] == sale["local_ref"]
    assert client.attributes["invctl.outcome"] == "confirmed"
    central, reserve = trace["central_server"], trace["reserve"]
    assert central.kind == SERVER
    assert central.child_of(client)
    assert reserve.child_of(central)
    assert reserve.attributes["invctl.order_id"] == sale["order"]["id"]
    assert trace["publish"].linked_to(reserve)
    for store in STORES:
        applied = trace[f"apply {store}"]
        assert applied.linked_to(reserve)
        assert applied.child_of(reserve)  # a batch of this sale's records only
    assert_no_secret(every_span, secrets)


def _the_sales_trace(spans: list[Received]) -> dict[str, Received]:
    """The buy's spans by role, once all of them arrived (an AssertionError says which is
    missing: `eventually` tries again)."""
    cli = one(spans, "the CLI's span", service="invctl", name="invctl buy")
    in_trace = [span for span in spans if span.trace_id == cli.trace_id]
    found = {
        "cli": cli,
        "agent_server": one(
            in_trace, "the agent's server span", service="storeagent", name="HTTP POST /orders"
        ),
        "agent_client": one(in_trace, "the agent's call", name="central.place_order"),
        "central_server": one(
            in_trace,
            "central's server span",
            service="invctl-central",
            name="HTTP POST /api/v1/orders",
        ),
        "reserve": one(in_trace, "the reservation", name="order.reserve"),
    }
    reserve = found["reserve"]
    publishes = [s for s in spans if s.name == "outbox.publish" and s.linked_to(reserve)]
    assert publishes, "no publish linked to the reservation yet"
    found["publish"] = publishes[0]
    assert found["publish"].kind == PRODUCER
    for store in STORES:
        applies = [
            s
            for s in spans
            if s.name == "replica.apply"
            and s.kind == CONSUMER
            and s.attributes.get("invctl.store_id") == store
            and s.linked_to(reserve)
        ]
        assert applies, f"no apply at {store} linked to the reservation yet"
        found[f"apply {store}"] = applies[0]
    return found


def assert_no_secret(spans: list[Received], secrets: list[str]) -> None:
    assert spans and all(len(secret) >= 8 for secret in secrets), secrets
    values = [
        str(value)
        for span in spans
        for value in (*span.attributes.values(), *span.other_values, span.name)
    ]
    leaked = [(secret[:4], value) for secret in secrets for value in values if secret in value]
    assert leaked == []
