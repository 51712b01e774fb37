"""The agent's port to central's order API, and its httpx adapter.

One call is one attempt: retries and the circuit breaker wrap any CentralClient
(upstream.resilience). An answer from central is an OrderResult (Confirmed or Refused);
no answer, or a 5xx, raises CentralUnavailable. The store's API key is sent in a header and
never appears in logs, errors or reprs. find_order() and cancel_order() serve the replayer
resolving sales whose outcome is unknown (sales.replay), and cancel_order() the till's
cancel (sales.cancel); central refusing either raises CentralRefusedCall with its answer.
The fake is FakeCentral in tests/support/agent_fakes.py.

Central may have several URLs (comma-separated in the settings): every client to central
shares one invwire.failover.Failover, so a call that cannot connect to one URL goes to the
next, and the URL that answered is tried first by all of them afterwards.

With tracing on (invwire.tracing), the callers wrap each call in a CLIENT span
(calling_central) and the adapter sends its context to central as the W3C `traceparent`
header, so central's spans join the till's trace; off, no header is added.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from invwire import tracing
from invwire.errors.agent import AgentError
from invwire.failover import Failover
from invwire.headers import parse_counter
from invwire.orders import Line
from invwire.transport import split_url_list

if TYPE_CHECKING:
    from opentelemetry.trace import Span

API_PREFIX = "/api/v1"
REPLAYED_HEADER = "Idempotent-Replayed"  # central's answer to a key it already held
# central's epoch (database incarnation) on every answer; HTTP headers ignore case
HTTP_EPOCH_HEADER = "Invctl-Epoch"


# Reasons that prove central never got the request; any other (a timeout, a 5xx, a dropped
# connection) leaves open whether central committed it.
NEVER_SENT = frozenset({"connect", "circuit_open", "not_configured", "allowance.replay_pending"})


class CentralUnavailable(AgentError):
    """Central cannot be reached right now; nothing was sold. Try again shortly."""

    code = "central.unavailable"
    status = 503

    def __init__(self, message: str | None = None, *, retryable: bool = True, **details: Any):
        super().__init__(message, **details)
        self.retryable = retryable
        self.maybe_sent = details.get("reason") not in NEVER_SENT


@dataclass(frozen=True, slots=True)
class StockLevel:
    sku: str
    quantity: int
    stock_version: int


@dataclass(frozen=True)
class Confirmed:
    """Central reserved the stock: its order as sent, and each line's stock right after.

    `replayed`: central already held an order for the key and answered it again (header
    `Idempotent-Replayed: true`). `resent`: an earlier attempt of the same call may have
    reached central (upstream.resilience), so a replayed answer may be that attempt's own.
    `epoch`: central's epoch when it answered (header `Invctl-Epoch`; None without it), the
    epoch of the line stock it sends.
    """

    order: dict[str, Any]
    order_id: str
    created_at: datetime
    stock: tuple[StockLevel, ...]
    replayed: bool = False
    resent: bool = False
    epoch: int | None = None


@dataclass(frozen=True)
class Refused:
    """Central answered with an error (4xx): its status and error body."""

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def is_auth(self) -> bool:
        return self.status in (401, 403)


OrderResult = Confirmed | Refused


@dataclass(frozen=True)
class RecoveredSale:
    """Central's word on one sale sent for recovery (sales.recovery): `outcome` is present,
    recovered, unrecovered or conflict; `order` central's order when it holds one."""

    idempotency_key: str
    outcome: str
    code: str | None = None
    message: str | None = None
    order: dict[str, Any] | None = None


@dataclass(frozen=True)
class RecoveryAnswer:
    epoch: int  # central's epoch as it answered
    items: tuple[RecoveredSale, ...]  # one per sale sent, in the same order


DEFAULT_MARGIN_S = 300.0  # central's skew margin when its answer names none


@dataclass(frozen=True)
class Allowance:
    """A live grant of this store, as GET /allowances/mine lists it."""

    id: str
    sku: str
    units: int
    remaining: int
    expires_at: datetime


@dataclass(frozen=True)
class AllowanceList:
    items: tuple[Allowance, ...]
    margin_s: float
    server_time: str | None


@dataclass(frozen=True)
class StatementAnswer:
    accepted: bool
    refusal: Refused | None = None


class CentralRefusedCall(CentralUnavailable):
    """Central answered a lookup or a cancel with a refusal (4xx): not retried. A subclass of
    CentralUnavailable, so that the replayer keeps the sale and backs off; the till's cancel
    reads `refusal` (central's status, code and message)."""

    def __init__(self, message: str, refusal: Refused) -> None:
        super().__init__(message, retryable=False, reason=f"http.{refusal.status}")
        self.refusal = refusal


