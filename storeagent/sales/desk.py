"""Sales at the store: check the replica, persist the sale with its idempotency key, send it
to central, and apply central's answer to the replica at once (read-your-writes). When
central cannot be reached and the store's offline policy allows it, the sale is queued
instead (202 `queued`); the replayer (sales.replay) sends it later with the same key.

Each step is its own short replica transaction; none is open while central is called, so
the sync loop never waits on central. The stock check and the insert of the pending sale
share one BEGIN IMMEDIATE transaction, and so do the offline check and the queueing: two
tills never both pass a check on the same remaining units.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from invwire.errors import IdempotencyMismatch
from invwire.logs import EventLog
from invwire.orders import Line
from storeagent.clock import Clock, utc_now
from storeagent.errors import AgentError
from storeagent.replica.local_orders import LocalOrders, LocalSale
from storeagent.replica.queries import OrderList, order_list
from storeagent.sales import offline_policy, rules
from storeagent.sales.claims import KeyClaims
from storeagent.sales.offline_policy import OfflinePolicy, QueueRefusal, queued_units_by_sku
from storeagent.sales.schedule import ReplaySchedule
from storeagent.sales.shelf import Shelf
from storeagent.sales.status import OfflineQueueStatus, offline_status
from storeagent.upstream.client import CentralUnavailable, Confirmed, Refused
from storeagent.upstream.resilience import CircuitStatus, ResilientCentral


class CentralRefused(AgentError):
    """Central refused the order; nothing was sold."""

    def __init__(self, refusal: Refused) -> None:
        super().__init__(refusal.message)
        self.code, self.status, self.details = refusal.code, refusal.status, dict(refusal.details)


class CentralAuthFailed(AgentError):
    """Central refused this store's API key; check STOREAGENT_API_KEY or --api-key-file."""

    code = "central.auth_failed"
    status = 502


@dataclass(frozen=True)
class PlaceOrder:
    lines: object
    idempotency_key: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Placed:
    local_ref: str
    order: dict[str, Any]
    replayed: bool
    http_status = 201

    def body(self) -> dict[str, Any]:
        return {"status": rules.CONFIRMED, "order": self.order, "local_ref": self.local_ref}


@dataclass(frozen=True)
class Queued:
    """Accepted offline: the customer takes the goods; central hears of it later."""

    local_ref: str
    lines: list[Line]
    replayed: bool
    http_status = 202

    def body(self) -> dict[str, Any]:
        return {
            "status": rules.QUEUED,
            "local_ref": self.local_ref,
            "lines": [line.to_wire() for line in self.lines],
        }


@dataclass(frozen=True)
class _Attempt:
    local_ref: str
    key: str
    lines: list[Line]
    outcome_unknown: bool  # an earlier attempt of this key may be at central


