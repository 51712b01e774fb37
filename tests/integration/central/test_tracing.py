"""Tracing at central on SQLite and the real MariaDB, with the real Kafka (issue #17):
migration 11 keeps the trace context of each outbox row, a traced sale's records reach Kafka
with its `traceparent`, and a real `central serve` exports its spans over OTLP/HTTP to a
receiver in the test (one SERVER span per request: FastAPI's own tracing stays off), with no
secret in any attribute. Asked for without the exporter, central stops with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from central import migrations, models
from central.db import connect, is_mysql
from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from tests.support.central_harness import running_central
from tests.support.processes import ADMIN, ADMIN_PASSWORD, SECRET, stack
from tests.support.tracing import (
    CALLER_SPAN_ID,
    CALLER_TRACE_ID,
    CALLER_TRACEPARENT,
    linked_span_ids,
    only,
    recorded_spans,
    span_id_of,
    trace_id_of,
)

pytestmark = pytest.mark.integration

SPAN_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


# --- migration 11 ---------------------------------------------------------------------------


def outbox_columns(db: Any) -> list[str]:
    with db.connection_context():
        return [column.name for column in db.get_columns("outbox")]


def test_migration_11_adds_the_column_and_keeps_published_at_last(database_url):
    db = connect(database_url)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    migrations.migrate(db)
    with db.connection_context():  # back to schema 10: the outbox without the column
        db.execute_sql("ALTER TABLE outbox DROP COLUMN trace_context")
        models.SchemaMigration.delete().where(models.SchemaMigration.version == 11).execute()
        db.execute_sql(
            "INSERT INTO outbox (event_id, topic, `key`, payload, created_at) "
            "VALUES ('e-1', 'inventory-updated', 'MILK', '{}', '2026-12-01 10:00:00')"
        )

    assert migrations.migrate(db) == [11]

    columns = outbox_columns(db)
    assert "trace_context" in columns
    if is_mysql(db):  # a MariaDB backup reads published_at as the last column
        assert columns[-1] == "published_at"
    with db.connection_context():
        [row] = models.Outbox.select()
        assert (row.event_id, row.trace_context) == ("e-1", None)
    assert migrations.migrate(db) == []
    db.close()


def test_a_new_database_has_the_column_before_published_at(database_url):
    db = connect(database_url)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    migrations.migrate(db)

    columns = outbox_columns(db)
    assert columns.index("trace_context") < columns.index("published_at") == len(columns) - 1
    db.close()


# --- a traced sale through the real Kafka ---------------------------------------------------


def records_with_headers(kafka: KafkaCluster, topic: str, wanted: int) -> list[Any]:
    """Every record of `topic` from its beginning, with its headers, once `wanted` arrived."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        enable_auto_commit=False,
        group_id=None,
        **kafka.admin_config(),
    )
    try:
        partitions = eventually(lambda: consumer.partitions_for_topic(topic), what=topic)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list[Any] = []

        def arrived() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            return len(records) >= wanted

        eventually(arrived, 30, f"{wanted} records on {topic}", interval=0)
        return records
    finally:
        consumer.close()


def test_a_traced_sales_records_reach_kafka_with_its_context(
    database_url, kafka_cluster, topic_prefix
):
    with recorded_spans() as spans, running_central(database_url, kafka_cluster, topic_prefix) as h:
        admin = h.admin()
        category = h.call("POST", "/api/v1/categories", admin, json={"name": "Dairy"})
        product = {"sku": "MILK", "name": "Milk", "price": "1.25", "category_id": category["id"]}
        h.call("POST", "/api/v1/products", admin, json=product)
        h.call("PUT", "/api/v1/stock/MILK", admin, json={"quantity": 10})
        store = h.call("POST", "/api/v1/stores", admin, json={"id": "s1", "name": "North"})
        headers = {
            "X-API-Key": store["api_key"],
            "Idempotency-Key": uuid.uuid4().hex,
            "traceparent": CALLER_TRACEPARENT,
        }
        body = {"lines": [{"sku": "MILK", "quantity": 2}]}
        h.call("POST", "/api/v1/orders", headers, json=body)
        eventually(lambda: h.central.relay.backlog() == 0, what="outbox drained")
        reserve = only(spans, "order.reserve")
        eventually(
            lambda: (
                span_id_of(reserve)
                in set().union(*(linked_span_ids(s) for s in spans.named("outbox.publish")))
            ),
            what="a publish round linked to the sale",
        )

    assert trace_id_of(reserve) == CALLER_TRACE_ID
    records = records_with_headers(kafka_cluster, topic_prefix + "inventory-updated", 2)
    set_, sold = sorted(records, key=lambda r: dict(r.headers)["invctl-seq"].zfill(20))
    assert "traceparent" in dict(sold.headers)
    version, trace_id, span_id, _ = dict(sold.headers)["traceparent"].decode().split("-")
    assert (version, trace_id, span_id) == ("00", CALLER_TRACE_ID, span_id_of(reserve))
    assert json.loads(sold.value)["data"]["order_id"] is not None
    assert "traceparent" in dict(set_.headers)  # the admin's request was traced too


