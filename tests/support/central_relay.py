"""An HTTP relay on loopback between a store agent (its --central) and a real central, that
forwards every request as it came and hands every answer back, except where a test steps in
on the order path (POST /api/v1/orders):

- `OrdersRelay`: while `orders_down` is set, every order is answered 503 and never reaches
  central, while heartbeats and every other request pass. That is central unreachable for
  sales, with central still hearing the agent's heartbeats (and so its queue).
- `CentralRelay(upstream, on_order_answer)`: every order reaches central, and its answer goes
  through `on_order_answer(idempotency_key)` first, which may hold the test's fault (take a
  lock, say) and returns PASS, or ANSWER_503 to hand the till a 503 instead of central's
  answer (central committed the order all the same).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

ORDERS_PATH = "/api/v1/orders"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
PASS, ANSWER_503 = "pass", "answer-503"
JSON = {"content-type": "application/json"}


def _down(code: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": "down"}}).encode()


class CentralRelay:
    def __init__(
        self, upstream: str, on_order_answer: Callable[[str], str] = lambda key: PASS
    ) -> None:
        self.on_order_answer = on_order_answer
        self._upstream = httpx.Client(base_url=upstream, timeout=30)
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                relay.serve(self)

            def do_POST(self) -> None:
                relay.serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CentralRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()

    def refuse_order(self) -> bool:
        """True: answer this order 503 here, without forwarding it."""
        return False

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        is_order = request.command == "POST" and request.path == ORDERS_PATH
        if is_order and self.refuse_order():
            self._answer(request, 503, JSON, _down("relay.orders_down"))
            return
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        answer = self._upstream.request(
            request.command, request.path, headers=headers, content=body
        )
        dropped = {*HOP_BY_HOP, "content-encoding"}  # httpx decoded the body
        out = {k: v for k, v in answer.headers.items() if k.lower() not in dropped}
        fault = self.on_order_answer(request.headers["Idempotency-Key"]) if is_order else PASS
        if fault == ANSWER_503:
            self._answer(request, 503, JSON, _down("relay.down"))
            return
        self._answer(request, answer.status_code, out, answer.content)

    @staticmethod
    def _answer(
        request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], content: bytes
    ) -> None:
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(content)))
        request.end_headers()
        request.wfile.write(content)


class OrdersRelay(CentralRelay):
    def __init__(self, upstream: str, *, orders_down: bool = True) -> None:
        super().__init__(upstream)
        self.orders_down = orders_down
        self.refused = 0  # orders answered 503 here

    def refuse_order(self) -> bool:
        if self.orders_down:
            self.refused += 1
        return self.orders_down
