"""The store terminal API's edge, as plain ASGI: checked before routing and before a byte of
the body is read.

- `LoopbackOnly`: the Host header must name a loopback address (`localhost`, `127.x.x.x`,
  `[::1]`) with the port the request came in on. DNS rebinding hands a web page the agent's
  address under the page's own name, and the browser then sends that name as the Host.
  An Origin header, when there is one, must be such a loopback origin too: browsers send it
  with every cross-origin request, and with every POST.
- `TerminalWrites`: every request but GET and HEAD (the sales and resync POSTs) must be JSON
  (`Content-Type: application/json`, which an HTML form cannot send and a page cannot send
  to another origin without a CORS preflight, which the agent never grants) and carry the
  agent's terminal token (`Authorization: Bearer TOKEN`, compared in constant time).

Refusals answer the error shape of docs/wire.md and are logged as `http.refused` with their
code; the token is never echoed nor logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Iterable

from invwire.errors import WireError
from invwire.errors.agent import (
    HostRefused,
    JsonRequired,
    OriginRefused,
    TokenInvalid,
    TokenRequired,
)
from invwire.http import ASGIApp, Receive, Scope, Send
from invwire.logs import EventLog

READ_METHODS = frozenset({"GET", "HEAD"})
JSON_MEDIA_TYPE = "application/json"
DEFAULT_HTTP_PORT = 80
ECHO_LIMIT = 100  # characters of a refused Host or Origin repeated in the answer and the log
_AUTHORITY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\[\]:/@\s]+)(?::([0-9]{1,5}))?")

log = EventLog("storeagent.http")


class LoopbackOnly:
    """Serves only requests addressed to the agent by a loopback name, from no foreign page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = host_refusal(scope) or origin_refusal(scope)
        if refusal is not None:
            await refuse(scope, send, refusal)
            return
        await self.app(scope, receive, send)


class TerminalWrites:
    """Every request that may change something (not GET or HEAD) is JSON and carries the
    terminal token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("the terminal API needs a token")
        self.app = app
        self._token = token.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READ_METHODS:
            await self.app(scope, receive, send)
            return
        refusal = json_refusal(scope) or token_refusal(scope, self._token)
        if refusal is not None:
            await refuse(scope, send, refusal)
            return
        await self.app(scope, receive, send)


def host_refusal(scope: Scope) -> WireError | None:
    hosts = header_values(scope, b"host")
    host = hosts[0] if len(hosts) == 1 else ""
    if is_loopback_authority(host, served_port(scope)):
        return None
    shown = host[:ECHO_LIMIT] if len(hosts) == 1 else f"{len(hosts)} Host headers"
    return HostRefused(
        f"Host {shown!r} is not this agent's loopback address: address it as "
        "127.0.0.1, localhost or [::1] with its port",
        host=shown,
    )


def origin_refusal(scope: Scope) -> WireError | None:
    origins = header_values(scope, b"origin")
    if not origins:
        return None
    port = served_port(scope)
    if len(origins) == 1 and is_loopback_origin(origins[0], port):
        return None
    shown = origins[0][:ECHO_LIMIT]
    return OriginRefused(
        f"requests from the web page at {shown!r} are refused; the agent serves only programs "
        "on this machine",
        origin=shown,
    )


def json_refusal(scope: Scope) -> WireError | None:
    types = header_values(scope, b"content-type")
    media = types[0].split(";", 1)[0].strip().lower() if len(types) == 1 else ""
    if media == JSON_MEDIA_TYPE:
        return None
    return JsonRequired(
        f"{scope['method']} requests must send a JSON body with Content-Type: "
        f"{JSON_MEDIA_TYPE} (an empty object when there is nothing to send)",
        content_type=(types[0][:ECHO_LIMIT] if types else None),
    )


def token_refusal(scope: Scope, token: bytes) -> WireError | None:
    values = raw_header_values(scope, b"authorization")
    if not values:
        return TokenRequired(
            "this request needs the agent's terminal token (Authorization: Bearer TOKEN); "
            "invctl reads it from the agent's terminal.token file (docs/operations.md)"
        )
    scheme, _, credential = values[0].partition(b" ")
    sent = credential.strip()
    # compare_digest on every path, so the answer's timing says nothing about the token
    matches = hmac.compare_digest(sent, token)
    if len(values) == 1 and scheme.lower() == b"bearer" and matches:
        return None
    return TokenInvalid(
        "the terminal token sent is not this agent's; read it again from the agent's "
        "terminal.token file"
    )


def is_loopback_authority(authority: str, port: int | None) -> bool:
    """`authority` (a Host header) names a loopback address with `port` (80 when it names
    none); any port when the server's is unknown."""
    match = _AUTHORITY.fullmatch(authority)
    if match is None or not is_loopback_name(match.group(1)):
        return False
    named = int(match.group(2)) if match.group(2) else DEFAULT_HTTP_PORT
    return port is None or named == port


def is_loopback_origin(origin: str, port: int | None) -> bool:
    scheme, separator, authority = origin.partition("://")
    return scheme.lower() == "http" and bool(separator) and is_loopback_authority(authority, port)


def is_loopback_name(host: str) -> bool:
    """`localhost`, an IPv4 loopback address, or a bracketed IPv6 loopback address: names a
    web page cannot rebind to an address of its choice."""
    if host.lower() == "localhost":
        return True
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return False
    return address.is_loopback and (address.version == 6) == bracketed


def served_port(scope: Scope) -> int | None:
    server = scope.get("server")
    return int(server[1]) if server and server[1] is not None else None


def raw_header_values(scope: Scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope.get("headers", []) if key == name]


def header_values(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for value in raw_header_values(scope, name)]


async def refuse(scope: Scope, send: Send, error: WireError) -> None:
    log.warning("http.refused", code=error.code, status=error.status, method=scope["method"])
    body = json.dumps(
        {"error": {"code": error.code, "message": error.message, "details": error.details}}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *_extra_headers(error),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _extra_headers(error: WireError) -> Iterable[tuple[bytes, bytes]]:
    if error.status == 401:
        yield (b"www-authenticate", b'Bearer realm="storeagent"')
