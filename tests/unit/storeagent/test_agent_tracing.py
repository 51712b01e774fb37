"""Tracing at the agent (invwire.tracing, issue #17): the till's request is a SERVER span under
the till's `traceparent`, the call to central a CLIENT span whose context central gets as
`traceparent`, each applied batch a CONSUMER span linked to the sales its records carry; off,
no span and no header. No span holds the store's API key or the terminal token.

Central is the real httpx adapter over httpx.MockTransport; spans go to an in-memory exporter
(tests.support.tracing)."""

import json

import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.trace import SpanKind, StatusCode

from invwire import tracing
from invwire.orders import Line
from storeagent.app import Sales, build_sales
from storeagent.http.app import create_app
from storeagent.replica.db import Replica
from storeagent.sales.desk import PlaceOrder
from storeagent.sales.recovery import SalesRecovery
from storeagent.sync.apply import apply_batch
from storeagent.sync.loop import topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record
from storeagent.sync.trace_links import batch_links
from storeagent.upstream.client import CentralUnavailable, HttpCentralClient, calling_central
from storeagent.upstream.resilience import ResilientCentral
from tests.support.agent_fakes import (
    FakeCentral,
    FixedClock,
    bootstrapped,
    epoch_headers,
    product_event,
    stock_event,
)
from tests.support.terminal import TERMINAL_TOKEN, terminal_client
from tests.support.tracing import (
    EXAMPLE_SPAN_ID,
    EXAMPLE_TRACE_ID,
    RecordedSpans,
    new_traceparent,
    recorded_spans,
)

API_KEY = "sk-store-key-must-never-be-traced"
MILK = "MILK-1L"
ORDER_ID = "0b7e3c9e-0000-4000-8000-000000000001"
CALLER_TRACEPARENT = new_traceparent()  # the till's context (W3C's example ids)


@pytest.fixture(autouse=True)
def tracing_off_by_default():
    assert not tracing.enabled(), "a test left tracing on"


@pytest.fixture
def spans():
    with recorded_spans() as exporter:
        yield exporter


def hex_ids(span) -> tuple[str, str]:
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def names_the_span(header: str, span) -> bool:
    """Whether a `traceparent` header carries `span`'s context (whatever its flags)."""
    version, trace_id, span_id, _flags = header.split("-")
    return (version, (trace_id, span_id)) == ("00", hex_ids(span))


