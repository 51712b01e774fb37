"""Tracing on, in memory, for a test: `recorded_spans()` puts a tracer whose spans land in an
in-memory exporter into invwire.tracing (as setup() would with an OTLP exporter), and puts
back what was there after. The exporter yielded is a RecordedSpans: an InMemorySpanExporter
(get_finished_spans()) that also finds spans by name; the module's functions read a span's
ids, parent and links, and write W3C headers naming a span or made-up ids."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from invwire import tracing

# The W3C specification's example ids: a caller's context, as a till or invctl sends it.
EXAMPLE_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
EXAMPLE_SPAN_ID = 0xB7AD6B7169203331
# The same as hex text, and as a sampled traceparent header.
CALLER_TRACE_ID = f"{EXAMPLE_TRACE_ID:032x}"
CALLER_SPAN_ID = f"{EXAMPLE_SPAN_ID:016x}"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"
# The variable that makes tracing.wanted() true; the endpoint is never called in unit tests
# (recorded_spans() is in place before anything would set up an exporter).
ENDPOINT_ENV = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9/never-used"}


class RecordedSpans(InMemorySpanExporter):
    """The spans ended so far, in the order they ended."""

    def all(self) -> list[ReadableSpan]:
        return list(self.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return named(self, name)

    def only(self, name: str) -> ReadableSpan:
        return only(self, name)

    def names(self) -> list[str]:
        return names(self)

    def attribute_values(self) -> list[Any]:
        return attribute_values(self.all())


@contextmanager
def recorded_spans(service: str = "test") -> Iterator[RecordedSpans]:
    """Tracing on for the block, every span exported as it ends into the RecordedSpans
    yielded. A tracing.shutdown() inside the block (invctl's, at its end) ends the tracing
    but keeps what was recorded."""
    exporter = RecordedSpans()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    saved = tracing._state.tracer, tracing._state.provider
    tracing._state.tracer, tracing._state.provider = provider.get_tracer("invctl"), provider
    try:
        yield exporter
    finally:
        tracing._state.tracer, tracing._state.provider = saved


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    spans = named(exporter, name)
    assert len(spans) == 1, f"{len(spans)} spans named {name!r}: {names(exporter)}"
    return spans[0]


def names(exporter: InMemorySpanExporter) -> list[str]:
    return [span.name for span in exporter.get_finished_spans()]


def trace_id_of(span: ReadableSpan) -> str:
    """The span's trace id as logs and X-Request-ID carry it (32 hex digits)."""
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def span_id_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def parent_span_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


def new_traceparent(trace_id: int = EXAMPLE_TRACE_ID, span_id: int = EXAMPLE_SPAN_ID) -> str:
    """A sampled W3C traceparent naming `trace_id` and `span_id`."""
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def traceparent(span: ReadableSpan) -> str:
    """The traceparent naming `span` (sampled), as it is sent on to a callee."""
    return f"00-{trace_id_of(span)}-{span_id_of(span)}-01"


traceparent_of = traceparent
trace_id_hex = trace_id_of


def linked_span_ids(span: ReadableSpan) -> set[str]:
    return {f"{link.context.span_id:016x}" for link in span.links}


def attribute_values(spans: Iterable[ReadableSpan]) -> list[Any]:
    """Every attribute value of `spans`, their events' and links' included (a secret must be
    in none)."""
    values: list[Any] = []
    for span in spans:
        values += list((span.attributes or {}).values())
        for event in span.events:
            values += list((event.attributes or {}).values())
        for link in span.links:
            values += list((link.attributes or {}).values())
    return values
