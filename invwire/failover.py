"""Several base URLs for one service, and an httpx transport that moves between them.

A chain without a load balancer gives its store agents and invctl several central URLs
(`https://central-a.example,https://central-b.example`). `FailoverTransport` sends each
request to the current one. When no connection can be made there (refused, unreachable, a
TLS failure, or a timeout while connecting: the request never left this machine), it sends
the same request to the next URL, each at most once per request, and the URL that answered
becomes current for later requests (sticky) until it fails in turn. A failure once a
connection was made (a read timeout, a reset after sending) may have reached the server: it
is raised as it is and never sent elsewhere; the callers decide what a resend means (their
idempotency keys, not this transport, make it safe).

Only the scheme, host, port and base path of a request to the first URL change; a request
to any other URL passes through untouched. Each switch is logged once
(`failover.switched`), with the URLs shown without credentials; no header is ever logged.
With several URLs the client connects directly (httpx ignores HTTP(S)_PROXY once it is
given a transport): through a proxy a central that cannot be reached would be the proxy's
answer, not a connection failure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ssl import SSLContext

import httpx

from invwire.logs import EventLog
from invwire.transport import without_credentials

# The request surely never reached the server: it is safe to send it to another one.
CONNECT_FAILURES: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
)

SwitchHook = Callable[[str, str], None]  # (from URL, to URL), both without credentials


@dataclass(frozen=True)
class _Base:
    """Where a base URL points: a request's scheme, host and port, and its path prefix."""

    scheme: str
    host: str
    port: int | None
    prefix: bytes  # the base path without its trailing slash: b"" at the root

    @classmethod
    def of(cls, url: str) -> _Base:
        parsed = httpx.URL(url)
        prefix = parsed.raw_path.partition(b"?")[0].rstrip(b"/")
        return cls(parsed.scheme, parsed.host, parsed.port, prefix)

    def holds(self, url: httpx.URL) -> bool:
        path = url.raw_path.partition(b"?")[0]
        under = not self.prefix or path == self.prefix or path.startswith(self.prefix + b"/")
        return (url.scheme, url.host, url.port) == (self.scheme, self.host, self.port) and under

    def moved(self, url: httpx.URL, origin: _Base) -> httpx.URL:
        """`url` (held by `origin`) with `origin`'s place replaced by this one."""
        rest = url.raw_path[len(origin.prefix) :]
        return url.copy_with(
            scheme=self.scheme,
            host=self.host,
            port=self.port,
            raw_path=(self.prefix + rest) or b"/",
        )


class Failover:
    """The base URLs of one service in the order configured, and which one is current.

    Thread-safe: one instance may be shared by several clients (the agent's order path,
    heartbeats and start-up check), so that what one learns the others use.
    """

    def __init__(
        self, urls: Sequence[str], *, service: str = "central", on_switch: SwitchHook | None = None
    ) -> None:
        if not urls:
            raise ValueError("a failover needs at least one URL")
        self.urls = tuple(url.rstrip("/") for url in urls)
        self.service = service
        self._bases = tuple(_Base.of(url) for url in self.urls)
        self._current = 0
        self._lock = threading.Lock()
        self._on_switch = on_switch or _logged_switch(service)

    def __repr__(self) -> str:
        return f"Failover({[without_credentials(url) for url in self.urls]!r})"

    @property
    def primary(self) -> str:
        """The first URL: clients are built with it as their base URL."""
        return self.urls[0]

    @property
    def current(self) -> str:
        """The URL tried first: the last one that answered after another could not."""
        with self._lock:
            return self.urls[self._current]

    @property
    def several(self) -> bool:
        return len(self.urls) > 1

    @property
    def label(self) -> str:
        """The URLs for a message: `https://a` or `https://a or https://b`."""
        return " or ".join(without_credentials(url) for url in self.urls)

    def transport(
        self, inner: httpx.BaseTransport | None = None, *, verify: SSLContext | bool = True
    ) -> httpx.BaseTransport | None:
        """The transport for an httpx.Client whose base URL is `primary`: `inner` itself with
        one URL (None keeps httpx's own, as before), else a FailoverTransport around `inner`
        (a new connection pool verifying TLS with `verify` when None)."""
        if not self.several:
            return inner
        return FailoverTransport(self, inner or httpx.HTTPTransport(verify=verify))

    def rota(self) -> list[int]:
        """The URLs' indexes in the order to try them: the current one, then the next ones."""
        with self._lock:
            start = self._current
        return [(start + step) % len(self.urls) for step in range(len(self.urls))]

    def answered(self, tried_first: int, index: int) -> None:
        """URL `index` answered a request first sent to `tried_first`: when it had to move,
        the URL that answered becomes current (a request that did not move changes nothing,
        so a slow answer from before a switch does not switch back)."""
        if index == tried_first:
            return
        with self._lock:
            if index == self._current:
                return
            before, self._current = self._current, index
        self._on_switch(
            without_credentials(self.urls[before]), without_credentials(self.urls[index])
        )

    def routes(self, url: httpx.URL) -> bool:
        """Whether a request to `url` is one to move: it is addressed to the first URL."""
        return self._bases[0].holds(url)

    def moved(self, request: httpx.Request, index: int) -> httpx.Request:
        """`request` (to the first URL) addressed to URL `index` instead, body and headers
        unchanged but for Host."""
        if index == 0:
            return request
        url = self._bases[index].moved(request.url, self._bases[0])
        headers = request.headers.copy()
        headers["Host"] = url.netloc.decode("ascii")
        return httpx.Request(
            request.method,
            url,
            headers=headers,
            stream=request.stream,
            extensions=request.extensions,
        )


class FailoverTransport(httpx.BaseTransport):
    """Sends a request to `failover`'s current URL, and to the next ones while a connection
    cannot be made; raises the first URL's connection error when none can."""

    def __init__(self, failover: Failover, inner: httpx.BaseTransport) -> None:
        self.failover = failover
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        failover = self.failover
        if not failover.routes(request.url):
            return self._inner.handle_request(request)
        rota = failover.rota()
        failures: list[httpx.TransportError] = []
        for index in rota:
            try:
                response = self._inner.handle_request(failover.moved(request, index))
            except CONNECT_FAILURES as exc:
                failures.append(exc)
                continue
            failover.answered(rota[0], index)
            return response
        raise failures[0]

    def close(self) -> None:
        self._inner.close()


def _logged_switch(service: str) -> SwitchHook:
    log = EventLog("invwire.failover")

    def switched(before: str, now: str) -> None:
        log.warning("failover.switched", service=service, from_url=before, to_url=now)

    return switched
