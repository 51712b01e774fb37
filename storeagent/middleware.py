"""Per-request plumbing as plain ASGI: the request id, HTTP metrics by route, an access line.

The id is the caller's X-Request-ID when it is usable (central accepts the same pattern, so
the id the till sent is the one central logs), else a new one. It is echoed in the answer,
held in `request_id_var` while the request is served (the JSON log formatter adds it to every
line, and the order desk forwards it to central).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storeagent.logs import EventLog, request_id_var
from storeagent.metrics import AgentMetrics

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})  # probes: logged at debug


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: AgentMetrics, log: EventLog | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.log = log or EventLog("storeagent.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or uuid.uuid4().hex
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
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route, method = route_of(scope), scope["method"]
        self.metrics.http_request(method, route, status, elapsed)
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
            return text if REQUEST_ID.fullmatch(text) else None
    return None


def route_of(scope: Scope) -> str:
    """The route template, never the raw path: SKUs would explode the label set."""
    route: Any = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")
