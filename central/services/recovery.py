"""Sales recovered from the stores (`POST /orders/recover`, docs/wire.md): after a restore,
each agent sends back the sales it holds as confirmed or cancelled by an older epoch, and
central takes again those its restored database lacks. The batch is checked whole first;
then each sale is settled in a unit of work of its own, so one sale's refusal keeps none of
the others from being taken."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import peewee

from central.domain import orders as rules
from central.domain.recovery import HeldSale, RecoveryWindow, held_sales
from central.epochs import INITIAL_EPOCH, current_epoch
from central.models import Epoch, Order, OrderLine, Stock
from central.services import orders
from central.services.principal import Principal, Role
from central.spans import use_case
from central.uow import UnitOfWork
from invwire import tracing
from invwire.errors.central import (
    Forbidden,
    IdempotencyMismatch,
    InactiveSku,
    InsufficientStock,
    NotRestored,
    OrderIdTaken,
    OutsideRecoveryWindow,
    UnknownSku,
    WireError,
)

PRESENT = "present"  # central holds it already
RECOVERED = "recovered"  # central did not, and took it again
UNRECOVERED = "unrecovered"  # central did not, could not take it now: recorded for review
CONFLICT = "conflict"  # its key or its id is another order's: nothing written
OUTCOMES = (PRESENT, RECOVERED, UNRECOVERED, CONFLICT)
# The order.recover span's count of each outcome (invctl.present, ..., invctl.conflicts).
COUNTED_AS = {
    PRESENT: "present",
    RECOVERED: "recovered",
    UNRECOVERED: "unrecovered",
    CONFLICT: "conflicts",
}
# Why central may be unable to take a lost sale again; the sale is then kept for review.
REVIEWED = (InsufficientStock, UnknownSku, InactiveSku, OutsideRecoveryWindow)
LEDGER_NOTE = "recovered"


@dataclass(frozen=True)
class Settled:
    """What became of one sale sent back: for `unrecovered` and `conflict`, the code and
    message of why."""

    sale: HeldSale
    outcome: str
    order: dict[str, Any] | None = None
    code: str | None = None
    message: str | None = None

    @classmethod
    def refused(
        cls, sale: HeldSale, outcome: str, refusal: WireError, order: dict[str, Any] | None
    ) -> Settled:
        return cls(sale, outcome, order, refusal.code, refusal.message)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.sale.id,
            "idempotency_key": self.sale.idempotency_key,
            "outcome": self.outcome,
            "code": self.code,
            "message": self.message,
            "order": self.order,
        }


def recover_orders(uow: UnitOfWork, principal: Principal, raw_orders: object) -> dict[str, Any]:
    store_id = _recovering_store(principal)
    with use_case("order.recover", store_id=store_id) as span:
        sales = held_sales(raw_orders)
        epoch, window = _restore_window(uow)
        settled = [_settle(uow, principal, store_id, window, sale) for sale in sales]
        tracing.annotate(span, epoch=epoch, orders=len(sales), **_counts(settled))
    return {"epoch": epoch, "items": [item.view() for item in settled]}


def _counts(settled: list[Settled]) -> dict[str, int]:
    """How many sales came to each outcome, as the span's attributes name them."""
    return {
        COUNTED_AS[outcome]: sum(item.outcome == outcome for item in settled)
        for outcome in OUTCOMES
    }


def _recovering_store(principal: Principal) -> str:
    if principal.role != Role.STORE or principal.store_id is None:
        raise Forbidden("sales are sent back by a store's API key")
    return principal.store_id


def _restore_window(uow: UnitOfWork) -> tuple[int, RecoveryWindow]:
    """The current epoch and its window; NotRestored while the database is at its first."""
    epoch = current_epoch(uow.db)
    if epoch <= INITIAL_EPOCH:
        raise NotRestored(epoch=epoch)
    with uow.db.connection_context():
        row = Epoch.get(Epoch.epoch == epoch)
    return epoch, RecoveryWindow.of_epoch(row.started_at, row.cause, row.backup_created_at)


def _settle(
    uow: UnitOfWork, principal: Principal, store_id: str, window: RecoveryWindow, sale: HeldSale
) -> Settled:
    try:
        return _settle_once(uow, principal, store_id, window, sale)
    except peewee.IntegrityError:
        # A concurrent request (another recover, or the store's POST /orders) committed an
        # order under this key or id first; ours rolled back before touching stock. The
        # second look finds that order and answers from it, so nothing is sold twice.
        return _settle_once(uow, principal, store_id, window, sale)


