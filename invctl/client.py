"""A thin HTTP client for central and the store agent.

Responses become plain data; failures become `InvctlError`s. httpx is imported on first
use so that `invctl --help` stays fast. With tracing on, every request carries the W3C
`traceparent` of the command's span (invctl.traced).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invctl import __version__
from invctl.errors import (
    AuthError,
    ConfigError,
    InvalidRequestError,
    InvctlError,
    NotFoundError,
    RefusedError,
    ServerError,
    UnavailableError,
)
from invwire import tracing

if TYPE_CHECKING:
    import ssl

    import httpx

_STATUS_ERRORS: dict[int, type[InvctlError]] = {
    400: InvalidRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: RefusedError,
    415: InvalidRequestError,
    421: InvalidRequestError,
    422: InvalidRequestError,
    502: UnavailableError,
    503: UnavailableError,
    504: UnavailableError,
}


@dataclass(frozen=True)
class Target:
    """A server invctl talks to: `agent` or `central`, at a root URL; `fallbacks` are more
    URLs of the same server, tried in turn when no connection can be made (invwire.failover)."""

    name: str
    url: str
    prefix: str = ""
    fallbacks: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.fallbacks)

    @property
    def where(self) -> str:
        """The URLs for a message: `https://a` or `https://a or https://b`."""
        return " or ".join(self.urls)


class ApiClient:
    """One server's client; the httpx connection is opened on the first request."""

    def __init__(
        self,
        target: Target,
        *,
        timeout: float,
        headers: dict[str, str],
        transport: httpx.BaseTransport | None = None,
        auth_hint: str | None = None,
        verify: ssl.SSLContext | bool = True,
        write_headers: Callable[[], dict[str, str]] | None = None,
        on_switch: Callable[[str, str], None] | None = None,
    ) -> None:
        """`write_headers` are asked for when a request may change something (not GET or
        HEAD): the agent's terminal token, read only when it is needed. `on_switch(from,
        to)` hears when a target with fallbacks moves to another URL."""
        self.target = target
        self._on_switch = on_switch
        self._verify = verify
        self._write_headers = write_headers
        self.timeout = timeout
        self.auth_hint = auth_hint
        self._headers = headers
        self._transport = transport
        self._http: httpx.Client | None = None

    def get(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, *, json: Any = None, data: dict[str, str] | None = None) -> Any:
        return self.request("POST", path, json=json, data=data)

    def put(self, path: str, *, json: Any = None) -> Any:
        return self.request("PUT", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.exchange(method, path, **kwargs)[0]

    def exchange(self, method: str, path: str, **kwargs: Any) -> tuple[Any, dict[str, str]]:
        """request(), with the answer's headers (lower-case names), e.g. idempotent-replayed."""
        import httpx

        if self._write_headers is not None and method not in ("GET", "HEAD"):
            kwargs["headers"] = {**self._write_headers(), **(kwargs.get("headers") or {})}
        if tracing.enabled():  # the command's span (invctl.traced) is the server's parent
            kwargs["headers"] = {
                **(kwargs.get("headers") or {}),
                **tracing.current_context_headers(),
            }
        try:
            response = self._client().request(method, self.target.prefix + path, **kwargs)
        except httpx.TimeoutException as exc:
            waited = kwargs.get("timeout", self.timeout)  # a request may wait longer
            raise self._unreachable(f"timed out after {waited:g}s") from exc
        except httpx.TransportError as exc:
            raise self._unreachable(_reason(exc)) from exc
        if response.is_success:
            headers = {name.lower(): value for name, value in response.headers.items()}
            return _decode_success(response, self.target), headers
        raise error_from_response(response, self.target, auth_hint=self.auth_hint)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = build_http(
                self.target,
                self.timeout,
                self._headers,
                self._transport,
                verify=self._verify,
                on_switch=self._on_switch,
            )
        return self._http

    def _unreachable(self, reason: str) -> UnavailableError:
        name, url = self.target.name, self.target.where
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            return UnavailableError(
                f"cannot verify the TLS certificate of the {name} at {url}: {reason}",
                code="tls.verify_failed",
                hint="if a private CA signed it, pass --ca-file CA.pem (INVCTL_CA_FILE)",
            )
        return UnavailableError(
            f"cannot reach the {name} at {url}: {reason}",
            hint=f"is the {name} running at {url}? (set it with --{name} URL)",
        )


def build_http(
    target: Target,
    timeout: float,
    headers: dict[str, str],
    transport: httpx.BaseTransport | None = None,
    *,
    verify: ssl.SSLContext | bool = True,
    on_switch: Callable[[str, str], None] | None = None,
) -> httpx.Client:
    """The httpx client for `target`; with fallbacks, its transport sends a request that
    cannot connect to one URL to the next (invwire.failover, imported only then)."""
    import httpx

    if target.fallbacks:
        from invwire.failover import Failover

        failover = Failover(target.urls, service=target.name, on_switch=on_switch)
        transport = failover.transport(transport, verify=verify)
    return httpx.Client(
        base_url=target.url,
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": f"invctl/{__version__}", **headers},
        transport=transport,
        verify=verify,
    )


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """Verify servers against the CA certificate(s) in `ca_file` (PEM) instead of the system's,
    for a central or agent whose certificate a private CA signed."""
    import ssl

    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"cannot use the CA file {ca_file}: {reason}",
            code="config.ca_file",
            hint="point --ca-file (INVCTL_CA_FILE) at the PEM certificate of the CA that "
            "signed the server's certificate",
        ) from None


def error_from_response(
    response: httpx.Response, target: Target, *, auth_hint: str | None = None
) -> InvctlError:
    """Map an HTTP error answer to the CLI error (and so the exit code) it stands for."""
    status = response.status_code
    code, message, details = _error_body(response)
    cls = _STATUS_ERRORS.get(status, ServerError)
    request_id = response.request.headers.get("X-Request-ID")
    return cls(
        message or f"the {target.name} answered HTTP {status}",
        code=code,
        hint=_hint(status, target, auth_hint, request_id),
        details=details,
        request_id=request_id,
    )


def items_of(body: Any) -> list[dict[str, Any]]:
    """The `items` of a list answer (`{"items": [...]}`)."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ServerError("the server's answer has no list of items")
    return items


def segment(value: str) -> str:
    """`value` quoted for use as one URL path segment."""
    from urllib.parse import quote

    return quote(value, safe="")


def _hint(status: int, target: Target, auth_hint: str | None, request_id: str | None) -> str | None:
    if status == 401:
        return auth_hint or "run `invctl login`"
    if status == 403:
        return "your role does not allow this; check `invctl whoami`"
    if status == 421:
        return f"address the {target.name} by a loopback name, e.g. http://127.0.0.1:PORT"
    if status in (502, 503, 504):
        return f"the {target.name} at {target.where} is not ready; try again shortly"
    if status >= 500:
        return f"this is a server bug; report it with request id {request_id}"
    return None


def _error_body(response: httpx.Response) -> tuple[str | None, str | None, dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return None, None, {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        details = error.get("details")
        return (
            _str_or_none(error.get("code")),
            _str_or_none(error.get("message")),
            details if isinstance(details, dict) else {},
        )
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return None, body["detail"], {}
    return None, None, {}


def _decode_success(response: httpx.Response, target: Target) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise ServerError(
            f"the {target.name} at {target.url} answered with something that is not JSON",
            hint=f"is {target.url} really the {target.name}?",
        ) from exc


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    if "refused" in text.lower():
        return "connection refused"
    return text or type(exc).__name__


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