class CentralOverHttp:
    """Central behind the real adapter: each request kept, POST /orders confirmed with the
    lines' new stock, POST /orders/{id}/cancel cancelled; `down` refuses every connection."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.down = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path.endswith("/cancel"):
            return httpx.Response(200, json={**self._order([]), "status": "cancelled"})
        lines = json.loads(request.content)["lines"]
        return httpx.Response(201, json=self._order(lines))

    def _order(self, lines: list[dict]) -> dict:
        return {
            "id": ORDER_ID,
            "store_id": "s1",
            "status": "confirmed",
            "created_at": "2026-11-29T10:00:00+00:00",
            "cancelled_at": None,
            "total": "2.50",
            "lines": [
                {**line, "unit_price": "1.25", "stock": {"quantity": 38, "stock_version": 8}}
                for line in lines
            ],
        }

    def client(self) -> ResilientCentral:
        adapter = HttpCentralClient(
            "http://central:8000", API_KEY, transport=httpx.MockTransport(self.handle)
        )
        return ResilientCentral(adapter, sleep=lambda _: None)


def stocked(replica: Replica) -> Replica:
    return bootstrapped(
        replica,
        product_event(sku=MILK, name="Milk 1 L"),
        stock_event(sku=MILK, quantity=40, stock_version=7),
    )


@pytest.fixture
def central() -> CentralOverHttp:
    return CentralOverHttp()


@pytest.fixture
def till(replica, central, clock) -> TestClient:
    desk = build_sales(stocked(replica), central.client(), clock=clock, store_id="s1").desk
    app = create_app(
        replica,
        SyncProgress(),
        store_id="s1",
        topics=topic_names(""),
        orders=desk,
        terminal_token=TERMINAL_TOKEN,
    )
    return terminal_client(app)


def buy(till: TestClient, **headers: str) -> httpx.Response:
    return till.post("/orders", json={"lines": [{"sku": MILK, "quantity": 2}]}, headers=headers)


def assert_no_secret(spans: RecordedSpans, *secrets: str) -> None:
    values = [str(value) for value in spans.attribute_values()]
    assert values, "no attributes at all"
    for secret in secrets:
        assert not [value for value in values if secret in value], secret


# --- off ----------------------------------------------------------------------------------


def test_off_the_agent_sends_central_no_traceparent_even_when_the_till_sent_one(till, central):
    answered = buy(till, traceparent=CALLER_TRACEPARENT)

    assert answered.status_code == 201, answered.text
    [sent] = central.requests
    assert "traceparent" not in sent.headers
    assert "tracestate" not in sent.headers


# --- the till's sale ------------------------------------------------------------------------


def test_the_tills_request_is_a_server_span_under_the_tills_traceparent(till, spans):
    answered = buy(till, traceparent=CALLER_TRACEPARENT)

    assert answered.status_code == 201, answered.text
    server = spans.only("HTTP POST /orders")
    assert server.kind is SpanKind.SERVER
    assert server.context.trace_id == EXAMPLE_TRACE_ID
    assert server.parent is not None and server.parent.span_id == EXAMPLE_SPAN_ID
    assert server.attributes["http.route"] == "/orders"
    assert server.attributes["http.response.status_code"] == 201


def test_the_call_to_central_is_a_client_span_whose_context_central_gets_as_traceparent(
    till, central, spans
):
    answered = buy(till, traceparent=CALLER_TRACEPARENT)

    server = spans.only("HTTP POST /orders")
    client = spans.only("central.place_order")
    assert client.kind is SpanKind.CLIENT
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    assert client.context.trace_id == EXAMPLE_TRACE_ID
    assert dict(client.attributes) == {
        "invctl.store_id": "s1",
        "invctl.local_ref": answered.json()["local_ref"],
        "invctl.outcome": "confirmed",
    }
    [sent] = central.requests
    assert names_the_span(sent.headers["traceparent"], client)


def test_a_sale_without_a_tills_traceparent_starts_a_trace_of_its_own(till, central, spans):
    buy(till)

    server = spans.only("HTTP POST /orders")
    assert server.parent is None
    [sent] = central.requests
    assert names_the_span(sent.headers["traceparent"], spans.only("central.place_order"))


def test_a_malformed_traceparent_starts_a_new_trace_and_the_sale_goes_through(till, spans):
    answered = buy(till, traceparent="00-not-a-trace-01")

    assert answered.status_code == 201, answered.text
    assert spans.only("HTTP POST /orders").parent is None


def test_central_unreachable_is_the_client_spans_error_and_outcome(till, central, spans):
    central.down = True

    answered = buy(till)

    assert answered.status_code == 503
    client = spans.only("central.place_order")
    assert client.attributes["invctl.outcome"] == "central.unavailable"
    assert client.status.status_code is StatusCode.ERROR
    assert len(central.requests) == 3  # the retries are HTTP calls under the one span
    assert all(names_the_span(r.headers["traceparent"], client) for r in central.requests)


def test_the_tills_cancel_is_a_client_span_too(till, central, spans):
    sold = buy(till).json()

    cancelled = till.post(f"/orders/{sold['local_ref']}/cancel", json={})

    assert cancelled.status_code == 200, cancelled.text
    client = spans.only("central.cancel_order")
    assert client.attributes["invctl.order_id"] == ORDER_ID
    assert client.attributes["invctl.outcome"] == "cancelled"
    assert names_the_span(central.requests[-1].headers["traceparent"], client)


def test_no_span_holds_the_stores_api_key_or_the_terminal_token(till, central, spans):
    buy(till, traceparent=CALLER_TRACEPARENT)
    central.down = True
    buy(till)

    assert_no_secret(spans, API_KEY, TERMINAL_TOKEN)
    assert all(request.headers["X-API-Key"] == API_KEY for request in central.requests)


def test_outside_any_span_the_adapter_sends_no_traceparent(central, spans):
    central.client().place_order("k1", [Line(MILK, 1)])

    [sent] = central.requests
    assert "traceparent" not in sent.headers


def test_an_error_leaving_a_central_call_is_recorded_and_not_swallowed(spans):
    with pytest.raises(CentralUnavailable), calling_central("find_order", local_ref="r1"):
        raise CentralUnavailable("no answer", reason="timeout")

    client = spans.only("central.find_order")
    assert client.attributes["invctl.outcome"] == "central.unavailable"
    assert client.status.status_code is StatusCode.ERROR


# --- recovery -----------------------------------------------------------------------------


def test_a_recovery_call_is_a_client_span_with_the_number_of_sales_sent(replica, clock, spans):
    fake = FakeCentral(clock=clock)
    fake.set_stock(MILK, 40, 7)
    sales: Sales = build_sales(
        stocked(replica), ResilientCentral(fake, sleep=lambda _: None), clock=clock
    )
    for key in ("k1", "k2"):
        sales.desk.place(PlaceOrder([{"sku": MILK, "quantity": 1}], idempotency_key=key))
    fake.restore(keep={"k1"}, epoch=2)  # central lost k2; the replica heard of epoch 2
    recovery = SalesRecovery(
        sales.orders, sales.recovery._shelf, sales.recovery._central, replica_epoch=lambda: 2
    )

    assert recovery.step() is True

    client = spans.only("central.recover_orders")
    assert client.kind is SpanKind.CLIENT
    assert client.attributes["invctl.records"] == 2
    assert client.attributes["invctl.outcome"] == "answered"
    assert client.attributes["invctl.epoch"] == 2


# --- apply ----------------------------------------------------------------------------------


def traced(traceparent_: str | None, sku: str, offset: int) -> Record:
    topic, key, value = stock_event(sku=sku, quantity=offset + 1, stock_version=offset + 1)
    headers = epoch_headers(1)
    if traceparent_ is not None:
        headers += (("traceparent", traceparent_.encode()),)
    return Record(topic, 0, offset, key, value, headers)


SALE_A = new_traceparent(0xA1, 0xA2)
SALE_B = new_traceparent(0xB1, 0xB2)


def apply(replica: Replica, records: list[Record]):
    return apply_batch(replica, records, prefix="", now=FixedClock()(), store_id="s1")


def linked(span) -> list[tuple[int, int]]:
    return [(link.context.trace_id, link.context.span_id) for link in span.links]


def test_a_batch_of_several_sales_records_is_one_consumer_span_linked_to_each_sale(replica, spans):
    records = [
        traced(SALE_A, "A-1", 0),
        traced(SALE_A, "A-2", 1),
        traced(None, "UNTRACED", 2),
        traced(SALE_B, "B-1", 3),
    ]

    result = apply(replica, records)

    assert result.applied == 4
    applied = spans.only("replica.apply")
    assert applied.kind is SpanKind.CONSUMER
    assert linked(applied) == [(0xA1, 0xA2), (0xB1, 0xB2)]  # one link per sale
    assert applied.parent is None  # of two sales' traces, the batch is in neither
    assert dict(applied.attributes) == {
        "invctl.records": 4,
        "invctl.events": 4,
        "invctl.store_id": "s1",
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
    }


def test_a_batch_of_one_sales_records_is_a_child_of_that_sales_span(replica, spans):
    apply(replica, [traced(SALE_A, "A-1", 0), traced(None, "X", 1), traced(SALE_A, "A-2", 2)])

    applied = spans.only("replica.apply")
    assert applied.context.trace_id == 0xA1
    assert applied.parent is not None and applied.parent.span_id == 0xA2
    assert linked(applied) == [(0xA1, 0xA2)]


def test_a_batch_without_trace_context_is_a_span_of_its_own_without_links(replica, spans):
    apply(replica, [traced(None, "X", 0), traced("not a traceparent", "Y", 1)])

    applied = spans.only("replica.apply")
    assert applied.parent is None
    assert list(applied.links) == []


def test_links_are_capped(spans):
    records = [traced(new_traceparent(0x100 + n, 0x200 + n), f"S-{n}", n) for n in range(5)]

    links = batch_links(records, limit=3)

    assert [link.context.span_id for link in links] == [0x200, 0x201, 0x202]


class DiskFailing(Replica):
    """Fails writing any stock row, as a failing disk would: the batch rolls back."""

    def upsert_stock(self, event, occurred_at):
        raise OSError("disk I/O error")


def test_a_batch_that_fails_is_the_spans_error(replica, spans):
    with pytest.raises(OSError):
        apply(DiskFailing(replica.db), [traced(SALE_A, "A-1", 0)])

    applied = spans.only("replica.apply")
    assert applied.status.status_code is StatusCode.ERROR
    assert "invctl.events" not in applied.attributes
