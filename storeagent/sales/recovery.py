"""Sales recovered after central's restore: a supervised side task of the agent that gives a
restored central back the sales this store had confirmed and central lost with its database.

Central restored from a backup starts a new epoch (its database's incarnation, sync.epochs);
the agent hears of it from the records central republishes, and from central's answers. Every
sale central confirmed in an older incarnation may be one the backup did not hold. They are
sent to central (`POST /api/v1/orders/recover`, 100 a call, oldest first) as central had
answered them: order id, time, lines and unit prices, and `cancelled_at` when central had
cancelled the order since. Central settles each by its idempotency key (docs/wire.md):
- `present` or `recovered`: central holds the sale now; it is recorded as held at the new
  epoch, and a recovered sale's line stock is written to the replica at once;
- `unrecovered` (its stock was sold meanwhile, a SKU is gone, it lies outside the restore's
  window) or `conflict` (the key is another sale's at central): the sale's status becomes
  `unrecovered` with central's code and message. The customer has the goods; central lists
  the sale for review (`invctl orders list --status unrecovered`).
Sending a sale twice is harmless: central answers a key it holds with `present`. A sale is
marked only on central's answer, so an agent stopped mid-way sends the rest when it starts.

Central unreachable, or refusing the call as a whole: the sales stay as they are and the task
backs off (exponential, jittered, capped; shown in /sync/status `recovery`). A sale central
refuses by itself (422 naming its index) is recorded `unrecovered` with that refusal, so one
bad sale never holds up the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from typing_extensions import TypedDict

from invwire import tracing
from invwire.logs import EventLog
from storeagent.replica.db import DATABASE_ERRORS
from storeagent.replica.local_orders import LocalOrders, LocalSale
from storeagent.sales.schedule import ReplaySchedule
from storeagent.sales.shelf import Shelf
from storeagent.sync.epochs import incarnation
from storeagent.upstream.client import (
    CentralRefusedCall,
    CentralUnavailable,
    RecoveredSale,
    RecoveryAnswer,
    calling_central,
    confirmed,
)
from storeagent.upstream.resilience import ResilientCentral

BATCH = 100  # sales a call; central takes at most 100
PRESENT, RECOVERED, UNRECOVERED, CONFLICT = "present", "recovered", "unrecovered", "conflict"
HELD = frozenset({PRESENT, RECOVERED})
NOT_HELD = frozenset({UNRECOVERED, CONFLICT})
REFUSED = "recovery.refused"  # central refused one sale of a call (422 naming its index)
NO_COPY = "recovery.no_copy"  # the replica lacks central's answer for the sale


class RecoveryStatus(TypedDict):
    epoch: int  # the newest epoch of central known here
    to_check: int  # sales confirmed in an older incarnation, not yet sent
    present: int  # ... found at central
    recovered: int  # ... placed again at central
    unrecovered: int  # ... central could not take again (status `unrecovered`)
    next_attempt_in_s: float | None
    consecutive_failures: int
    last_error: str | None


class SalesRecovery:
    """`replica_epoch`: the newest epoch of central the replica has seen in a record."""

    def __init__(
        self,
        orders: LocalOrders,
        shelf: Shelf,
        central: ResilientCentral,
        *,
        replica_epoch: Callable[[], int],
        schedule: ReplaySchedule | None = None,
        log: EventLog | None = None,
        on_outcome: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self._orders, self._shelf, self._central = orders, shelf, central
        self._replica_epoch = replica_epoch
        self._schedule = schedule or ReplaySchedule()
        self._log = log or EventLog("storeagent.recovery")
        self._on_outcome = on_outcome

    def run(self, stop: threading.Event) -> None:
        """Send sales until `stop`, waiting on the schedule whenever there is nothing to send."""
        while not stop.is_set():
            if not self.step():
                self._schedule.wait(stop)

    def known_epoch(self) -> int:
        """The newest epoch of central heard of: in a record, or in an answer to a sale."""
        return max(self._replica_epoch(), self._orders.newest_central_epoch())

    def step(self) -> bool:
        """Send the next batch; True when one was settled and the next may follow at once."""
        try:
            epoch = self.known_epoch()
            sales = self._orders.to_recover(epoch, BATCH)
            sendable = self._sendable(sales, epoch) if sales else []
        except DATABASE_ERRORS as exc:
            self._backoff(f"replica: {type(exc).__name__}: {exc}")
            return False
        if not sales:
            return False
        if not sendable:
            return True
        try:
            answer = self._send(sendable)
        except CentralRefusedCall as exc:
            return self._refused(exc, sendable, epoch)
        except CentralUnavailable as exc:
            self._backoff(exc.message)
            return False
        return self._settle(answer, [sale for sale, _ in sendable], epoch)

    def _send(self, sendable: list[tuple[LocalSale, str | None]]) -> RecoveryAnswer:
        with calling_central(
            "recover_orders", store_id=self._orders.store_id, records=len(sendable)
        ) as span:
            answer = self._central.recover_orders(
                [_wire(sale, cancelled) for sale, cancelled in sendable], background=True
            )
            tracing.annotate(span, outcome="answered", epoch=answer.epoch)
        return answer

    def status(self) -> RecoveryStatus:
        counts = self._orders.recovery_counts()
        epoch = self.known_epoch()
        next_in, failures, last_error = self._schedule.status()
        return RecoveryStatus(
            epoch=epoch,
            to_check=self._orders.to_recover_count(epoch),
            present=counts.get(PRESENT, 0),
            recovered=counts.get(RECOVERED, 0),
            unrecovered=sum(counts.get(outcome, 0) for outcome in NOT_HELD),
            next_attempt_in_s=next_in,
            consecutive_failures=failures,
            last_error=last_error,
        )

    def _sendable(self, sales: list[LocalSale], epoch: int) -> list[tuple[LocalSale, str | None]]:
        """The sales with central's answer at hand, each with its cancel time at central;
        one without (a replica of an older agent) is unrecovered at once."""
        cancels = self._orders.cancelled_at([str(sale.order_id) for sale in sales])
        sendable = []
        with self._orders.transaction():
            for sale in sales:
                if _central_copy(sale) is None:
                    self._not_held(sale, epoch, UNRECOVERED, NO_COPY, "no copy of central's order")
                else:
                    sendable.append((sale, cancels.get(str(sale.order_id))))
        return sendable

    def _settle(self, answer: RecoveryAnswer, sales: list[LocalSale], epoch: int) -> bool:
        if incarnation(answer.epoch) < incarnation(epoch) or len(answer.items) != len(sales):
            self._backoff(
                f"central answered epoch {answer.epoch} with {len(answer.items)} items for "
                f"{len(sales)} sales at epoch {epoch}"
            )
            return False
        with self._orders.transaction():
            for sale, item in zip(sales, answer.items, strict=True):
                self._record(sale, item, answer.epoch)
        self._schedule.succeeded()
        for item in answer.items:
            self._on_outcome(item.outcome)
        return True

    def _record(self, sale: LocalSale, item: RecoveredSale, epoch: int) -> None:
        if item.outcome in HELD:
            self._orders.held(sale.local_ref, epoch, item.outcome)
            if item.outcome == RECOVERED and item.order is not None:
                self._restock(item.order, epoch)
            self._log.info(
                f"order.{item.outcome}_at_central", local_ref=sale.local_ref, order_id=sale.order_id
            )
            return
        code = item.code or f"recovery.{item.outcome}"
        message = item.message or f"central answered {item.outcome}"
        self._not_held(sale, epoch, item.outcome, code, message)

    def _restock(self, order: dict[str, Any], epoch: int) -> None:
        if order.get("status") != "confirmed":
            return
        try:
            self._shelf.restock(confirmed(order, epoch=epoch))
        except CentralUnavailable:  # not an order's shape: its stock comes through Kafka
            self._log.warning("order.recovered_without_stock", order_id=order.get("id"))

    def _not_held(self, sale: LocalSale, epoch: int, outcome: str, code: str, msg: str) -> None:
        outcome = outcome if outcome in NOT_HELD else UNRECOVERED
        self._orders.unrecovered(sale.local_ref, epoch, outcome, code, msg)
        self._log.error(
            "order.unrecovered",
            local_ref=sale.local_ref,
            order_id=sale.order_id,
            code=code,
            message=msg,
            lines=[line.to_wire() for line in sale.lines],
            customer_has_goods=True,
        )

    def _refused(
        self, exc: CentralRefusedCall, sent: list[tuple[LocalSale, str | None]], epoch: int
    ) -> bool:
        """One sale refused (422 naming its index): it is recorded unrecovered and the rest
        go again at once. Anything else refused (the key, no restore known): back off."""
        refusal = exc.refusal
        index = refusal.details.get("index")
        if refusal.status == 422 and type(index) is int and 0 <= index < len(sent):
            sale = sent[index][0]
            with self._orders.transaction():
                self._not_held(
                    sale, epoch, UNRECOVERED, REFUSED, f"{refusal.code}: {refusal.message}"
                )
            return True
        self._backoff(f"central refused the recovery ({refusal.code}: {refusal.message})")
        return False

    def _backoff(self, error: str) -> None:
        delay = self._schedule.failed(error)
        _, failures, _ = self._schedule.status()
        self._log.warning(
            "order.recovery_failed",
            message=error,
            consecutive_failures=failures,
            retry_in_s=round(delay, 1),
        )


def _central_copy(sale: LocalSale) -> dict[str, Any] | None:
    order = sale.central_order
    if not isinstance(order, dict) or not isinstance(order.get("created_at"), str):
        return None
    lines = order.get("lines")
    if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
        return None
    return order


def _wire(sale: LocalSale, cancelled_at: str | None) -> dict[str, Any]:
    """The sale as central had answered it, for POST /orders/recover."""
    order = _central_copy(sale) or {}
    prices = {line.get("sku"): line.get("unit_price") for line in order.get("lines", [])}
    return {
        "id": sale.order_id,
        "idempotency_key": sale.idempotency_key,
        "created_at": order.get("created_at"),
        "cancelled_at": cancelled_at or order.get("cancelled_at"),
        "lines": [
            {"sku": line.sku, "quantity": line.quantity, "unit_price": prices.get(line.sku)}
            for line in sale.lines
        ],
    }
