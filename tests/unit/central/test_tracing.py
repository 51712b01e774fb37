"""Tracing at central (invwire.tracing, issue #17): each request is a SERVER span under the
caller's `traceparent`, the reservation, the cancel and a recovery each a span of their own,
each outbox row keeps the context of the span that wrote it, and the relay sends that context
as Kafka record headers from a PRODUCER span linked to it. Off: no span, no header, no
context kept. No span holds a key, token or password."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.trace import SpanKind

from central.api import create_app
from central.epochs import start_confirmed_epoch
from central.kafka import record_headers
from central.models import Outbox
from central.outbox import MAX_PUBLISH_LINKS, OutboxRecord, publish_links, trace_context_of
from central.services import accounts, recovery
from central.services.principal import Principal, Role
from invwire import tracing
from invwire.logs import configure_logging
from tests.support.tracing import (
    CALLER_SPAN_ID,
    CALLER_TRACE_ID,
    CALLER_TRACEPARENT,
    RecordedSpans,
    attribute_values,
    linked_span_ids,
    only,
    parent_span_id,
    recorded_spans,
    span_id_of,
    trace_id_of,
)

pytestmark = pytest.mark.unit

ADMIN_PASSWORD = "root-password-never-traced"
ORDERS = "/api/v1/orders"
HEX32 = re.compile(r"[0-9a-f]{32}")


@dataclass
class Shop:
    central: Any
    client: TestClient
    admin: dict[str, str]
    store: dict[str, str]

    def buy(self, quantity: int = 2, key: str | None = None, **headers: str) -> Any:
        body = {"lines": [{"sku": "MILK-1L", "quantity": quantity}]}
        sent = {**self.store, "Idempotency-Key": key or uuid.uuid4().hex, **headers}
        return self.client.post(ORDERS, json=body, headers=sent)

    def outbox(self) -> list[Outbox]:
        with self.central.db.connection_context():
            return list(Outbox.select().order_by(Outbox.id))


@pytest.fixture(autouse=True)
def tracing_off_around_each_test() -> Iterator[None]:
    assert not tracing.enabled(), "a test left tracing on"
    yield
    assert not tracing.enabled()


@pytest.fixture
def shop(central) -> Iterator[Shop]:
    accounts.create_user(central.uow(), accounts.NewUser("root", ADMIN_PASSWORD, "admin"))
    with TestClient(create_app(central, manage_relay=False)) as client:
        form = {"username": "root", "password": ADMIN_PASSWORD}
        token = client.post("/api/v1/auth/token", data=form).json()["access_token"]
        admin = {"Authorization": f"Bearer {token}"}
        category = client.post("/api/v1/categories", json={"name": "Dairy"}, headers=admin)
        product = {"sku": "MILK-1L", "name": "Milk", "price": "1.25"}
        product["category_id"] = category.json()["id"]
        assert client.post("/api/v1/products", json=product, headers=admin).status_code == 201
        client.put("/api/v1/stock/MILK-1L", json={"quantity": 40}, headers=admin)
        made = client.post("/api/v1/stores", json={"id": "s1", "name": "North"}, headers=admin)
        yield Shop(central, client, admin, {"X-API-Key": made.json()["api_key"]})


@pytest.fixture
def spans() -> Iterator[RecordedSpans]:
    with recorded_spans("invctl-central") as recorded:
        yield recorded


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(logging.INFO, stream)
    yield stream
    logging.getLogger().handlers.clear()


def traceparent(span: Any) -> str:
    """The header naming `span`, with its own flags (sampled, random trace id: 03)."""
    return f"00-{trace_id_of(span)}-{span_id_of(span)}-{span.context.trace_flags:02x}"


def order_rows(shop: Shop) -> list[Outbox]:
    return [row for row in shop.outbox() if row.topic == "inventory-updated"]


# --- off ------------------------------------------------------------------------------------


def test_off_no_context_is_kept_or_sent_and_the_request_id_is_random(shop, publisher):
    answer = shop.buy(traceparent=CALLER_TRACEPARENT)

    assert answer.status_code == 201, answer.text
    request_id = answer.headers["X-Request-ID"]
    assert HEX32.fullmatch(request_id) and request_id != CALLER_TRACE_ID
    assert {row.trace_context for row in shop.outbox()} == {None}
    shop.central.relay.run_once()
    assert publisher.published
    for record in publisher.published:
        assert record.trace_context is None
        assert {name for name, _ in record_headers(record)} == {
            "event_id",
            "invctl-epoch",
            "invctl-seq",
        }


# --- a request ------------------------------------------------------------------------------


def test_a_request_is_a_server_span_under_the_callers_traceparent(shop, spans):
    answer = shop.buy(traceparent=CALLER_TRACEPARENT)

    assert answer.status_code == 201, answer.text
    server = only(spans, "HTTP POST /api/v1/orders")
    assert server.kind is SpanKind.SERVER
    assert trace_id_of(server) == CALLER_TRACE_ID
    assert parent_span_id(server) == CALLER_SPAN_ID
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/api/v1/orders",
        "http.response.status_code": 201,
    }


def test_without_a_request_id_of_the_callers_the_trace_id_is_the_request_id(shop, spans):
    answer = shop.buy(traceparent=CALLER_TRACEPARENT)

    assert answer.headers["X-Request-ID"] == CALLER_TRACE_ID


def test_a_request_without_traceparent_starts_a_trace_whose_id_is_the_request_id(shop, spans):
    answer = shop.buy()

    server = only(spans, "HTTP POST /api/v1/orders")
    assert server.parent is None
    assert answer.headers["X-Request-ID"] == trace_id_of(server)


def test_the_callers_request_id_is_kept_and_every_log_line_has_the_trace_id_too(
    shop, spans, log_lines
):
    answer = shop.buy(traceparent=CALLER_TRACEPARENT, **{"X-Request-ID": "till-7.1"})

    assert answer.headers["X-Request-ID"] == "till-7.1"
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    [access] = [line for line in lines if line["event"] == "http.request"]
    assert (access["request_id"], access["trace_id"]) == ("till-7.1", CALLER_TRACE_ID)


def test_an_unmatched_path_is_a_span_named_by_its_method_alone(shop, spans):
    answer = shop.client.get("/api/v1/no/such/route/MILK-1L")

    assert answer.status_code == 404
    [server] = spans.get_finished_spans()
    assert server.name == "HTTP GET"
    assert "http.route" not in (server.attributes or {})
    assert (server.attributes or {})["http.response.status_code"] == 404


def test_a_malformed_traceparent_starts_a_new_trace(shop, spans):
    answer = shop.buy(traceparent="00-not-a-context-01")

    assert answer.status_code == 201, answer.text
    assert only(spans, "HTTP POST /api/v1/orders").parent is None


# --- orders ---------------------------------------------------------------------------------


def test_the_reservation_is_a_child_of_the_request_with_safe_attributes_only(shop, spans):
    answer = shop.buy(3, traceparent=CALLER_TRACEPARENT)

    server = only(spans, "HTTP POST /api/v1/orders")
    reserve = only(spans, "order.reserve")
    assert reserve.kind is SpanKind.INTERNAL
    assert parent_span_id(reserve) == span_id_of(server)
    assert dict(reserve.attributes or {}) == {
        "invctl.store_id": "s1",
        "invctl.lines": 1,
        "invctl.units": 3,
        "invctl.order_id": answer.json()["id"],
        "invctl.outcome": "confirmed",
    }


def test_a_replayed_key_is_the_reservations_outcome(shop, spans):
    shop.buy(key="till-key-1")
    shop.buy(key="till-key-1")

    outcomes = [s.attributes["invctl.outcome"] for s in spans.named("order.reserve")]
    assert outcomes == ["confirmed", "replayed"]


def test_a_refusal_is_the_reservations_outcome_and_writes_no_row(shop, spans):
    before = shop.outbox()

    answer = shop.buy(41)

    assert answer.status_code == 409
    code = answer.json()["error"]["code"]
    reserve = only(spans, "order.reserve")
    assert reserve.attributes["invctl.outcome"] == code
    assert "invctl.order_id" not in reserve.attributes
    assert len(shop.outbox()) == len(before)


def test_each_outbox_row_keeps_the_context_of_the_span_that_wrote_it(shop, spans):
    shop.buy(traceparent=CALLER_TRACEPARENT)

    reserve = only(spans, "order.reserve")
    stocked, sold = order_rows(shop)  # the shop's stock set untraced, then the sale
    assert stocked.trace_context is None
    assert json.loads(sold.trace_context) == {"traceparent": traceparent(reserve)}


def test_a_cancel_is_a_span_and_its_rows_keep_its_context(shop, spans):
    order = shop.buy().json()

    answer = shop.client.post(f"{ORDERS}/{order['id']}/cancel", headers=shop.admin)

    assert answer.status_code == 200, answer.text
    cancel = only(spans, "order.cancel")
    server = only(spans, "HTTP POST /api/v1/orders/{order_id}/cancel")
    assert parent_span_id(cancel) == span_id_of(server)
    assert dict(cancel.attributes or {}) == {
        "invctl.order_id": order["id"],
        "invctl.store_id": "s1",
        "invctl.outcome": "cancelled",
    }
    released, updated = shop.outbox()[-2:]
    assert (released.topic, updated.topic) == ("inventory-updated", "order-updated")
    for row in (released, updated):
        assert json.loads(row.trace_context) == {"traceparent": traceparent(cancel)}


def test_a_cancel_of_an_unknown_order_names_no_order(shop, spans):
    unknown = str(uuid.uuid4())

    answer = shop.client.post(f"{ORDERS}/{unknown}/cancel", headers=shop.admin)

    assert answer.status_code == 404
    cancel = only(spans, "order.cancel")
    assert dict(cancel.attributes or {}) == {"invctl.outcome": answer.json()["error"]["code"]}


def test_a_recovery_is_one_span_with_the_count_of_each_outcome(shop, spans, central, clock):
    placed = shop.buy(key="k-kept").json()
    clock.advance(60)
    start_confirmed_epoch(central.db, clock.now())
    kept = {
        "id": placed["id"],
        "idempotency_key": "k-kept",
        "created_at": placed["created_at"],
        "cancelled_at": None,
        "lines": [{"sku": "MILK-1L", "quantity": 2, "unit_price": "1.25"}],
    }
    lost = {**kept, "id": str(uuid.uuid4()), "idempotency_key": "k-lost"}
    clashing = {**kept, "idempotency_key": "k-other"}  # the kept order's id, another key
    store = Principal("store:s1", Role.STORE, "s1")

    recovery.recover_orders(central.uow(), store, [kept, lost, clashing])

    recover = only(spans, "order.recover")
    assert dict(recover.attributes or {}) == {
        "invctl.store_id": "s1",
        "invctl.epoch": 2,
        "invctl.orders": 3,
        "invctl.present": 1,
        "invctl.recovered": 1,
        "invctl.unrecovered": 0,
        "invctl.conflicts": 1,
    }


def test_a_recovery_refused_is_the_spans_outcome(shop, spans, central):
    store = Principal("store:s1", Role.STORE, "s1")
    sale = {
        "id": str(uuid.uuid4()),
        "idempotency_key": "k1",
        "created_at": "2026-11-29T10:00:00+00:00",
        "cancelled_at": None,
        "lines": [{"sku": "MILK-1L", "quantity": 1, "unit_price": "1.25"}],
    }

    with pytest.raises(recovery.NotRestored) as refused:
        recovery.recover_orders(central.uow(), store, [sale])

    recover = only(spans, "order.recover")
    assert dict(recover.attributes or {}) == {
        "invctl.store_id": "s1",
        "invctl.outcome": refused.value.code,
    }


# --- the relay ------------------------------------------------------------------------------


def test_the_relay_sends_each_rows_context_and_its_publish_span_links_to_the_writers(
    shop, spans, publisher
):
    shop.buy(traceparent=CALLER_TRACEPARENT)
    shop.buy()
    reserves = spans.named("order.reserve")

    published = shop.central.relay.run_once()

    publish = only(spans, "outbox.publish")
    assert publish.kind is SpanKind.PRODUCER
    assert dict(publish.attributes or {}) == {
        "invctl.records": published,
        "messaging.system": "kafka",
    }
    assert linked_span_ids(publish) == {span_id_of(span) for span in reserves}
    sold = [r for r in publisher.published if r.topic == "inventory-updated"]
    sent = [dict(record_headers(record)).get("traceparent") for record in sold]
    assert sent[-2:] == [traceparent(span).encode() for span in reserves]


def test_the_relay_sends_a_rows_context_even_when_its_own_tracing_is_off(shop, publisher):
    with recorded_spans() as recorded:
        shop.buy()
    reserve = only(recorded, "order.reserve")

    shop.central.relay.run_once()  # tracing off: no span, the headers all the same

    sold = [r for r in publisher.published if r.topic == "inventory-updated"][-1]
    assert ("traceparent", traceparent(reserve).encode()) in record_headers(sold)


def record(n: int, context: dict[str, str] | None) -> OutboxRecord:
    return OutboxRecord(n, f"e-{n}", "inventory-updated", "MILK-1L", "{}", trace_context=context)


def test_a_publish_span_links_each_writer_once_and_at_most_the_cap(spans):
    writers = [f"00-{n:032x}-{n:016x}-01" for n in range(1, MAX_PUBLISH_LINKS + 50)]
    records = [record(n, {"traceparent": tp}) for n, tp in enumerate(writers)]
    records += [record(900, {"traceparent": writers[0]}), record(901, None)]

    links = publish_links(records)

    assert len(links) == MAX_PUBLISH_LINKS
    assert [link.context.span_id for link in links[:2]] == [1, 2]


@pytest.mark.parametrize("raw", [None, "", "not json", "[1]", '{"traceparent": 7}', '"00-a-b-01"'])
def test_a_row_whose_context_is_unreadable_is_published_untraced(raw):
    assert trace_context_of(raw) is None


# --- secrets --------------------------------------------------------------------------------


def test_no_span_holds_a_key_token_or_password(shop, spans):
    order = shop.buy(traceparent=CALLER_TRACEPARENT).json()
    shop.buy(41)
    shop.client.post(f"{ORDERS}/{order['id']}/cancel", headers=shop.admin)
    shop.client.post("/api/v1/auth/token", data={"username": "root", "password": "wrong"})
    shop.central.relay.run_once()

    secrets = [
        shop.store["X-API-Key"],
        shop.admin["Authorization"].removeprefix("Bearer "),
        ADMIN_PASSWORD,
    ]
    values = [str(value) for value in attribute_values(spans.get_finished_spans())]
    assert len(spans.get_finished_spans()) >= 7 and values
    for secret in secrets:
        assert not [value for value in values if secret in value]


def test_an_exception_marks_its_span_failed_with_its_type_only_never_its_message():
    secret = "password=hunter2-from-a-settings-error"
    with recorded_spans() as spans:
        with pytest.raises(RuntimeError), tracing.span("work"):
            raise RuntimeError(secret)
        [failed] = spans.all()

    assert failed.status.description == "RuntimeError"
    assert not failed.events, "no exception event: its message and stack stay out"
    assert secret not in json.dumps(failed.to_json())
