"""Distributed tracing with OpenTelemetry, shared by central, the agent and invctl.

Off unless asked for, with the standard variables: on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, unless `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none`. The SDK itself reads the rest: `OTEL_SERVICE_NAME` (else the
service name given to setup()), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` /
`OTEL_TRACES_SAMPLER_ARG` (default parentbased_always_on) and the exporter's own settings
(OTLP over HTTP/protobuf, `pip install 'invctl[otlp]'`).

Off, nothing of OpenTelemetry is imported (it costs ~40 ms at start, which a CLI feels) and
every helper here returns at once: span() yields None, inject() adds nothing.

Context crosses processes as W3C trace context: the `traceparent` (and `tracestate`) HTTP
headers, and the same names as Kafka record headers (ASCII bytes). Central keeps the context
of the transaction that wrote an outbox row with the row, so that the relay's publish and each
agent's apply of the record link back to the sale that caused it.

Attributes are set by the callers, from a short list of safe names (ATTRIBUTES): never a key,
token, password or request body.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from invwire.errors import WireError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, Span, Tracer

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# The attribute names the project's spans may carry: none holds a secret.
ATTRIBUTES = frozenset(
    {
        "invctl.command",
        "invctl.store_id",
        "invctl.order_id",
        "invctl.local_ref",
        "invctl.outcome",
        "invctl.lines",
        "invctl.units",
        "invctl.skus",
        "invctl.sku",
        "invctl.events",
        "invctl.records",
        "invctl.topic",
        "invctl.partition",
        "invctl.offset",
        "invctl.event_type",
        "invctl.outbox_id",
        "invctl.epoch",
        "invctl.orders",
        "invctl.recovered",
        "invctl.present",
        "invctl.unrecovered",
        "invctl.conflicts",
        "http.request.method",
        "http.route",
        "http.response.status_code",
        "url.path",
        "messaging.system",
        "messaging.destination.name",
        "messaging.destination.partition.id",
        "messaging.kafka.offset",
        "messaging.operation.type",
    }
)


class _State:
    """This process's tracer once setup() started one (None: tracing is off)."""

    tracer: Tracer | None = None
    provider: Any = None


_state = _State()


class TracingUnavailable(WireError):
    """Traces were asked for (OTEL_EXPORTER_OTLP_ENDPOINT) and cannot be sent."""

    code = "config.tracing_unavailable"
    status = 500


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces (see the module's docstring)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def setup(service: str, env: Mapping[str, str] = os.environ) -> bool:
    """Start exporting this process's spans when the environment asks for it; whether it
    does. Once per process: a second call changes nothing. Asked for without the exporter
    installed: TracingUnavailable (a configuration error: the process says so and stops)."""
    if _state.tracer is not None:
        return True
    if not wanted(env):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise TracingUnavailable(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set, but the OTLP exporter is not installed: "
            "pip install 'invctl[otlp]', or unset it"
        ) from None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _state.provider, _state.tracer = provider, trace.get_tracer("invctl")
    return True


def enabled() -> bool:
    return _state.tracer is not None


def shutdown() -> None:
    """Export what is still buffered (a CLI about to exit, a service stopping)."""
    if _state.provider is not None:
        _state.provider.shutdown()
    _state.tracer = _state.provider = None


@contextmanager
def span(
    name: str,
    *,
    kind: str = "internal",
    attributes: Mapping[str, object] | None = None,
    parent: Context | None = None,
    links: Sequence[Link] = (),
) -> Iterator[Span | None]:
    """A span around the block, current inside it (None, and nothing done, when tracing is
    off). `kind`: internal, server, client, producer or consumer. An exception leaving the
    block sets the span's status to error with the exception's type name only: its message
    and stack are not recorded, since a message may quote user input or a setting."""
    tracer = _state.tracer
    if tracer is None:
        yield None
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind[kind.upper()],
        attributes=_safe(attributes),
        links=list(links),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def annotate(current: Span | None, **attributes: object) -> None:
    """Set attributes on `current` (a span from span(), or None): names are ATTRIBUTES' with
    `invctl.` left out, e.g. annotate(s, order_id=...)."""
    if current is None:
        return
    named = {f"invctl.{key}": value for key, value in attributes.items()}
    for key, value in (_safe(named) or {}).items():
        current.set_attribute(key, value)


def inject(carrier: MutableMapping[str, str]) -> None:
    """Put the current span's context into `carrier` (HTTP headers): W3C traceparent."""
    if _state.tracer is None:
        return
    from opentelemetry.propagate import inject as otel_inject

    otel_inject(carrier)


def extract(carrier: Mapping[str, str]) -> Context | None:
    """The context a caller sent in `carrier` (HTTP headers), or None."""
    if _state.tracer is None or TRACEPARENT not in {key.lower() for key in carrier}:
        return None
    from opentelemetry.propagate import extract as otel_extract

    lowered = {key.lower(): value for key, value in carrier.items()}
    return otel_extract(lowered)


def current_context_headers() -> dict[str, str]:
    """The current span's context as W3C headers ({} when tracing is off or no span is on):
    what central keeps with an outbox row."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def kafka_headers(context: Mapping[str, str] | None) -> list[tuple[str, bytes]]:
    """W3C headers kept with an outbox row, as Kafka record headers."""
    if not context:
        return []
    return [
        (name, str(value).encode("ascii", "replace"))
        for name, value in context.items()
        if name in (TRACEPARENT, TRACESTATE)
    ]


def link_from_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> list[Link]:
    """A link to the span whose context a Kafka record carries ([] when none or off)."""
    if _state.tracer is None or not headers:
        return []
    carrier = {
        name: value.decode("ascii", "replace")
        for name, value in headers
        if name in (TRACEPARENT, TRACESTATE) and isinstance(value, bytes)
    }
    if TRACEPARENT not in carrier:
        return []
    from opentelemetry import trace
    from opentelemetry.propagate import extract as otel_extract

    linked = trace.get_current_span(otel_extract(carrier)).get_span_context()
    return [trace.Link(linked)] if linked.is_valid else []


def trace_id() -> str | None:
    """The current trace's id (32 hex digits), or None: what logs use as the request id."""
    if _state.tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def _safe(attributes: Mapping[str, object] | None) -> dict[str, Any] | None:
    if not attributes:
        return None
    return {
        key: value
        for key, value in attributes.items()
        if key in ATTRIBUTES and isinstance(value, str | bool | int | float)
    }
