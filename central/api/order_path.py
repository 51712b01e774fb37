"""`POST /api/v1/orders` from a store's key with a plainly well-formed body, served as plain
ASGI: the busiest route, where FastAPI's routing, dependency solving and body validation
cost about as much CPU as the order's transaction itself.

Only a request that FastAPI's route would take as it is comes this way: a store's
`X-API-Key`, `Content-Type: application/json`, an Idempotency-Key header within its bound
(if any), and a body that is a JSON object with `lines` alone, a list of at most
MAX_LINES_READ objects. Anything else (a token, no credentials, another content type, a body
that is not that shape, a client gone while sending) goes on to the FastAPI route with the
body it sent, and is answered there as before. Both paths end in the same function
(routes.orders.placed_answer) and the same error answers (errors.known_error_response);
tests/integration/central/test_order_path.py holds the answers of both side by side.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from central.api import errors
from central.api.deps import API_PREFIX, Credentials
from central.api.group_commit import GroupCommit
from central.api.routes import orders as order_routes
from central.app import Central
from central.db import is_mysql
from central.services.orders import Placed
from invwire.http import ASGIApp, Message, Receive, Scope, Send

ORDERS_PATH = API_PREFIX + "/orders"
JSON = b"application/json"
# Threads placing orders, beside FastAPI's pool of 40 for every other `def` route: together
# with the background loops they stay within the database pool's 64 connections. One pool a
# process, as FastAPI's is (each worker of `central serve --workers N` has its own); its
# threads start at the first orders. A hand-off to it and back cost 37 us of CPU against
# 85 us through anyio's to_thread (its limiter, cancel scope and worker queue).
ORDER_THREADS = 16
ORDER_POOL = ThreadPoolExecutor(ORDER_THREADS, thread_name_prefix="orders")


@dataclass(frozen=True)
class PlainOrder:
    """What the route would have been handed: the key, the Idempotency-Key, the lines."""

    api_key: str
    idempotency_key: str | None
    lines: list[dict[str, Any]]


class OrderPath:
    def __init__(self, app: ASGIApp, central: Central) -> None:
        self.app = app
        self.central = central
        # Named in the scope as FastAPI names it: the route's metrics, log line and span.
        self.route = place_order_route()
        # On SQLite, orders wait for one writer anyway: they are written in batches
        # (group_commit). MySQL's row locks let orders on other rows go at once: a pool.
        self.batches = batches_for(central)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != ORDERS_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        messages, body = await read_body(receive)
        order = plain_order(scope["headers"], body) if body is not None else None
        if order is None:
            await self.app(scope, replaying(messages, receive), send)
            return
        scope["route"] = self.route
        try:
            answer = await self._answer(order)
        except Exception as exc:
            known = errors.known_error_response(self.central, exc)
            if known is None:
                raise  # on to the 500 handler, as from the route
            answer = known
        await answer(scope, receive, send)

    async def _answer(self, order: PlainOrder) -> Response:
        if self.batches is None:
            return await self._in_thread(order)
        placed = await self.batches.submit(functools.partial(self._placed, order))
        return order_routes.placed_response(self.central, placed)

    def _placed(self, order: PlainOrder) -> Placed:
        central = self.central
        credentials = Credentials(api_key=order.api_key)
        return order_routes.placed_order(
            central, central.uow(), credentials, order.idempotency_key, order.lines
        )

    def _in_thread(self, order: PlainOrder) -> asyncio.Future[Response]:
        """`_place(order)` on an order thread, in this request's context (its request id,
        its span), as FastAPI runs a `def` route."""
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(ORDER_POOL, context.run, self._place, order)

    def _place(self, order: PlainOrder) -> Response:
        central = self.central
        credentials = Credentials(api_key=order.api_key)
        return order_routes.placed_answer(
            central, central.uow(), credentials, order.idempotency_key, order.lines
        )


def batches_for(central: Central) -> GroupCommit | None:
    if is_mysql(central.db):
        return None
    return GroupCommit(central.db, central.relay.wake if central.relay else None)


def place_order_route() -> Any:
    for route in order_routes.router.routes:
        if getattr(route, "name", None) == "place_order":
            return route
    raise LookupError("routes.orders declares no place_order route")


async def read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The request's messages as received, and its body; None for the body if the client
    went away first (the route then meets the disconnect itself)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return messages, b"".join(chunks)


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that hands out `messages` again first."""
    pending = deque(messages)

    async def replay() -> Message:
        if pending:
            return pending.popleft()
        return await receive()

    return replay


def plain_order(headers: list[tuple[bytes, bytes]], body: bytes) -> PlainOrder | None:
    """The order if the route would take this request as it is, else None. A header is read
    as Starlette reads it: its first occurrence, decoded as Latin-1."""
    api_key = key = content_type = None
    for name, value in headers:
        if name == b"x-api-key":
            api_key = value if api_key is None else api_key
        elif name == b"idempotency-key":
            key = value if key is None else key
        elif name == b"content-type":
            content_type = value if content_type is None else content_type
    if not api_key or content_type != JSON:
        return None
    if key is not None and len(key) > order_routes.MAX_KEY_HEADER:
        return None
    lines = plain_lines(body)
    if lines is None:
        return None
    return PlainOrder(
        api_key.decode("latin-1"), key.decode("latin-1") if key is not None else None, lines
    )


def plain_lines(body: bytes) -> list[dict[str, Any]] | None:
    """`lines` of a body that is `{"lines": [{...}, ...]}` and nothing else, else None."""
    try:
        document = json.loads(body)
    except Exception:  # not JSON, or nested past the parser's depth: the route says which
        return None
    if type(document) is not dict or len(document) != 1:
        return None
    lines = document.get("lines")
    if type(lines) is not list or len(lines) > order_routes.MAX_LINES_READ:
        return None
    if any(type(line) is not dict for line in lines):
        return None
    return lines
