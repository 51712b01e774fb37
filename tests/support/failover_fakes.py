"""A network of hosts for testing invwire.failover without sockets: each host (scheme, host
and port, as `https://a.test:8000`) answers, refuses connections, times out connecting, or
times out reading after the request was sent. Every request that reached the network is
recorded, in order, and every host a connection was tried to."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum

import httpx


class Host(StrEnum):
    ANSWERS = "answers"  # 200: `body`, or one naming the host and the path it got
    REFUSES = "refuses"  # ConnectError: nothing was sent
    CONNECT_TIMEOUT = "connect_timeout"  # ConnectTimeout: nothing was sent
    READ_TIMEOUT = "read_timeout"  # ReadTimeout: the request was sent, no answer came


@dataclass
class FakeNetwork(httpx.BaseTransport):
    """The fake that FailoverTransport wraps; hosts not named refuse connections."""

    hosts: dict[str, Host] = field(default_factory=dict)
    tried: list[str] = field(default_factory=list)  # every host a connection was tried to
    sent: list[httpx.Request] = field(default_factory=list)  # reached a host, in order
    body: dict[str, object] | None = None  # what answering hosts answer, when set
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin(request.url)
        behaviour = self.hosts.get(origin, Host.REFUSES)
        with self._lock:
            self.tried.append(origin)
        if behaviour is Host.REFUSES:
            raise httpx.ConnectError(f"[Errno 111] Connection refused: {origin}", request=request)
        if behaviour is Host.CONNECT_TIMEOUT:
            raise httpx.ConnectTimeout(f"timed out connecting to {origin}", request=request)
        body = request.read()
        with self._lock:
            self.sent.append(request)
        if behaviour is Host.READ_TIMEOUT:
            raise httpx.ReadTimeout("timed out reading", request=request)
        path = request.url.raw_path.decode("ascii")
        return httpx.Response(
            200,
            json=self.body or {"host": origin, "path": path, "body": body.decode()},
            headers={"X-Host-Header": request.headers.get("Host", "")},
        )

    def close(self) -> None:
        self.closed = True

    def origins(self) -> list[str]:
        """The hosts that got a request, in order."""
        with self._lock:
            return [_origin(request.url) for request in self.sent]


def _origin(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}"