# --- a real central exporting over OTLP -----------------------------------------------------


@dataclass
class Received:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    links: list[tuple[str, str]]


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def decode(body: bytes) -> list[Received]:
    request = ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Received(
                        service=str(resource.get("service.name")),
                        name=span.name,
                        kind=SPAN_KINDS.get(span.kind, str(span.kind)),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                    )
                )
    return spans


@dataclass
class OtlpReceiver:
    """An OTLP/HTTP endpoint on loopback that keeps every span it is sent."""

    spans: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, body: bytes) -> None:
        with self.lock:
            self.spans.extend(decode(body))

    def named(self, name: str) -> list[Received]:
        with self.lock:
            return [span for span in self.spans if span.name == name]


@pytest.fixture
def otlp() -> Iterator[tuple[OtlpReceiver, str]]:
    receiver = OtlpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/v1/traces":
                receiver.take(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_real_central_exports_one_server_span_per_request_and_no_secret(
    tmp_path, database_url, kafka_cluster, topic_prefix, otlp
):
    receiver, endpoint = otlp
    with stack(tmp_path, kafka_cluster, topic_prefix, database_url) as s:
        s.env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        central = s.start_central()
        api = f"{s.central_url}/api/v1"
        form = {"username": ADMIN, "password": ADMIN_PASSWORD}
        answer = httpx.post(
            f"{api}/auth/token", data=form, headers={"traceparent": CALLER_TRACEPARENT}
        )
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        assert answer.headers["X-Request-ID"] == CALLER_TRACE_ID
        admin = {"Authorization": f"Bearer {token}", "X-Request-ID": "ops-check.1"}
        stores = httpx.post(f"{api}/stores", json={"id": "s1", "name": "N"}, headers=admin)
        assert stores.status_code == 201, stores.text
        assert stores.headers["X-Request-ID"] == "ops-check.1"
        api_key = stores.json()["api_key"]

        assert central.stop() == 0  # SIGTERM: central sends what it still holds, then exits
        lines = [json.loads(line) for line in central.log_lines() if line.startswith("{")]

    servers = [s for s in receiver.spans if s.kind == "server" and "/api/v1" in s.name]
    assert sorted(span.name for span in servers) == [
        "HTTP POST /api/v1/auth/token",
        "HTTP POST /api/v1/stores",
    ]
    login = next(span for span in servers if span.name.endswith("/auth/token"))
    assert (login.trace_id, login.parent_span_id) == (CALLER_TRACE_ID, CALLER_SPAN_ID)
    assert login.service == "invctl-central"
    assert login.attributes == {
        "http.request.method": "POST",
        "http.route": "/api/v1/auth/token",
        "http.response.status_code": 200,
    }
    created = next(span for span in servers if span.name.endswith("/stores"))
    [access] = [
        line
        for line in lines
        if line["event"] == "http.request" and line.get("request_id") == "ops-check.1"
    ]
    assert access["trace_id"] == created.trace_id
    values = [str(v) for span in receiver.spans for v in span.attributes.values()]
    for secret in (ADMIN_PASSWORD, token, api_key, SECRET):
        assert not [value for value in values if secret in value]


def test_tracing_asked_for_without_the_exporter_stops_central_with_exit_2(tmp_path: Path):
    blocked = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"  # as if the extra were not installed
        "from central.cli import main; main()\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "INVCTL_JWT_SECRET": SECRET,
        "INVCTL_DATABASE_URL": f"sqlite:///{tmp_path / 'central.db'}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith("[config.tracing_unavailable]")
    assert "invctl[otlp]" in done.stderr
    assert not (tmp_path / "central.db").exists()  # refused before anything was made