class OrderDesk:
    """The agent's order use cases; one per agent, shared by the API's worker threads."""

    def __init__(
        self,
        orders: LocalOrders,
        shelf: Shelf,
        central: ResilientCentral,
        *,
        claims: KeyClaims,
        schedule: ReplaySchedule,
        policy: OfflinePolicy = offline_policy.DEFAULT_POLICY,
        clock: Clock = utc_now,
        log: EventLog | None = None,
        new_key: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._orders, self._shelf, self._central = orders, shelf, central
        self._claims, self._schedule = claims, schedule
        self._policy, self._clock = policy, clock
        self._log = log or EventLog("storeagent.orders")
        self._new_key = new_key

    def place(self, command: PlaceOrder) -> Placed | Queued:
        lines = rules.valid_lines(command.lines)
        key = self._key(command.idempotency_key)
        with self._claims.till(key):
            begun = self._begin(key, lines)
            if isinstance(begun, _Attempt):
                return self._send(begun, command.request_id)
            return begun

    def central_status(self) -> CircuitStatus:
        return self._central.status()

    def offline_queue_depth(self) -> int:
        """Sales queued offline, waiting for central."""
        return self._orders.queue_depth()

    def rejected_count(self) -> int:
        """Sales queued offline that central then refused (the customer has the goods)."""
        return self._orders.rejected_offline()

    def offline_status(self) -> OfflineQueueStatus:
        return offline_status(self._orders, self._schedule, self._policy, self._clock())

    def list_orders(self, status: str | None, limit: int) -> OrderList:
        """This store's sales, newest first."""
        return order_list(self._orders, rules.valid_status(status), limit)

    def _key(self, raw: str | None) -> str:
        return self._new_key() if raw is None else rules.valid_key(raw)

    def _begin(self, key: str, lines: list[Line]) -> _Attempt | Placed | Queued:
        """Commit the sale as pending before central hears of it, unless the key is settled."""
        print_ = rules.fingerprint(lines)
        with self._orders.transaction():
            sale = self._orders.by_key(key)
            settled = None if sale is None else _settled(sale, print_)
            if settled is not None:
                return settled
            if rules.needs_stock_check(None if sale is None else sale.status):
                rules.check_stock(self._available(lines), lines)
            if sale is None:
                local_ref = str(uuid.uuid4())
                self._orders.add_pending(local_ref, key, print_, lines)
            else:
                local_ref = sale.local_ref
                self._orders.retry(local_ref)
        return _Attempt(local_ref, key, lines, bool(sale and sale.outcome_unknown))

    def _available(
        self, lines: list[Line], queued: dict[str, int] | None = None
    ) -> dict[str, rules.Product]:
        """The replica's stock of the lines' SKUs, less the units queued offline."""
        if queued is None:
            queued = self._queued_units()
        return self._shelf.available([line.sku for line in lines], queued)

    def _queued_units(self) -> dict[str, int]:
        return queued_units_by_sku(self._orders.queued_lines())

    def _send(self, attempt: _Attempt, request_id: str | None) -> Placed | Queued:
        try:
            result = self._central.place_order(attempt.key, attempt.lines, request_id=request_id)
        except CentralUnavailable as exc:
            exc.details["local_ref"] = attempt.local_ref  # the till can replay this sale
            return self._unavailable(attempt, exc)
        self._schedule.central_answered()
        if isinstance(result, Refused):
            raise self._refused(attempt, result)
        return self._confirm(attempt, result)

    def _confirm(self, attempt: _Attempt, result: Confirmed) -> Placed:
        with self._orders.transaction():
            self._shelf.restock(result)
            self._orders.confirm(attempt.local_ref, result.order_id, result.order)
        self._log.info("order.confirmed", local_ref=attempt.local_ref, order_id=result.order_id)
        return Placed(attempt.local_ref, result.order, replayed=False)

    def _unavailable(self, attempt: _Attempt, exc: CentralUnavailable) -> Queued:
        """Queue the sale if the offline policy allows it; else record it failed and raise."""
        refusal = self._queue(attempt, exc)
        if refusal is None:
            self._schedule.work_arrived()
            self._log.warning(
                "order.queued_offline", local_ref=attempt.local_ref, message=exc.message
            )
            return Queued(attempt.local_ref, attempt.lines, replayed=False)
        if refusal.code != offline_policy.OFF_REFUSAL:
            exc.details["offline"] = refusal.to_wire()
        unknown = attempt.outcome_unknown or exc.maybe_sent
        self._fail(attempt, exc, outcome_unknown=unknown)
        self._log.warning(
            "order.central_unavailable",
            local_ref=attempt.local_ref,
            message=exc.message,
            offline=refusal.code,
            outcome_unknown=unknown,
        )
        raise exc

    def _queue(self, attempt: _Attempt, exc: CentralUnavailable) -> QueueRefusal | None:
        """The offline check and the queueing, in one transaction."""
        if not self._policy.enabled:
            return offline_policy.OFF
        with self._orders.transaction():
            queued = self._queued_units()
            refusal = offline_policy.queue_refusal(
                self._policy,
                attempt.lines,
                available=self._available(attempt.lines, queued),
                queued_units=sum(queued.values()),
                unavailable_reason=exc.details.get("reason"),
            )
            if refusal is None:
                self._orders.queue(attempt.local_ref, exc.code, exc.message)
        return refusal

    def _refused(self, attempt: _Attempt, refusal: Refused) -> AgentError:
        if refusal.is_auth:
            # Not a verdict on the sale: once the key is fixed, the same key may try again.
            error: AgentError = CentralAuthFailed(central_code=refusal.code)
            self._fail(attempt, error, outcome_unknown=attempt.outcome_unknown)
            self._log.error(
                "order.central_auth_failed", local_ref=attempt.local_ref, code=refusal.code
            )
            return error
        error = CentralRefused(refusal)
        with self._orders.transaction():
            self._orders.reject(attempt.local_ref, error.code, error.message)
        self._log.info("order.rejected", local_ref=attempt.local_ref, code=refusal.code)
        return error

    def _fail(self, attempt: _Attempt, reason: AgentError, *, outcome_unknown: bool) -> None:
        with self._orders.transaction():
            self._orders.fail(
                attempt.local_ref, reason.code, reason.message, outcome_unknown=outcome_unknown
            )


def _settled(sale: LocalSale, print_: str) -> Placed | Queued | None:
    """The answer for a key seen before, when it needs no call to central."""
    if sale.fingerprint != print_:
        raise IdempotencyMismatch(local_ref=sale.local_ref)
    if sale.status == rules.CONFIRMED:
        return Placed(sale.local_ref, dict(sale.central_order or {}), replayed=True)
    if sale.status == rules.QUEUED:  # the replayer owns it now
        return Queued(sale.local_ref, list(sale.lines), replayed=True)
    if sale.status == rules.FAILED and sale.reason_code == rules.VOIDED:
        raise rules.OrderVoided(local_ref=sale.local_ref, order_id=sale.order_id)
    return None
