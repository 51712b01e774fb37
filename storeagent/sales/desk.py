"""Sales at the store: check the replica, persist the sale with its idempotency key, send it
to central, and apply central's answer to the replica at once (read-your-writes). When
central cannot be reached and the store's offline policy allows it, the sale is queued
instead (202 `queued`); the replayer (sales.replay) sends it later with the same key.

Each step is its own short replica transaction; none is open while central is called, so
the sync loop never waits on central. The stock check and the insert of the pending sale
share one BEGIN IMMEDIATE transaction, and so do the offline check and the queueing: two
tills never both pass a check on the same remaining units.

Outcome before answer: the till is answered only once the sale's outcome is recorded. When
the replica refuses that write (locked past its busy timeout, a failing disk), the sale is
in doubt: it is journaled (sales.doubt), the till gets 503 with `details.outcome` "voided",
and the replayer voids it (cancelling any copy central holds); it is never completed.
A confirmation that central replayed for a key this agent never sent is another sale's
order (another agent or till uses the key): 409 `order.key_conflict`, never a new sale.
A sale is never queued while the replica's path does not name the file the agent opened
(replica.integrity): it would vanish with that file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from invwire import tracing
from invwire.errors import IdempotencyMismatch
from invwire.errors.agent import AgentError, SaleOfAnotherStore
from invwire.logs import EventLog
from invwire.orders import Line
from storeagent.clock import Clock, utc_now
from storeagent.replica.db import DATABASE_ERRORS, iso
from storeagent.replica.local_orders import LocalOrders, LocalSale
from storeagent.replica.queries import OrderItem, OrderList, SaleQuery, SaleReads
from storeagent.sales import allowance_cover, offline_policy, rules
from storeagent.sales.allowance_sales import AllowanceSales
from storeagent.sales.cancel import OrderCancels
from storeagent.sales.central_errors import CentralAuthFailed, CentralRefused
from storeagent.sales.claims import KeyClaims
from storeagent.sales.doubt import Doubt, DoubtJournal
from storeagent.sales.offline_policy import OfflinePolicy, QueueRefusal, queued_units_by_sku
from storeagent.sales.schedule import ReplaySchedule
from storeagent.sales.shelf import Shelf
from storeagent.sales.status import OfflineQueueStatus, offline_status
from storeagent.upstream.client import (
    CentralUnavailable,
    Confirmed,
    Refused,
    calling_central,
    order_outcome,
)
from storeagent.upstream.resilience import CircuitStatus, ResilientCentral


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
    reason: str | None = None  # why it was not sold under allowances (allowance_cover)
    http_status = 202

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": rules.QUEUED,
            "local_ref": self.local_ref,
            "lines": [line.to_wire() for line in self.lines],
        }
        if self.reason is not None:
            body["reason"] = self.reason
        return body


@dataclass(frozen=True)
class AllowanceSold:
    """Sold offline under central's allowances: final, and central will not refuse it."""

    local_ref: str
    lines: list[Line]
    replayed: bool
    http_status = 202

    def body(self) -> dict[str, Any]:
        return {
            "status": rules.ALLOWANCE,
            "local_ref": self.local_ref,
            "lines": [line.to_wire() for line in self.lines],
        }


Outcome = Placed | Queued | AllowanceSold


@dataclass(frozen=True)
class _Attempt:
    local_ref: str
    key: str
    lines: list[Line]
    outcome_unknown: bool  # an earlier attempt of this key may be at central
    first_send: bool  # the sale is new: this replica never sent its key before


@dataclass(frozen=True)
class _CentralSaid:
    """What central's answer means for a sale whose outcome could not be recorded."""

    at_central: bool  # central may hold the sale's order
    order_id: str | None = None  # ... and this is it
    note: str = "central's answer is unknown"


