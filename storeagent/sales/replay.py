"""The replayer: a supervised side task of the agent (ops.supervisor) that settles, one at a
time, every sale whose outcome this store has not recorded from central yet.

- Sales in doubt (sales.doubt: answered with an error, outcome not recorded) are recorded
  first, as failed `order.not_recorded`, and then voided like the failed sales below.
- `queued` sales (accepted offline) and orphaned `pending` ones (left by an agent process
  that stopped before it answered the till) are sent again oldest first, each with its own
  idempotency key: central answers a key it has seen with its first order, so nothing sells
  twice. 201 -> `confirmed`, and the replica shows central's stock at once; a refusal ->
  `rejected` with central's code and message, logged; unavailable -> the sale stays as it
  is and the replayer backs off (exponential, jittered, capped; shown in /sync/status).
  A sale leaves the queue only on central's answer: nothing is dropped.
- `failed` sales whose request may have reached central (a timeout, a 5xx) are looked up by
  key once the failure is `void_after_s` old. The till was told the sale failed, so the
  customer did not take the goods: if central recorded it, it is cancelled there and the
  sale is recorded as voided (status stays `failed`, reason `order.voided`). A failed sale
  whose order central had answered (order id known) is looked up at once.
- A `pending` sale of this very process that no till holds was answered with an error
  (sales.rules.orphaned): it is recorded as failed `order.not_recorded` and voided too.
- A sale recorded under another store's id (replica.identity) is never sent nor voided: the
  local orders' queries leave it out, and the agent reports it at start and in /sync/status.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import peewee

from invwire import tracing
from invwire.logs import EventLog
from storeagent.clock import Clock, utc_now
from storeagent.replica.db import DATABASE_ERRORS
from storeagent.replica.local_orders import LocalOrders, LocalSale
from storeagent.sales import rules
from storeagent.sales.allowance_sales import AllowanceSales
from storeagent.sales.claims import KeyClaims
from storeagent.sales.doubt import DoubtJournal
from storeagent.sales.schedule import ReplaySchedule
from storeagent.sales.shelf import Shelf
from storeagent.upstream.client import (
    CentralUnavailable,
    Confirmed,
    Refused,
    calling_central,
    order_outcome,
)
from storeagent.upstream.resilience import ResilientCentral

CANCELLED = "cancelled"


class Replayer:
    def __init__(
        self,
        orders: LocalOrders,
        shelf: Shelf,
        central: ResilientCentral,
        *,
        claims: KeyClaims,
        schedule: ReplaySchedule,
        doubts: DoubtJournal,
        instance_id: str,
        clock: Clock = utc_now,
        log: EventLog | None = None,
        allowances: AllowanceSales | None = None,
    ) -> None:
        self._orders, self._shelf, self._central = orders, shelf, central
        self._claims, self._schedule, self._clock = claims, schedule, clock
        self._doubts, self._instance_id = doubts, instance_id
        self._log = log or EventLog("storeagent.replay")
        self._allowances = allowances

    def run(self, stop: threading.Event) -> None:
        """Settle sales until `stop`, waiting on the schedule whenever there is nothing to do."""
        self._log.info("offline.replayer_started")
        while not stop.is_set():
            if not self.step():
                self._schedule.wait(stop)

    def fold_doubts(self) -> None:
        """Record the sales in doubt in the replica (failed, to be voided); the agent calls
        this at start, before it serves a till, and every step does. Raises the replica's
        error (or an OSError of the journal) when that cannot be done now."""
        for doubt in self._doubts.fold_into(self._orders):
            self._log.warning(
                "order.doubt_recorded",
                local_ref=doubt.local_ref,
                at_central=doubt.at_central,
                order_id=doubt.order_id,
            )

    def step(self) -> bool:
        """Settle the next sale; True when one was settled and the next may follow at once."""
        try:
            self.fold_doubts()
        except (*DATABASE_ERRORS, OSError) as exc:  # e.g. the replica still locked
            self._backoff("order.doubt_not_recorded", f"{type(exc).__name__}: {exc}")
            return False
        row = self._next()
        if row is None:
            return False
        with self._claims.replayer(row.idempotency_key) as mine:
            if not mine:
                return False
            try:
                self._settle(row.idempotency_key)
            except CentralUnavailable as exc:
                self._failed(row, exc.message)
                return False
            except peewee.OperationalError as exc:  # e.g. the replica locked for too long
                self._failed(row, f"replica: {exc}")
                return False
        self._schedule.succeeded()
        return True

    def _next(self) -> LocalSale | None:
        busy = self._claims.held_by_tills() | self._doubts.keys()
        failed_before = self._clock() - timedelta(seconds=self._schedule.tuning.void_after_s)
        row = self._orders.next_to_replay(busy)
        return row if row is not None else self._orders.next_to_void(failed_before, busy)

    def _settle(self, key: str) -> None:
        row = self._orders.by_key(key)  # again, now that the key is ours
        if row is None or self._orders.is_foreign(row):  # another store's: never sent
            return
        orphan = row.status == rules.PENDING and rules.orphaned(row.instance_id, self._instance_id)
        if row.status in rules.WAITING or orphan:
            self._replay(row)
        elif row.status == rules.PENDING:
            self._not_recorded(row)
        elif row.status == rules.FAILED and row.outcome_unknown:
            self._void(row)

    def _not_recorded(self, row: LocalSale) -> None:
        """A sale of this process that its till request left pending: the till was answered
        with an error (the request failed before recording anything), so it is voided."""
        message = (
            "the till was told the sale failed: its request ended before recording central's "
            "answer; central may hold it"
        )
        with self._orders.transaction():
            self._orders.not_recorded(row.local_ref, message, at_central=True, order_id=None)
        self._log.error("order.outcome_not_recorded", local_ref=row.local_ref, message=message)

    def _replay(self, row: LocalSale) -> None:
        with calling_central(
            "place_order", store_id=self._orders.store_id, local_ref=row.local_ref
        ) as span:
            result = self._central.place_order(
                row.idempotency_key,
                row.lines,
                request_id=row.local_ref,
                background=True,
                grants=self._grants(row),
            )
            tracing.annotate(span, outcome=order_outcome(result))
        if isinstance(result, Refused):
            self._refused(row, result)
        else:
            self._confirmed(row, result)

    def _grants(self, row: LocalSale) -> dict[str, str] | None:
        """The grant each line was sold under, for a sale made under allowances."""
        if self._allowances is None or row.status != rules.ALLOWANCE:
            return None
        return self._allowances.grants_of(row.local_ref) or None

    def _confirmed(self, row: LocalSale, result: Confirmed) -> None:
        with self._orders.transaction():
            self._shelf.restock(result)
            self._orders.confirm(row.local_ref, result.order_id, result.order, epoch=result.epoch)
            if self._allowances is not None:
                self._allowances.replayed(row.local_ref)
                self._allowances.booked(row.local_ref, result.order)
        self._log.info(
            "offline.replayed" if row.status in rules.WAITING else "order.resolved",
            local_ref=row.local_ref,
            order_id=result.order_id,
        )

    def _refused(self, row: LocalSale, refusal: Refused) -> None:
        if refusal.is_auth:  # not a verdict on the sale: keep it, and keep trying
            raise CentralUnavailable(
                f"central refused the store's API key ({refusal.code})", reason="auth"
            )
        with self._orders.transaction():
            self._orders.reject(row.local_ref, refusal.code, refusal.message)
        # A sale under allowances refused keeps its debits unbooked: its units stay
        # unsellable here, and its grant's statement waits for an admin (docs/offline.md).
        offline = row.status in rules.WAITING
        self._log.error(
            "offline.rejected" if offline else "order.rejected",
            local_ref=row.local_ref,
            code=refusal.code,
            message=refusal.message,
            lines=[line.to_wire() for line in row.lines],
            customer_has_goods=offline,
        )

    def _void(self, row: LocalSale) -> None:
        with calling_central(
            "find_order", store_id=self._orders.store_id, local_ref=row.local_ref
        ) as span:
            order = self._central.find_order(row.idempotency_key, background=True)
            tracing.annotate(span, outcome="found" if order else "not_found")
        if order is None:
            with self._orders.transaction():
                self._orders.clear_doubt(row.local_ref)
            self._log.info("order.failed_not_at_central", local_ref=row.local_ref)
            return
        if order.get("status") != CANCELLED:
            order = self._cancel(row, str(order["id"]))
        message = f"central had recorded the failed sale as order {order['id']}; cancelled there"
        with self._orders.transaction():
            self._orders.void(row.local_ref, str(order["id"]), message)
        self._log.warning("order.voided", local_ref=row.local_ref, order_id=order["id"])

    def _cancel(self, row: LocalSale, order_id: str) -> dict[str, Any]:
        with calling_central(
            "cancel_order",
            store_id=self._orders.store_id,
            local_ref=row.local_ref,
            order_id=order_id,
        ) as span:
            order = self._central.cancel_order(order_id, background=True)
            tracing.annotate(span, outcome=str(order.get("status")))
        return order

    def _failed(self, row: LocalSale, error: str) -> None:
        self._backoff("offline.replay_unavailable", error, local_ref=row.local_ref)

    def _backoff(self, event: str, error: str, **fields: object) -> None:
        delay = self._schedule.failed(error)
        _, failures, _ = self._schedule.status()
        self._log.warning(
            event,
            **fields,
            message=error,
            consecutive_failures=failures,
            retry_in_s=round(delay, 1),
        )
