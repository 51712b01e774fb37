"""invctl traced (invwire.tracing, issue #17): with the OTEL_* variables set, a command is a
root span "invctl {command path}" whose context every request carries as `traceparent`, its
X-Request-ID is the trace id, and its spans are exported before it exits; off, no header and
no OpenTelemetry imported. No span holds the key or token the command used."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.trace import StatusCode

from invctl.traced import bound_export_time
from invwire import tracing
from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body
from tests.support.tracing import (
    ENDPOINT_ENV,
    RecordedSpans,
    attribute_values,
    only,
    recorded_spans,
    span_id_of,
    trace_id_of,
)

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
ORDER_ID = "5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13"
STORE_KEY = "store-key-never-in-a-span-1"
TOKEN = "bearer-token-never-in-a-span-2"
ORDER = {
    "id": ORDER_ID,
    "store_id": "store-042",
    "status": "confirmed",
    "created_at": "2026-11-29T10:00:00+00:00",
    "created_by": "store:store-042",
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
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def tracing_off_around_each_test() -> Iterator[None]:
    assert not tracing.enabled(), "a test left tracing on"
    yield
    assert not tracing.enabled(), "the command left tracing on"


@pytest.fixture
def spans() -> Iterator[RecordedSpans]:
    with recorded_spans("invctl") as recorded:
        yield recorded


def traced(cli: CliHarness, *args: str, **env: str):
    return cli(*args, env={**ENDPOINT_ENV, **env})


def traceparent(span) -> str:
    """The header naming `span`, with its own flags (sampled, random trace id: 03)."""
    return f"00-{trace_id_of(span)}-{span_id_of(span)}-{span.context.trace_flags:02x}"


def test_off_requests_carry_no_traceparent_and_a_random_request_id(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("POST", f"{AGENT}/orders", 201, {**ORDER, "local_ref": "L-1", "order": ORDER})

    result = cli("buy", "MILK-1L:2")

    assert result.exit_code == 0, result.output
    sent = server.requests[-1]
    assert "traceparent" not in sent.headers
    assert HEX32.fullmatch(sent.headers["X-Request-ID"])


def test_a_command_is_a_root_span_whose_context_and_trace_id_every_request_carries(
    cli: CliHarness, server: FakeServer, spans: RecordedSpans
) -> None:
    server.on("POST", f"{AGENT}/orders", 201, {**ORDER, "local_ref": "L-1", "order": ORDER})

    result = traced(cli, "buy", "MILK-1L:2")

    assert result.exit_code == 0, result.output
    root = only(spans, "invctl buy")
    assert root.parent is None
    assert dict(root.attributes or {}) == {"invctl.command": "buy", "invctl.outcome": "ok"}
    sent = server.requests[-1]
    assert sent.headers["traceparent"] == traceparent(root)
    assert sent.headers["X-Request-ID"] == trace_id_of(root)


def test_a_nested_command_is_named_by_its_path_and_never_by_its_arguments(
    cli: CliHarness, server: FakeServer, spans: RecordedSpans
) -> None:
    server.on("POST", f"{API}/orders/{ORDER_ID}/cancel", 200, {**ORDER, "status": "cancelled"})

    result = traced(
        cli, "--central", CENTRAL, "orders", "cancel", ORDER_ID, INVCTL_API_KEY=STORE_KEY
    )

    assert result.exit_code == 0, result.output
    root = only(spans, "invctl orders cancel")
    assert root.attributes is not None and root.attributes["invctl.command"] == "orders cancel"
    assert server.requests[-1].headers["traceparent"] == traceparent(root)


def test_every_request_of_a_command_carries_the_same_context(
    cli: CliHarness, server: FakeServer, spans: RecordedSpans
) -> None:
    server.on("GET", f"{API}/orders", 200, {"items": [ORDER], "next_before": None})
    server.on("POST", f"{API}/orders/{ORDER_ID}/cancel", 200, {**ORDER, "status": "cancelled"})

    result = traced(cli, "--central", CENTRAL, "orders", "cancel", "5f0c9a1e", INVCTL_TOKEN=TOKEN)

    assert result.exit_code == 0, result.output
    root = only(spans, "invctl orders cancel")
    assert len(server.requests) == 2  # the prefix looked up, then the cancel
    assert {r.headers["traceparent"] for r in server.requests} == {traceparent(root)}
    assert {r.headers["X-Request-ID"] for r in server.requests} == {trace_id_of(root)}


def test_a_refusal_is_the_spans_outcome_and_error(
    cli: CliHarness, server: FakeServer, spans: RecordedSpans
) -> None:
    refusal = error_body("stock.insufficient", "not enough MILK-1L")
    server.on("POST", f"{API}/orders", 409, refusal)

    result = traced(cli, "--central", CENTRAL, "buy", "MILK-1L:2", INVCTL_API_KEY=STORE_KEY)

    assert result.exit_code == 4, result.output
    root = only(spans, "invctl buy")
    assert root.attributes is not None
    assert root.attributes["invctl.outcome"] == "stock.insufficient"
    assert root.status.status_code is StatusCode.ERROR


def test_a_script_chosen_request_id_wins_over_the_trace_id(
    cli: CliHarness, server: FakeServer, spans: RecordedSpans
) -> None:
    server.on("POST", f"{AGENT}/orders", 201, {**ORDER, "local_ref": "L-1", "order": ORDER})

    traced(cli, "buy", "MILK-1L:2", INVCTL_REQUEST_ID="nightly-run.42")

    sent = server.requests[-1]
    assert sent.headers["X-Request-ID"] == "nightly-run.42"
    assert sent.headers["traceparent"] == traceparent(only(spans, "invctl buy"))


@pytest.mark.parametrize(
    ("credential", "secret", "status"),
    [("INVCTL_API_KEY", STORE_KEY, 201), ("INVCTL_TOKEN", TOKEN, 401)],
)
def test_no_span_holds_the_store_key_or_the_token(
    cli: CliHarness,
    server: FakeServer,
    spans: RecordedSpans,
    credential: str,
    secret: str,
    status: int,
) -> None:
    answer = ORDER if status == 201 else error_body("auth.invalid", f"refused {secret}")
    server.on("POST", f"{API}/orders", status, answer)

    traced(cli, "--central", CENTRAL, "buy", "MILK-1L:2", **{credential: secret})

    values = [str(value) for value in attribute_values(spans.get_finished_spans())]
    assert values
    assert not [value for value in values if secret in value]


def test_tracing_asked_for_without_the_exporter_is_a_config_error(
    cli: CliHarness, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An import of a module set to None fails: the exporter is not installed.
    exporter = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    monkeypatch.setitem(sys.modules, exporter, None)

    result = traced(cli, "buy", "MILK-1L:2")

    assert result.exit_code == 2
    assert "[config.tracing_unavailable]" in result.stderr
    assert "invctl[otlp]" in result.stderr
    assert server.requests == []


def test_off_invctl_imports_nothing_of_opentelemetry(tmp_path: Path) -> None:
    invctl = Path(sys.executable).with_name("invctl")
    env = {"PATH": "/usr/bin:/bin", "INVCTL_CONFIG_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(invctl), "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )

    assert "Usage" in done.stdout
    assert "opentelemetry" not in done.stderr
    assert "invwire.tracing" in done.stderr  # the import-time list is the one looked at


def test_a_usage_error_is_the_spans_outcome_without_what_the_user_typed(
    cli: CliHarness, server: FakeServer, spans: RecordedSpans
) -> None:
    result = traced(cli, "buy", "TYPED-BY-HAND:0")

    assert result.exit_code == 2
    root = only(spans, "invctl buy")
    assert root.attributes is not None and root.attributes["invctl.outcome"] == "usage.quantity"
    assert root.status.status_code is StatusCode.ERROR
    assert list(root.events) == []
    assert not [v for v in attribute_values([root]) if "TYPED-BY-HAND" in str(v)]
    assert server.requests == []


@pytest.mark.parametrize(
    ("env", "timeout"),
    [
        ({}, "2"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "7"}, None),
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "5"}, "5"),
    ],
)
def test_a_command_waits_for_an_unreachable_collector_2_s_unless_told_otherwise(
    env: dict[str, str], timeout: str | None
) -> None:
    bound_export_time(env)

    assert env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") == timeout
