"""Per-request plumbing as plain ASGI, for central and the agent alike: the request id, a
measurement per route, and one access log line.

The id is the caller's X-Request-ID when it is usable (every side accepts the same pattern,
so the id a till sent is the one central logs), else a new one. It is echoed in the answer
and held in `request_id_var` while the request is served.

With tracing on (invwire.tracing), each request is also a SERVER span "HTTP {method} {route}"
whose parent is the caller's W3C `traceparent`, and a request without a usable X-Request-ID
gets the trace id (32 hex digits) as its id, so logs and traces join. Off, this costs one
`if` per request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from invwire import tracing
from invwire.logs import EventLog, request_id_var
from invwire.rules import is_request_id

if TYPE_CHECKING:
    from opentelemetry.trace import Span

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# (method, route template, status, seconds)
Observer = Callable[[str, str, int, float], None]

UNMATCHED = "unmatched"  # no route took the request (a 404 before routing, a 413, ...)
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})  # probes: logged at debug


class RequestContext:
    def __init__(self, app: ASGIApp, observe: Observer, log: EventLog) -> None:
        self.app = app
        self.observe = observe
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if tracing.enabled():
            await self._traced(scope, receive, send)
            return
        await self._serve(scope, receive, send, incoming_request_id(scope) or uuid.uuid4().hex)

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        with tracing.span(
            f"HTTP {method}",
            kind="server",
            parent=tracing.extract(trace_headers(scope)),
            attributes={"http.request.method": method},
        ) as span:
            request_id = incoming_request_id(scope) or tracing.trace_id() or uuid.uuid4().hex
            await self._serve(scope, receive, send, request_id, span)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        span: Span | None = None,
    ) -> None:
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            if span is not None:
                describe_server_span(span, scope["method"], route_of(scope), status)
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route, method = route_of(scope), scope["method"]
        self.observe(method, route, status, elapsed)
        fields = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
        }
        if route in QUIET_ROUTES and status < 500:
            self.log.debug("http.request", **fields)
        else:
            self.log.info("http.request", **fields)


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if is_request_id(text) else None
    return None


def trace_headers(scope: Scope) -> dict[str, str]:
    """The caller's W3C trace context headers (`traceparent`, `tracestate`), if any."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers", [])
        if name in (b"traceparent", b"tracestate")
    }


def describe_server_span(span: Span, method: str, route: str, status: int) -> None:
    """Name a SERVER span by its route template once routing found it (a raw path would
    name it by SKU or id), with the answer's status; a 5xx is the span's error."""
    if route != UNMATCHED:
        span.update_name(f"HTTP {method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        from opentelemetry.trace import StatusCode

        span.set_status(StatusCode.ERROR)


def route_of(scope: Scope) -> str:
    """The route template, never the raw path: SKUs and ids would explode the label set."""
    route: Any = scope.get("route")
    return str(getattr(route, "path", None) or UNMATCHED)


def without_own_telemetry() -> dict[str, Any]:
    """Keyword arguments for FastAPI(...) that turn FastAPI's own OpenTelemetry off.

    FastAPI (0.16x) traces every request itself once a global tracer provider is set, as
    tracing.setup() does: a second SERVER span around RequestContext's (which then is no longer
    the caller's child), three INTERNAL spans a request, and the query string as an attribute.
    RequestContext makes the one server span; an older FastAPI has no such option (nothing to
    turn off)."""
    import inspect

    from fastapi import FastAPI

    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