class CentralClient(Protocol):
    def place_order(
        self,
        idempotency_key: str,
        lines: Sequence[Line],
        *,
        request_id: str | None = None,
        grants: Mapping[str, str] | None = None,
    ) -> OrderResult:
        """`grants`: the grant each line's SKU was sold under offline (allowance sales)."""
        ...

    def find_order(self, idempotency_key: str) -> dict[str, Any] | None:
        """The order this store's key created at central, if any."""
        ...

    def cancel_order(self, order_id: str) -> dict[str, Any]:
        """Cancel one of this store's orders (a no-op if cancelled already)."""
        ...

    def recover_orders(self, orders: Sequence[Mapping[str, Any]]) -> RecoveryAnswer:
        """Give a restored central back the sales it may have lost (at most 100)."""
        ...

    def my_allowances(self) -> AllowanceList: ...

    def allowance_statement(self, grant_id: str, sold: int) -> StatementAnswer: ...

    def close(self) -> None: ...


# Central's URL (the settings' `central_url`: one, or several comma-separated), or the
# Failover the agent's clients share, so that a URL one of them found dead the others skip.
CentralAt = str | Failover


def central_failover(central: CentralAt) -> Failover:
    """`central` as a Failover: the URLs tried in turn when one cannot be reached."""
    if isinstance(central, Failover):
        return central
    return Failover(split_url_list(central), service="central")


def shared_failover(central_url: str | None) -> Failover | None:
    """One Failover for all of the agent's clients to central; None without a central."""
    return central_failover(central_url) if central_url else None


def store_session(
    central_url: CentralAt,
    api_key: str,
    *,
    timeout_s: float = 5.0,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An HTTP session to central as this store (its API key in a header, never in a URL or
    a log line), for the agent's side calls: heartbeats and what central last heard."""
    routes = central_failover(central_url)
    return httpx.Client(
        base_url=routes.primary,
        headers={"User-Agent": "storeagent", "X-API-Key": api_key},
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0)),
        transport=routes.transport(transport),
    )


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 2.0
    # Under invctl's default 10 s request timeout, so the terminal gets the agent's
    # `central.unavailable` rather than timing out on the agent itself.
    read_s: float = 8.0


