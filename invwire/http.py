"""Per-request plumbing as plain ASGI, for central and the agent alike: the request id, a
measurement per route, and one access log line.

The id is the caller's X-Request-ID when it is usable (every side accepts the same pattern,
so the id a till sent is the one central logs), else a new one. It is echoed in the answer
and held in `request_id_var` while the request is served.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from invwire.logs import EventLog, request_id_var
from invwire.rules import is_request_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# (method, route template, status, seconds)
Observer = Callable[[str, str, int, float], None]

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


def route_of(scope: Scope) -> str:
    """The route template, never the raw path: SKUs and ids would explode the label set."""
    route: Any = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")
