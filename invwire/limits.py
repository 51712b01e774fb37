"""A request body limit as plain ASGI, applied before routing, authentication and parsing.

A declared Content-Length over the limit is refused before a byte is read; a body without one
(chunked) is counted as it streams and refused once it passes the limit, so memory stays
bounded by the limit whatever the client sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from invwire.http import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE_CODE = "request.too_large"
DEFAULT_MAX_BODY = 1024 * 1024

# The limit for one request: (method, path) -> bytes.
LimitFor = Callable[[str, str], int]


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        state = _Exchange()

        async def counted_receive() -> Message:
            if state.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state.received += len(message.get("body", b""))
                if state.received > limit and not state.started:
                    # Answered here, from inside the app's read: the app's own error
                    # handling would turn an exception into a 500. Whatever the app does
                    # after the disconnect it now sees is dropped.
                    state.refused = True
                    await _refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message: Message) -> None:
            if state.refused:
                return
            if message["type"] == "http.response.start":
                state.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except Exception:
            if not state.refused:
                raise


class _Exchange:
    def __init__(self) -> None:
        self.received = 0
        self.started = False
        self.refused = False


def fixed_limit(limit: int = DEFAULT_MAX_BODY) -> LimitFor:
    return lambda _method, _path: limit


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": TOO_LARGE_CODE,
                "message": f"the request body is larger than {limit} bytes",
                "details": {"limit_bytes": limit},
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