class HttpCentralClient:
    """POST {central}/api/v1/orders as the store (X-API-Key)."""

    def __init__(
        self,
        base_url: CentralAt,
        api_key: str | None,
        *,
        timeouts: Timeouts = Timeouts(),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`base_url`: central's URL, several comma-separated, or a shared Failover; a call
        that cannot connect to one is sent to the next (invwire.failover)."""
        headers = {"User-Agent": "storeagent"}
        if api_key:
            headers["X-API-Key"] = api_key
        routes = central_failover(base_url)
        self.base_url = routes.label  # in messages: every URL that was tried
        self._http = httpx.Client(
            base_url=routes.primary + API_PREFIX,
            headers=headers,
            timeout=httpx.Timeout(timeouts.read_s, connect=timeouts.connect_s),
            transport=routes.transport(transport),
        )

    def __repr__(self) -> str:
        return f"HttpCentralClient({self.base_url!r})"

    def place_order(
        self,
        idempotency_key: str,
        lines: Sequence[Line],
        *,
        request_id: str | None = None,
        grants: Mapping[str, str] | None = None,
    ) -> OrderResult:
        headers = {"Idempotency-Key": idempotency_key}
        if request_id:
            headers["X-Request-ID"] = request_id
        body = {"lines": wire_lines(lines, grants)}
        return interpret(self._request("POST", "/orders", json=body, headers=headers))

    def my_allowances(self) -> AllowanceList:
        return allowance_list(_answer(self._request("GET", "/allowances/mine")))

    def allowance_statement(self, grant_id: str, sold: int) -> StatementAnswer:
        response = self._request("POST", f"/allowances/{grant_id}/statement", json={"sold": sold})
        return statement_answer(response)

    def find_order(self, idempotency_key: str) -> dict[str, Any] | None:
        params = {"idempotency_key": idempotency_key, "limit": 1}
        body = _answer(self._request("GET", "/orders", params=params))
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise CentralUnavailable("central's order list has no items", reason="bad_answer")
        return _order(items[0]) if items else None

    def cancel_order(self, order_id: str) -> dict[str, Any]:
        return _order(_answer(self._request("POST", f"/orders/{order_id}/cancel")))

    def recover_orders(self, orders: Sequence[Mapping[str, Any]]) -> RecoveryAnswer:
        body = {"orders": list(orders)}
        return recovery_answer(_answer(self._request("POST", "/orders/recover", json=body)))

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if tracing.enabled():  # the calling span (calling_central) is central's span's parent
            kwargs["headers"] = traced_headers(kwargs.get("headers"))
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise CentralUnavailable(_cannot_reach(self.base_url, exc), reason="connect") from None
        except httpx.TimeoutException as exc:
            reason = "connect" if isinstance(exc, httpx.ConnectTimeout) else "timeout"
            raise CentralUnavailable(
                f"central at {self.base_url} did not answer in time", reason=reason
            ) from None
        except httpx.TransportError as exc:
            raise CentralUnavailable(
                _cannot_reach(self.base_url, exc), reason="transport"
            ) from None


def traced_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """`headers` and the current span's W3C `traceparent` (and `tracestate`)."""
    carrier = dict(headers or {})
    tracing.inject(carrier)
    return carrier


@contextmanager
def calling_central(operation: str, **attributes: object) -> Iterator[Span | None]:
    """A CLIENT span "central.`operation`" around a call to central, with `attributes`
    (names as tracing.annotate takes them: store_id, local_ref, ...); the HTTP adapter sends
    its context as `traceparent`. An AgentError leaving the block (central unavailable, or
    refusing a lookup or a cancel) is the span's `invctl.outcome`; on success the caller
    annotates the outcome. None and nothing done when tracing is off."""
    if not tracing.enabled():
        yield None
        return
    named = {f"invctl.{name}": value for name, value in attributes.items()}
    with tracing.span(f"central.{operation}", kind="client", attributes=named) as span:
        try:
            yield span
        except AgentError as exc:
            tracing.annotate(span, outcome=exc.code)
            raise


def order_outcome(result: OrderResult) -> str:
    """A placed order's outcome, as its span says it: confirmed, replayed (central answered
    a key it held) or the code of central's refusal."""
    if isinstance(result, Refused):
        return result.code
    return "replayed" if result.replayed else "confirmed"


def _cannot_reach(url: str, exc: Exception) -> str:
    return f"cannot reach central at {url}: {str(exc).strip() or type(exc).__name__}"


def interpret(response: httpx.Response) -> OrderResult:
    """Central's answer to POST /orders as a result, or CentralUnavailable for a 5xx."""
    status = response.status_code
    if 200 <= status < 300:
        replayed = response.headers.get(REPLAYED_HEADER, "").strip().lower() == "true"
        return confirmed(_json(response), replayed=replayed, epoch=answer_epoch(response))
    code, message, details = _error_body(response)
    if 400 <= status < 500:
        return Refused(
            status, code or "central.refused", message or f"central answered {status}", details
        )
    raise CentralUnavailable(
        f"central answered HTTP {status}" + (f" ({code})" if code else ""), reason=f"http.{status}"
    )


def answer_epoch(response: httpx.Response) -> int | None:
    """Central's epoch in its answer; None when it sends none, or one that is not a decimal
    counter: the sale is central's all the same, and its stock is then written at the
    replica's own epoch (sales.shelf)."""
    raw = response.headers.get(HTTP_EPOCH_HEADER)
    if raw is None:
        return None
    try:
        return parse_counter(raw.strip().encode("ascii", "replace"))
    except ValueError:
        return None


def _answer(response: httpx.Response) -> object:
    """The JSON of a 2xx; any other answer leaves the question open (CentralUnavailable;
    CentralRefusedCall, not retried, when central refused: 4xx)."""
    status = response.status_code
    if 200 <= status < 300:
        return _json(response)
    code, message, details = _error_body(response)
    said = f"central answered HTTP {status}" + (f" ({code}: {message})" if code else "")
    if 400 <= status < 500:
        refusal = Refused(
            status, code or "central.refused", message or f"central answered {status}", details
        )
        raise CentralRefusedCall(said, refusal)
    raise CentralUnavailable(said, retryable=status >= 500, reason=f"http.{status}")


def _order(order: object) -> dict[str, Any]:
    if not isinstance(order, dict) or not isinstance(order.get("id"), str):
        raise CentralUnavailable("central's answer is not an order", reason="bad_answer")
    return order


def recovery_answer(body: object) -> RecoveryAnswer:
    """Central's answer to POST /orders/recover, checked for what the agent relies on."""
    try:
        epoch, items = body["epoch"], body["items"]  # type: ignore[index]
        if type(epoch) is not int or not isinstance(items, list):
            raise TypeError("no epoch or items")
        return RecoveryAnswer(epoch, tuple(_recovered_sale(item) for item in items))
    except (KeyError, TypeError, ValueError):
        raise CentralUnavailable(
            "central's answer to the recovery is not one", reason="bad_answer"
        ) from None


def _recovered_sale(item: object) -> RecoveredSale:
    if not isinstance(item, dict):
        raise TypeError("an item is not an object")
    key, outcome = item["idempotency_key"], item["outcome"]
    code, message, order = item.get("code"), item.get("message"), item.get("order")
    if not isinstance(key, str) or not isinstance(outcome, str):
        raise TypeError("an item without its key and outcome")
    return RecoveredSale(
        key,
        outcome,
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
        order if isinstance(order, dict) else None,
    )


def confirmed(order: object, *, replayed: bool = False, epoch: int | None = None) -> Confirmed:
    """Central's order, checked for what the agent relies on: its id, time and line stock."""
    try:
        return _confirmed(order, replayed, epoch)
    except (KeyError, TypeError, ValueError):
        # The order may exist at central: the caller keeps it retryable with the same key.
        raise CentralUnavailable(
            "central's answer to the order is not an order", reason="bad_answer"
        ) from None


def _confirmed(order: object, replayed: bool, epoch: int | None) -> Confirmed:
    if not isinstance(order, dict) or not isinstance(order.get("id"), str) or not order["id"]:
        raise ValueError("no order id")
    stock = tuple(_stock_level(line) for line in order["lines"])
    created = datetime.fromisoformat(order["created_at"])
    return Confirmed(order, order["id"], _utc(created), stock, replayed=replayed, epoch=epoch)


def _stock_level(line: dict[str, Any]) -> StockLevel:
    sku, stock = line["sku"], line["stock"]
    quantity, version = stock["quantity"], stock["stock_version"]
    if not isinstance(sku, str) or not all(type(n) is int for n in (quantity, version)):
        raise ValueError("a line without its sku and stock")
    return StockLevel(sku, quantity, version)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def wire_lines(lines: Sequence[Line], grants: Mapping[str, str] | None) -> list[dict[str, Any]]:
    """The lines as sent; a line sold under a grant names it (`grant_id`)."""
    wired = [line.to_wire() for line in lines]
    for item in wired:
        if grants and item["sku"] in grants:
            item["grant_id"] = grants[item["sku"]]
    return wired


def allowance_list(body: object) -> AllowanceList:
    """GET /allowances/mine's answer; a malformed one is unavailable, as for orders."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(items, list):
        raise CentralUnavailable("central's allowance list has no items", reason="bad_answer")
    try:
        grants = tuple(_allowance(item) for item in items)
        margin = float(body.get("margin_s", DEFAULT_MARGIN_S))
    except (KeyError, TypeError, ValueError) as exc:
        raise CentralUnavailable(
            f"central's allowance list is malformed ({exc})", reason="bad_answer"
        ) from None
    server_time = body.get("server_time")
    return AllowanceList(grants, margin, server_time if isinstance(server_time, str) else None)


def _allowance(item: Mapping[str, Any]) -> Allowance:
    return Allowance(
        id=str(item["id"]),
        sku=str(item["sku"]),
        units=int(item["units"]),
        remaining=int(item["remaining"]),
        expires_at=_utc(datetime.fromisoformat(str(item["expires_at"]))),
    )


def statement_answer(response: httpx.Response) -> StatementAnswer:
    """200 -> accepted; a 4xx -> central's refusal (409 allowance.replay_pending or
    allowance.statement_mismatch); a 5xx -> unavailable."""
    if response.status_code >= 500:
        raise CentralUnavailable(f"central answered HTTP {response.status_code}", reason="http")
    if response.status_code == 200:
        return StatementAnswer(accepted=True)
    code, message, details = _error_body(response)
    refusal = Refused(response.status_code, code or "http.error", message or "", details)
    return StatementAnswer(accepted=False, refusal=refusal)


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _error_body(response: httpx.Response) -> tuple[str | None, str | None, dict[str, Any]]:
    body = _json(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None, {}
    code, message, details = error.get("code"), error.get("message"), error.get("details")
    return (
        code if isinstance(code, str) and code else None,
        message if isinstance(message, str) and message else None,
        details if isinstance(details, dict) else {},
    )


class NoCentral:
    """The client of an agent started without a central URL: every call is unavailable."""

    def place_order(
        self,
        idempotency_key: str,
        lines: Sequence[Line],
        *,
        request_id: str | None = None,
        grants: Mapping[str, str] | None = None,
    ) -> OrderResult:
        raise _not_configured()

    def my_allowances(self) -> AllowanceList:
        raise _not_configured()

    def allowance_statement(self, grant_id: str, sold: int) -> StatementAnswer:
        raise _not_configured()

    def find_order(self, idempotency_key: str) -> dict[str, Any] | None:
        raise _not_configured()

    def cancel_order(self, order_id: str) -> dict[str, Any]:
        raise _not_configured()

    def recover_orders(self, orders: Sequence[Mapping[str, Any]]) -> RecoveryAnswer:
        raise _not_configured()

    def close(self) -> None:
        pass


def _not_configured() -> CentralUnavailable:
    return CentralUnavailable(
        "no central URL is configured (--central or STOREAGENT_CENTRAL)",
        retryable=False,
        reason="not_configured",
    )


def connect_central(central_url: CentralAt | None, api_key: str | None) -> CentralClient:
    """The real client; nothing connects until the first order."""
    return NoCentral() if central_url is None else HttpCentralClient(central_url, api_key)
