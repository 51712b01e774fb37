"""Cancel one of this store's orders from the till: the agent finds the sale, asks central to
cancel its order as the store (POST /api/v1/orders/{id}/cancel with the store's key; central
lets a store cancel its own orders, and a second cancel changes nothing), and records
central's answer in the replica at once, so the till reads its own cancel.

A cancel is never queued: with central unreachable the till gets 503 and nothing changed.
The order_status row written here is the same the `order.updated` event brings a moment
later; that event then changes nothing (replica.order_status).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from invwire import tracing
from invwire.errors.agent import AgentError
from invwire.events import order_updated
from invwire.logs import EventLog
from invwire.orders import CENTRAL_STATUSES
from storeagent.clock import Clock
from storeagent.replica import order_status
from storeagent.replica.db import DATABASE_ERRORS, iso
from storeagent.replica.local_orders import LocalOrders
from storeagent.replica.queries import MAX_MATCHES, OrderItem, SaleReads
from storeagent.sales import rules
from storeagent.sales.central_errors import CentralAuthFailed, CentralRefused
from storeagent.upstream.client import CentralRefusedCall, CentralUnavailable, calling_central
from storeagent.upstream.resilience import ResilientCentral

NOT_CANCELLED = (
    "the order was not cancelled (a cancel is never queued: try again once central is back)"
)


class OrderCancels:
    def __init__(
        self,
        sales: SaleReads,
        orders: LocalOrders,
        central: ResilientCentral,
        *,
        clock: Clock,
        log: EventLog,
    ) -> None:
        self._sales, self._orders, self._central = sales, orders, central
        self._clock, self._log = clock, log

    def sale(self, ref: str) -> OrderItem:
        """The one sale `ref` names (a local reference, an order id, or a prefix of one)."""
        matches = self._sales.find(ref)
        if not matches:
            raise rules.SaleNotFound(f"no sale of this store is {ref!r}", ref=ref)
        if len(matches) > 1:
            shown = [m["local_ref"] for m in matches[:MAX_MATCHES]]
            count = f"more than {MAX_MATCHES}" if len(matches) > MAX_MATCHES else len(matches)
            raise rules.SaleAmbiguous(
                f"{count} sales start with {ref!r}; give more of it",
                ref=ref,
                matches=shown,
            )
        return matches[0]

    def cancel(self, ref: str) -> dict[str, Any]:
        """Central's order, now cancelled, with the sale's `local_ref` beside its fields."""
        sale = self.sale(ref)
        refusal = rules.cancel_refusal(sale["status"], sale["order_id"], sale["local_ref"])
        if refusal is not None:
            raise refusal
        order_id = str(sale["order_id"])
        order = self._ask(order_id, sale["local_ref"])
        self._record(order_id, order)
        self._log.info("order.cancelled", local_ref=sale["local_ref"], order_id=order_id)
        return {**order, "local_ref": sale["local_ref"]}

    def _ask(self, order_id: str, local_ref: str) -> dict[str, Any]:
        try:
            with calling_central(
                "cancel_order",
                store_id=self._orders.store_id,
                local_ref=local_ref,
                order_id=order_id,
            ) as span:
                order = self._central.cancel_order(order_id)
                tracing.annotate(span, outcome=str(order.get("status")))
        except CentralRefusedCall as exc:
            raise _refused(exc, order_id, self._orders.store_id) from None
        except CentralUnavailable as exc:
            raise CentralUnavailable(
                f"{exc.message}; {NOT_CANCELLED}",
                retryable=exc.retryable,
                reason=exc.details.get("reason"),
                local_ref=local_ref,
                order_id=order_id,
            ) from None
        if order.get("id") != order_id or order.get("status") not in CENTRAL_STATUSES:
            raise CentralUnavailable(
                f"central's answer to the cancel is not the order {order_id}",
                reason="bad_answer",
                order_id=order_id,
            )
        return order

    def _record(self, order_id: str, order: dict[str, Any]) -> None:
        """Central's status in the replica now; if the replica cannot take it, the event
        brings it: the order is cancelled at central either way."""
        store_id = str(order.get("store_id") or self._orders.store_id or "")
        update = order_updated(order_id, store_id, order["status"], _moment(order))
        try:
            with self._orders.transaction():
                order_status.record(self._orders.replica.db, update, updated_at=iso(self._clock()))
        except DATABASE_ERRORS as exc:
            self._log.warning(
                "order.cancel_not_recorded",
                order_id=order_id,
                error=f"{type(exc).__name__}: {exc}",
            )


def _refused(exc: CentralRefusedCall, order_id: str, store_id: str | None) -> AgentError:
    refusal = exc.refusal
    if refusal.is_auth:
        return CentralAuthFailed(central_code=refusal.code, store_id=store_id)
    if refusal.status == 404:
        return rules.SaleNotFound(
            f"central has no order {order_id} of this store", order_id=order_id
        )
    return CentralRefused(refusal)


def _moment(order: dict[str, Any]) -> datetime | None:
    raw = order.get("cancelled_at")
    try:
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
