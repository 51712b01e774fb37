"""Sales at the store: check the replica, persist the sale with its idempotency key, send it
to central, and apply central's answer to the replica at once (read-your-writes). When
central cannot be reached and the store's offline policy allows it, the sale is queued
instead (202 `queued`); the replayer (storeagent.replay) sends it later with the same key.

Each step is its own short replica transaction; none is open while central is called, so
the sync loop never waits on central. The stock check and the insert of the pending sale
share one BEGIN IMMEDIATE transaction, and so do the offline check and the queueing: two
tills never both pass a check on the same remaining units.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from invwire.errors import IdempotencyMismatch
from invwire.logs import EventLog
from invwire.orders import Line
from storeagent import offline_rules
from storeagent import order_rules as rules
from storeagent.central_client import CentralUnavailable, Confirmed, Refused
from storeagent.clock import Clock, utc_now
from storeagent.errors import AgentError
from storeagent.local_sales import LocalSales, lines_of
from storeagent.models import LocalOrder
from storeagent.offline import KeyClaims, OfflineQueueStatus, ReplaySchedule
from storeagent.offline_rules import OfflinePolicy, QueueRefusal
from storeagent.replay import offline_status
from storeagent.replica import Replica
from storeagent.resilience import CircuitStatus, ResilientCentral


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
        replica: Replica,
        central: ResilientCentral,
        *,
        clock: Clock = utc_now,
        log: EventLog | None = None,
        new_key: Callable[[], str] = lambda: str(uuid.uuid4()),
        policy: OfflinePolicy = offline_rules.DEFAULT_POLICY,
        claims: KeyClaims | None = None,
        schedule: ReplaySchedule | None = None,
    ) -> None:
        self.sales = LocalSales(replica, clock)
        self.policy = policy
        self.claims = claims or KeyClaims()
        self.schedule = schedule or ReplaySchedule()
        self._central, self._clock = central, clock
        self._log = log or EventLog("storeagent.orders")
        self._new_key = new_key

    def place(self, command: PlaceOrder) -> Placed | Queued:
        lines = rules.valid_lines(command.lines)
        key = self._key(command.idempotency_key)
        with self.claims.till(key):
            begun = self._begin(key, lines)
            if isinstance(begun, _Attempt):
                return self._send(begun, command.request_id)
            return begun

    def central_status(self) -> CircuitStatus:
        return self._central.status()

    def offline_queue_depth(self) -> int:
        """Sales queued offline, waiting for central."""
        return self.sales.queue_depth()

    def rejected_count(self) -> int:
        """Sales queued offline that central then refused (the customer has the goods)."""
        return self.sales.rejected_offline()

    def offline_status(self) -> OfflineQueueStatus:
        return offline_status(self.sales, self.schedule, self.policy, self._clock())

    def close(self) -> None:
        self._central.close()

    def _key(self, raw: str | None) -> str:
        return self._new_key() if raw is None else rules.valid_key(raw)

    def _begin(self, key: str, lines: list[Line]) -> _Attempt | Placed | Queued:
        """Commit the sale as pending before central hears of it, unless the key is settled."""
        print_ = rules.fingerprint(lines)
        with self.sales.transaction():
            row = self.sales.by_key(key)
            settled = None if row is None else _settled(row, print_)
            if settled is not None:
                return settled
            if rules.needs_stock_check(None if row is None else row.status):
                rules.check_stock(self.sales.products([line.sku for line in lines]), lines)
            local_ref = self._save_pending(row, key, lines, print_)
        return _Attempt(local_ref, key, lines, bool(row and row.outcome_unknown))

    def _save_pending(
        self, row: LocalOrder | None, key: str, lines: list[Line], print_: str
    ) -> str:
        pending: dict[str, Any] = {"status": rules.PENDING, "updated_at": self.sales.now()}
        if row is not None:
            self.sales.update(row.local_ref, attempts=row.attempts + 1, **pending)
            return str(row.local_ref)
        local_ref = str(uuid.uuid4())
        self.sales.add(
            local_ref=local_ref,
            idempotency_key=key,
            fingerprint=print_,
            lines=json.dumps([line.to_wire() for line in lines]),
            attempts=1,
            created_at=pending["updated_at"],
            **pending,
        )
        return local_ref

    def _send(self, attempt: _Attempt, request_id: str | None) -> Placed | Queued:
        try:
            result = self._central.place_order(attempt.key, attempt.lines, request_id=request_id)
        except CentralUnavailable as exc:
            exc.details["local_ref"] = attempt.local_ref  # the till can replay this sale
            return self._unavailable(attempt, exc)
        self.schedule.central_answered()
        if isinstance(result, Refused):
            raise self._refused(attempt, result)
        return self._confirm(attempt, result)

    def _confirm(self, attempt: _Attempt, result: Confirmed) -> Placed:
        with self.sales.transaction():
            self.sales.confirm(attempt.local_ref, result)
        self._log.info("order.confirmed", local_ref=attempt.local_ref, order_id=result.order_id)
        return Placed(attempt.local_ref, result.order, replayed=False)

    def _unavailable(self, attempt: _Attempt, exc: CentralUnavailable) -> Queued:
        """Queue the sale if the offline policy allows it; else record it failed and raise."""
        refusal = self._queue(attempt, exc)
        if refusal is None:
            self.schedule.work_arrived()
            self._log.warning(
                "order.queued_offline", local_ref=attempt.local_ref, message=exc.message
            )
            return Queued(attempt.local_ref, attempt.lines, replayed=False)
        if refusal.code != offline_rules.OFF_REFUSAL:
            exc.details["offline"] = refusal.to_wire()
        unknown = attempt.outcome_unknown or exc.maybe_sent
        self._mark(attempt, rules.FAILED, exc, outcome_unknown=unknown)
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
        if not self.policy.enabled:
            return offline_rules.OFF
        with self.sales.transaction():
            queued = self.sales.queued_units()
            refusal = offline_rules.queue_refusal(
                self.policy,
                attempt.lines,
                available=self.sales.products([line.sku for line in attempt.lines], queued),
                queued_units=sum(queued.values()),
                unavailable_reason=exc.details.get("reason"),
            )
            if refusal is None:
                self.sales.record(
                    attempt.local_ref,
                    rules.QUEUED,
                    code=exc.code,
                    message=exc.message,
                    queued_at=self.sales.now(),
                )
        return refusal

    def _refused(self, attempt: _Attempt, refusal: Refused) -> AgentError:
        if refusal.is_auth:
            # Not a verdict on the sale: once the key is fixed, the same key may try again.
            error: AgentError = CentralAuthFailed(central_code=refusal.code)
            self._mark(attempt, rules.FAILED, error, outcome_unknown=attempt.outcome_unknown)
            self._log.error(
                "order.central_auth_failed", local_ref=attempt.local_ref, code=refusal.code
            )
            return error
        error = CentralRefused(refusal)
        self._mark(attempt, rules.REJECTED, error)
        self._log.info("order.rejected", local_ref=attempt.local_ref, code=refusal.code)
        return error

    def _mark(self, attempt: _Attempt, status: str, reason: AgentError, **fields: Any) -> None:
        with self.sales.transaction():
            self.sales.record(
                attempt.local_ref, status, code=reason.code, message=reason.message, **fields
            )


def _settled(row: LocalOrder, print_: str) -> Placed | Queued | None:
    """The answer for a key seen before, when it needs no call to central."""
    if row.fingerprint != print_:
        raise IdempotencyMismatch(local_ref=row.local_ref)
    if row.status == rules.CONFIRMED:
        return Placed(row.local_ref, json.loads(str(row.central_order)), replayed=True)
    if row.status == rules.QUEUED:  # the replayer owns it now
        return Queued(row.local_ref, lines_of(row), replayed=True)
    if row.status == rules.FAILED and row.reason_code == rules.VOIDED:
        raise rules.OrderVoided(local_ref=row.local_ref, order_id=row.order_id)
    return None