CentralAnswer = Confirmed | Refused | CentralUnavailable


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
        doubts: DoubtJournal,
        instance_id: str,
        log: EventLog | None = None,
        new_key: Callable[[], str] = lambda: str(uuid.uuid4()),
        replica_file: Callable[[], AgentError | None] | None = None,
        allowances: AllowanceSales | None = None,
    ) -> None:
        """`replica_file` says what is wrong with the replica's file (it was deleted or
        replaced), or None: asked before each sale is queued."""
        self._orders, self._shelf, self._central = orders, shelf, central
        self._claims, self._schedule = claims, schedule
        self._doubts, self._instance_id = doubts, instance_id
        self._policy, self._clock = policy, clock
        self._log = log or EventLog("storeagent.orders")
        self._new_key = new_key
        self._sales = SaleReads(orders.replica)
        self._cancels = OrderCancels(self._sales, orders, central, clock=clock, log=self._log)
        self._replica_file = replica_file
        self._allowances = allowances

    def place(self, command: PlaceOrder) -> Outcome:
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

    def foreign_sales(self) -> dict[str, int]:
        """Sales waiting in the replica under another store's id (never sent), by store."""
        return self._orders.foreign_sales()

    def list_orders(self, query: SaleQuery) -> OrderList:
        """This store's sales, newest first, each with central's later status."""
        rules.valid_status(query.status)
        return self._sales.page(query)

    def find_order(self, ref: str) -> OrderItem:
        """One sale, by its local reference or central order id, or a prefix of either."""
        return self._cancels.sale(ref)

    def cancel(self, ref: str) -> dict[str, Any]:
        """Cancel the sale's order at central (sales.cancel); central's order, cancelled."""
        return self._cancels.cancel(ref)

    def _key(self, raw: str | None) -> str:
        return self._new_key() if raw is None else rules.valid_key(raw)

    def _begin(self, key: str, lines: list[Line]) -> _Attempt | Outcome:
        """Commit the sale as pending before central hears of it, unless the key is settled.
        A replica that cannot take it: 503, nothing saved, nothing sent."""
        doubt = self._doubts.holding(key)
        if doubt is not None:  # not in the replica yet: the replayer records it
            raise rules.OrderVoided(_VOIDED_NOT_RECORDED, local_ref=doubt.local_ref)
        try:
            return self._save_pending(key, lines)
        except DATABASE_ERRORS as exc:
            self._log.error("order.not_saved", error=f"{type(exc).__name__}: {exc}")
            raise rules.SaleNotSaved(outcome=rules.NOT_SENT_OUTCOME) from exc

    def _save_pending(self, key: str, lines: list[Line]) -> _Attempt | Outcome:
        print_ = rules.fingerprint(lines)
        with self._orders.transaction():
            sale = self._orders.by_key(key)
            if sale is not None and self._orders.is_foreign(sale):
                raise SaleOfAnotherStore(local_ref=sale.local_ref, store_id=sale.store_id)
            settled = None if sale is None else _settled(sale, print_)
            if settled is not None:
                return settled
            if rules.needs_stock_check(None if sale is None else sale.status):
                rules.check_stock(self._with_grants(self._available(lines)), lines)
            if sale is None:
                local_ref = str(uuid.uuid4())
                self._orders.add_pending(
                    local_ref, key, print_, lines, instance_id=self._instance_id
                )
            else:
                local_ref = sale.local_ref
                self._orders.retry(local_ref, instance_id=self._instance_id)
        return _Attempt(
            local_ref, key, lines, bool(sale and sale.outcome_unknown), first_send=sale is None
        )

    def _available(
        self, lines: list[Line], queued: dict[str, int] | None = None
    ) -> dict[str, rules.Product]:
        """The replica's stock of the lines' SKUs, less the units queued offline."""
        if queued is None:
            queued = self._queued_units()
        return self._shelf.available([line.sku for line in lines], queued)

    def _with_grants(self, available: dict[str, rules.Product]) -> dict[str, rules.Product]:
        """Central lets this store's online orders draw on its own grants too."""
        if self._allowances is None:
            return available
        left = self._allowances.left_by_sku()
        return {
            sku: replace(item, quantity=item.quantity + left.get(sku, 0))
            for sku, item in available.items()
        }

    def _queued_units(self) -> dict[str, int]:
        return queued_units_by_sku(self._orders.queued_lines())

    def _send(self, attempt: _Attempt, request_id: str | None) -> Outcome:
        """Ask central, record the outcome, and only then answer. Whatever stops the outcome
        from being recorded makes the sale void (in doubt), never completed later."""
        said = _CentralSaid(at_central=True)  # until central answers, it may hold the sale
        try:
            answer = self._ask(attempt, request_id)
            said = _what_central_said(attempt, answer)
            outcome = self._record(attempt, answer)
        except DATABASE_ERRORS as exc:
            raise self._in_doubt(attempt, said, exc) from exc
        except Exception as exc:  # a bug: the till gets an error, and the sale is void as well
            self._in_doubt(attempt, said, exc)
            raise
        if isinstance(outcome, AgentError):
            raise outcome
        return outcome

    def _ask(self, attempt: _Attempt, request_id: str | None) -> CentralAnswer:
        waiting = None if self._allowances is None else self._allowances.replay_first()
        if waiting is not None:  # central hears of the sales under grants first
            self._schedule.work_arrived()
            waiting.details["local_ref"] = attempt.local_ref
            return waiting
        try:
            with calling_central(
                "place_order", store_id=self._orders.store_id, local_ref=attempt.local_ref
            ) as span:
                result = self._central.place_order(
                    attempt.key, attempt.lines, request_id=request_id
                )
                tracing.annotate(span, outcome=order_outcome(result))
        except CentralUnavailable as exc:
            exc.details["local_ref"] = attempt.local_ref  # the till can replay this sale
            return exc
        self._schedule.central_answered()
        return result

    def _record(self, attempt: _Attempt, answer: CentralAnswer) -> Outcome | AgentError:
        """Record central's answer in the replica; what the till is to be answered."""
        if isinstance(answer, CentralUnavailable):
            return self._unavailable(attempt, answer)
        if isinstance(answer, Refused):
            return self._refused(attempt, answer)
        if _foreign(attempt, answer):
            return self._conflict(attempt, answer)
        return self._confirm(attempt, answer)

    def _in_doubt(
        self, attempt: _Attempt, said: _CentralSaid, exc: Exception
    ) -> rules.OutcomeNotRecorded:
        """The outcome could not be recorded: journal the sale as void, and say so."""
        reason = f"{type(exc).__name__}: {exc}"
        doubt = Doubt(
            local_ref=attempt.local_ref,
            key=attempt.key,
            at_central=said.at_central,
            order_id=said.order_id,
            message=f"the till was told the sale failed: its outcome could not be recorded "
            f"({reason}); {said.note}",
            instance_id=self._instance_id,
            at=iso(self._clock()),
        )
        journaled = self._doubts.add(doubt)
        self._schedule.work_arrived()
        self._log.error(
            "order.outcome_not_recorded",
            local_ref=attempt.local_ref,
            error=reason,
            central=said.note,
            journaled=journaled,
            outcome=rules.VOIDED_OUTCOME,
        )
        return rules.OutcomeNotRecorded(local_ref=attempt.local_ref, outcome=rules.VOIDED_OUTCOME)

    def _conflict(self, attempt: _Attempt, result: Confirmed) -> AgentError:
        """Central answered another sale's order: fail this one, leave that order alone."""
        message = (
            f"central already held order {result.order_id} under this key, which this agent "
            "never sent: another agent or till uses the same key"
        )
        with self._orders.transaction():
            self._orders.key_conflict(attempt.local_ref, message)
        self._log.error(
            "order.key_conflict",
            local_ref=attempt.local_ref,
            key=attempt.key,
            order_id=result.order_id,
            message=message,
        )
        return rules.KeyConflict(local_ref=attempt.local_ref, order_id=result.order_id)

    def _confirm(self, attempt: _Attempt, result: Confirmed) -> Placed:
        with self._orders.transaction():
            self._shelf.restock(result)
            self._orders.confirm(
                attempt.local_ref, result.order_id, result.order, epoch=result.epoch
            )
            if self._allowances is not None:
                self._allowances.booked(attempt.local_ref, result.order)
        self._log.info("order.confirmed", local_ref=attempt.local_ref, order_id=result.order_id)
        if self._allowances is not None:
            self._allowances.sold_online(line.sku for line in attempt.lines)
        return Placed(attempt.local_ref, result.order, replayed=False)

    def _unavailable(
        self, attempt: _Attempt, exc: CentralUnavailable
    ) -> Queued | AllowanceSold | CentralUnavailable:
        """Sell the sale under grants if they cover it; else queue it if the offline policy
        allows it (saying why grants did not cover it); else record it failed."""
        why = self._sell_under_grants(attempt, exc)
        if not why:
            self._schedule.work_arrived()
            self._log.info("order.sold_under_allowance", local_ref=attempt.local_ref)
            return AllowanceSold(attempt.local_ref, attempt.lines, replayed=False)
        reason = None if why == _NO_ALLOWANCES else why
        refusal = self._queue(attempt, exc, reason)
        if refusal is None:
            self._schedule.work_arrived()
            self._log.warning(
                "order.queued_offline",
                local_ref=attempt.local_ref,
                message=exc.message,
                allowance=why,
            )
            return Queued(attempt.local_ref, attempt.lines, replayed=False, reason=reason)
        if reason is not None:
            exc.details["allowance"] = reason
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
        return exc

    def _sell_under_grants(self, attempt: _Attempt, exc: CentralUnavailable) -> str:
        """Sell under grants, in one transaction with the debits; "" when sold, else why not."""
        if self._allowances is None:
            return _NO_ALLOWANCES
        file_problem = self._replica_file() if self._replica_file is not None else None
        if file_problem is not None:  # sold into it, the sale would vanish with that file
            return file_problem.code
        if attempt.outcome_unknown:  # an earlier attempt may be at central
            return allowance_cover.OUTCOME_UNKNOWN
        with self._orders.transaction():
            return self._allowances.sell(attempt.local_ref, attempt.lines, exc) or ""

    def _queue(
        self, attempt: _Attempt, exc: CentralUnavailable, reason: str | None
    ) -> QueueRefusal | None:
        """The offline check and the queueing, in one transaction. `reason`: why the sale
        was not sold under allowances."""
        if not self._policy.enabled:
            return offline_policy.OFF
        file_problem = self._replica_file() if self._replica_file is not None else None
        if file_problem is not None:  # queued into it, the sale would vanish with that file
            return QueueRefusal(file_problem.code, file_problem.message)
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
                self._orders.queue(
                    attempt.local_ref, exc.code, exc.message, allowance_reason=reason
                )
        return refusal

    def _refused(self, attempt: _Attempt, refusal: Refused) -> AgentError:
        if refusal.is_auth:
            # Not a verdict on the sale: once the key is fixed, the same key may try again.
            error: AgentError = CentralAuthFailed(
                central_code=refusal.code, store_id=self._orders.store_id
            )
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


