"""A relay on loopback between a store agent (its --central) and a real central, whose order
path can be cut: while `orders_down` is set, every POST /api/v1/orders is answered 503 and
never reaches central, while heartbeats and every other request pass. That is central
unreachable for sales, with central still hearing the agent's heartbeats (and so its queue)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

ORDERS_PATH = "/api/v1/orders"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
DOWN = json.dumps({"error": {"code": "relay.orders_down", "message": "down"}}).encode()


class OrdersRelay:
    def __init__(self, upstream: str, *, orders_down: bool = True) -> None:
        self.orders_down = orders_down
        self.refused = 0  # orders answered 503 here
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

    def __enter__(self) -> OrdersRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        if request.command == "POST" and request.path == ORDERS_PATH and self.orders_down:
            self.refused += 1
            self._answer(request, 503, {"content-type": "application/json"}, DOWN)
            return
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        answer = self._upstream.request(
            request.command, request.path, headers=headers, content=body
        )
        dropped = {*HOP_BY_HOP, "content-encoding"}  # httpx decoded the body
        out = {k: v for k, v in answer.headers.items() if k.lower() not in dropped}
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
