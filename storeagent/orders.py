"""Sales at the store: check the replica, persist the sale with its idempotency key, send it
to central, and apply central's answer to the replica at once (read-your-writes).

Each step is its own short replica transaction; none is open while central is called, so
the sync loop never waits on central.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storeagent import order_rules as rules
from storeagent.central_client import CentralUnavailable, Confirmed, Refused, StockLevel
from storeagent.clock import Clock, utc_now
from storeagent.errors import AgentError
from storeagent.logs import EventLog
from storeagent.models import LocalOrder
from storeagent.order_rules import Line
from storeagent.replica import Replica, iso
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

    def body(self) -> dict[str, Any]:
        return {"status": rules.CONFIRMED, "order": self.order, "local_ref": self.local_ref}


@dataclass(frozen=True)
class _Attempt:
    local_ref: str
    key: str
    lines: list[Line]


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
    ) -> None:
        self._replica, self._central, self._clock = replica, central, clock
        self._log = log or EventLog("storeagent.orders")
        self._new_key = new_key

    def place(self, command: PlaceOrder) -> Placed:
        lines = rules.valid_lines(command.lines)
        key = self._key(command.idempotency_key)
        attempt_or_done = self._begin(key, lines)
        if isinstance(attempt_or_done, Placed):
            return attempt_or_done
        return self._send(attempt_or_done, command.request_id)

    def central_status(self) -> CircuitStatus:
        return self._central.status()

    def close(self) -> None:
        self._central.close()

    def _key(self, raw: str | None) -> str:
        return self._new_key() if raw is None else rules.valid_key(raw)

    def _begin(self, key: str, lines: list[Line]) -> _Attempt | Placed:
        """Commit the sale as pending before central hears of it, unless the key is done."""
        print_ = rules.fingerprint(lines)
        now = iso(self._clock())
        with self._replica.transaction():
            row = self._replica.local_order(key)
            if row is not None and row.fingerprint != print_:
                raise rules.IdempotencyMismatch(local_ref=row.local_ref)
            if row is not None and row.status == rules.CONFIRMED:
                return Placed(row.local_ref, json.loads(str(row.central_order)), replayed=True)
            if rules.needs_stock_check(None if row is None else row.status):
                rules.check_stock(self._products(lines), lines)
            local_ref = self._save_pending(row, key, lines, print_, now)
        return _Attempt(local_ref, key, lines)

    def _products(self, lines: list[Line]) -> dict[str, rules.Product]:
        prod, stock = self._replica.m.product, self._replica.m.stock
        skus = [line.sku for line in lines]
        quantities = {s.sku: s.quantity for s in stock.select().where(stock.sku.in_(skus))}
        return {
            p.sku: rules.Product(bool(p.active), quantities.get(p.sku, 0))
            for p in prod.select().where(prod.sku.in_(skus))
        }

    def _save_pending(
        self, row: LocalOrder | None, key: str, lines: list[Line], print_: str, now: str
    ) -> str:
        pending: dict[str, Any] = {"status": rules.PENDING, "updated_at": now}
        if row is not None:
            self._replica.update_local_order(row.local_ref, attempts=row.attempts + 1, **pending)
            return str(row.local_ref)
        local_ref = str(uuid.uuid4())
        self._replica.add_local_order(
            local_ref=local_ref,
            idempotency_key=key,
            fingerprint=print_,
            lines=json.dumps([line.to_wire() for line in lines]),
            attempts=1,
            created_at=now,
            **pending,
        )
        return local_ref

    def _send(self, attempt: _Attempt, request_id: str | None) -> Placed:
        try:
            result = self._central.place_order(attempt.key, attempt.lines, request_id=request_id)
        except CentralUnavailable as exc:
            exc.details["local_ref"] = attempt.local_ref  # the till can replay this sale
            self._mark(attempt, rules.FAILED, exc)
            self._log.warning(
                "order.central_unavailable", local_ref=attempt.local_ref, message=exc.message
            )
            raise
        if isinstance(result, Refused):
            raise self._refused(attempt, result)
        return self._confirm(attempt, result)

    def _confirm(self, attempt: _Attempt, result: Confirmed) -> Placed:
        with self._replica.transaction():
            for level in result.stock:
                self._apply(level, iso(result.created_at))
            self._finish(
                attempt,
                rules.CONFIRMED,
                order_id=result.order_id,
                central_order=json.dumps(result.order),
            )
        self._log.info("order.confirmed", local_ref=attempt.local_ref, order_id=result.order_id)
        return Placed(attempt.local_ref, result.order, replayed=False)

    def _apply(self, level: StockLevel, at: str) -> None:
        self._replica.set_stock(level.sku, level.quantity, level.stock_version, updated_at=at)

    def _refused(self, attempt: _Attempt, refusal: Refused) -> AgentError:
        if refusal.is_auth:
            # Not a verdict on the sale: once the key is fixed, the same key may try again.
            error: AgentError = CentralAuthFailed(central_code=refusal.code)
            self._mark(attempt, rules.FAILED, error)
            self._log.error(
                "order.central_auth_failed", local_ref=attempt.local_ref, code=refusal.code
            )
            return error
        error = CentralRefused(refusal)
        self._mark(attempt, rules.REJECTED, error)
        self._log.info("order.rejected", local_ref=attempt.local_ref, code=refusal.code)
        return error

    def _mark(self, attempt: _Attempt, status: str, reason: AgentError) -> None:
        with self._replica.transaction():
            self._finish(attempt, status, reason=reason)

    def _finish(
        self, attempt: _Attempt, status: str, *, reason: AgentError | None = None, **fields: Any
    ) -> None:
        self._replica.update_local_order(
            attempt.local_ref,
            status=status,
            reason_code=reason.code if reason else None,
            reason_message=reason.message if reason else None,
            updated_at=iso(self._clock()),
            **fields,
        )