_NO_ALLOWANCES = "allowance.off"  # the agent keeps no allowances (no central to fetch them)
_VOIDED_NOT_RECORDED = (
    "This sale was voided: its outcome could not be recorded, so it will not happen (a copy "
    "central holds is cancelled). Ring it up again with a new Idempotency-Key."
)


def _what_central_said(attempt: _Attempt, answer: CentralAnswer) -> _CentralSaid:
    if isinstance(answer, CentralUnavailable):
        unknown = attempt.outcome_unknown or answer.maybe_sent
        return _CentralSaid(unknown, note=f"central was unavailable ({answer.message})")
    if isinstance(answer, Refused):
        return _CentralSaid(False, note=f"central had refused it ({answer.code})")
    if _foreign(attempt, answer):
        return _CentralSaid(False, note=f"central's order {answer.order_id} is another sale's")
    return _CentralSaid(True, answer.order_id, f"central had confirmed it as {answer.order_id}")


def _foreign(attempt: _Attempt, result: Confirmed) -> bool:
    return rules.foreign_replay(result.replayed, attempt.first_send and not result.resent)


def _settled(sale: LocalSale, print_: str) -> Outcome | None:
    """The answer for a key seen before, when it needs no call to central."""
    if sale.fingerprint != print_:
        raise IdempotencyMismatch(local_ref=sale.local_ref)
    if sale.status in (rules.CONFIRMED, rules.UNRECOVERED):  # the till's answer, again
        return Placed(sale.local_ref, dict(sale.central_order or {}), replayed=True)
    if sale.status == rules.QUEUED:  # the replayer owns it now
        return Queued(sale.local_ref, list(sale.lines), replayed=True, reason=sale.allowance_reason)
    if sale.status == rules.ALLOWANCE:
        return AllowanceSold(sale.local_ref, list(sale.lines), replayed=True)
    if sale.status == rules.FAILED and sale.reason_code == rules.VOIDED:
        raise rules.OrderVoided(local_ref=sale.local_ref, order_id=sale.order_id)
    if sale.status == rules.FAILED and sale.reason_code == rules.NOT_RECORDED:
        raise rules.OrderVoided(_VOIDED_NOT_RECORDED, local_ref=sale.local_ref)
    if sale.status == rules.FAILED and sale.reason_code == rules.KEY_CONFLICT:
        raise rules.KeyConflict(local_ref=sale.local_ref)
    return None