def _settle_once(
    uow: UnitOfWork, principal: Principal, store_id: str, window: RecoveryWindow, sale: HeldSale
) -> Settled:
    def settle() -> Settled:
        held = Order.get_or_none(
            Order.store_id == store_id, Order.idempotency_key == sale.idempotency_key
        )
        if held is not None:
            return _present(uow, principal, held, sale)
        if Order.get_or_none(Order.id == sale.id) is not None:
            return Settled.refused(sale, CONFLICT, OrderIdTaken(order_id=sale.id), None)
        return _take_again(uow, principal, store_id, window, sale)

    return uow.run(settle)


def _present(uow: UnitOfWork, principal: Principal, held: Order, sale: HeldSale) -> Settled:
    """Central holds an order under the sale's key: the same sale, or another one's key."""
    if held.fingerprint != sale.fingerprint:
        return Settled.refused(sale, CONFLICT, IdempotencyMismatch(order_id=held.id), None)
    if held.status == rules.UNRECOVERED:
        # Sent again: still for review (a retry neither sells it nor records it twice).
        order = orders.order_view(held)
        return Settled(sale, UNRECOVERED, order, held.review_code, held.review_message)
    if sale.cancelled_at is not None and held.status == rules.CONFIRMED:
        # The store's copy was cancelled after the backup: cancel it here too, under the
        # row's lock (it may have been cancelled since it was read).
        locked = orders.locked_order(held.id)
        assert locked is not None  # an order is never deleted
        orders.cancel_locked(uow, principal, locked)
        held = locked
    return Settled(sale, PRESENT, orders.order_view(held))


def _take_again(
    uow: UnitOfWork, principal: Principal, store_id: str, window: RecoveryWindow, sale: HeldSale
) -> Settled:
    """The order row goes first, under the sale's id and key: a concurrent request for the
    same key waits on the unique index here, before any stock is touched."""
    now = uow.clock.now()
    cancelled = sale.cancelled_at is not None
    order = Order.create(
        id=sale.id,
        store_id=store_id,
        status=rules.CANCELLED if cancelled else rules.CONFIRMED,
        idempotency_key=sale.idempotency_key,
        fingerprint=sale.fingerprint,
        created_by=principal.actor,
        created_at=sale.created_at,
        cancelled_at=sale.cancelled_at,
        cancelled_by=principal.actor if cancelled else None,
        recovered_at=now,
    )
    try:
        window.check(sale.created_at)
        if cancelled:
            # Its stock came back when central cancelled it: nothing moves now.
            rows = _lines_at_current_levels(order.id, sale)
        else:
            orders.sellable_prices(sale.lines)
            rows = orders.take_stock(
                uow, principal, order, sale.lines, sale.unit_prices, now, LEDGER_NOTE
            )
    except REVIEWED as refusal:
        return _left_for_review(order, sale, refusal)
    return Settled(sale, RECOVERED, orders.view_of(order, rows))


def _left_for_review(order: Order, sale: HeldSale, refusal: WireError) -> Settled:
    """Recorded `unrecovered` with why, its lines at the unit prices sent; no stock moved
    (every refusal in REVIEWED comes before the first stock write) and no event: the store
    holds the sale already, and an operator reviews it (GET /orders?status=unrecovered)."""
    order.status = rules.UNRECOVERED
    order.cancelled_at = order.cancelled_by = order.recovered_at = None
    order.review_code, order.review_message = refusal.code, refusal.message
    order.review_details = json.dumps(refusal.details, sort_keys=True)
    order.save()
    rows = _lines_at_current_levels(order.id, sale)
    return Settled.refused(sale, UNRECOVERED, refusal, orders.view_of(order, rows))


def _lines_at_current_levels(order_id: str, sale: HeldSale) -> list[OrderLine]:
    """The sale's lines with each SKU's stock as it is now (0 at version 0 for a SKU central
    does not know): no stock moves for them."""
    levels = {row.sku: row for row in Stock.select().where(Stock.sku.in_(_skus(sale)))}
    rows = [
        OrderLine(
            order_id=order_id,
            sku=line.sku,
            quantity=line.quantity,
            unit_price=sale.unit_prices[line.sku],
            stock_after=levels[line.sku].quantity if line.sku in levels else 0,
            stock_version=levels[line.sku].version if line.sku in levels else 0,
        )
        for line in sale.lines
    ]
    OrderLine.insert_many([row.__data__ for row in rows]).execute()
    return rows


def _skus(sale: HeldSale) -> list[str]:
    return [line.sku for line in sale.lines]


def unrecovered_count(uow: UnitOfWork) -> int:
    """Unrecovered orders now: sales left for an operator to review (a metric)."""
    with uow.db.connection_context():
        return int(Order.select().where(Order.status == rules.UNRECOVERED).count())
