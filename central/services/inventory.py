"""Inventory use cases: read, set and adjust stock, each change with its ledger row and event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from central.db import locked
from central.domain.catalog import refused_index
from central.domain.stock import StockLevel, valid_delta, valid_quantity
from central.models import Movement, Stock, as_utc
from central.rows import RowInsert
from central.services.principal import Principal
from central.uow import UnitOfWork
from invwire.errors.central import InvalidInput, ProductNotFound
from invwire.events import StockChanged

MAX_NOTE = 500
ADJUST_REASONS = ("adjust", "import")


def stock_view(stock: Stock) -> dict[str, Any]:
    return {
        "sku": stock.sku,
        "quantity": stock.quantity,
        "stock_version": stock.version,
        "updated_at": as_utc(stock.updated_at),
    }


def get_stock(uow: UnitOfWork, sku: str) -> dict[str, Any]:
    with uow.db.connection_context():
        stock = Stock.get_or_none(Stock.sku == sku)
        if stock is None:
            raise ProductNotFound(sku=sku)
        return stock_view(stock)


def set_stock(
    uow: UnitOfWork, principal: Principal, sku: str, quantity: object, note: str = ""
) -> dict[str, Any]:
    target = valid_quantity(quantity)
    stock, _ = uow.run(lambda: set_in_tx(uow, principal, sku, target, "set", _note(note)))
    return stock_view(stock)


def set_in_tx(
    uow: UnitOfWork, principal: Principal, sku: str, target: int, reason: str, note: str = ""
) -> tuple[Stock, bool]:
    """Set stock inside the caller's open unit of work; returns the row and whether it changed."""
    stock = _locked_stock(sku)
    level, event = _level(stock).set_to(target, reason)
    if event is not None:
        _save(uow, stock, level, event, principal, note)
    return stock, event is not None


def adjust_stock(
    uow: UnitOfWork,
    principal: Principal,
    sku: str,
    delta: object,
    reason: str = "adjust",
    note: str = "",
) -> dict[str, Any]:
    amount = valid_delta(delta)
    if reason not in ADJUST_REASONS:
        raise InvalidInput(f"reason must be one of {', '.join(ADJUST_REASONS)}", field="reason")

    def adjust() -> Stock:
        stock = _locked_stock(sku)
        level, event = _level(stock).adjusted(amount, reason)
        _save(uow, stock, level, event, principal, _note(note))
        return stock

    return stock_view(uow.run(adjust))


def movements(uow: UnitOfWork, sku: str, limit: int = 100, before: int = 0) -> list[dict[str, Any]]:
    with uow.db.connection_context():
        if Stock.get_or_none(Stock.sku == sku) is None:
            raise ProductNotFound(sku=sku)
        query = Movement.select().where(Movement.sku == sku)
        if before:
            query = query.where(Movement.id < before)
        rows = query.order_by(Movement.id.desc()).limit(max(1, min(limit, 1000)))
        return [_movement_view(m) for m in rows]


def _locked_stock(sku: str) -> Stock:
    stock = locked(Stock.select().where(Stock.sku == sku)).get_or_none()
    if stock is None:
        raise ProductNotFound(sku=sku)
    return stock


def _level(stock: Stock) -> StockLevel:
    return StockLevel(stock.sku, stock.quantity, stock.version)


def _save(
    uow: UnitOfWork,
    stock: Stock,
    level: StockLevel,
    event: StockChanged,
    principal: Principal,
    note: str,
) -> None:
    now = uow.clock.now()
    stock.quantity, stock.version, stock.updated_at = level.quantity, level.version, now
    stock.save()
    Movement.create(**movement_row(event, principal, note, now))
    uow.record(event)


# the columns movement_row fills, for the order path's multi-row insert (central.rows)
LEDGER_COLUMNS = "sku delta quantity stock_version reason order_id actor note created_at"
LEDGER_ROWS = RowInsert(Movement, LEDGER_COLUMNS.split())


def movement_row(
    event: StockChanged, principal: Principal, note: str, now: datetime
) -> dict[str, Any]:
    return {
        "sku": event.sku,
        "delta": event.delta,
        "quantity": event.quantity,
        "stock_version": event.stock_version,
        "reason": event.reason,
        "order_id": event.order_id,
        "actor": principal.actor,
        "note": note,
        "created_at": now,
    }


def _note(note: str | None) -> str:
    text = (note or "").strip()
    if len(text) > MAX_NOTE:
        raise InvalidInput(f"note is longer than {MAX_NOTE} characters", field="note")
    index = refused_index(note or "", text)
    if index is not None:  # the ledger is shown on terminals (invctl stock movements)
        raise InvalidInput(
            f"note holds a control or format character at index {index}", field="note", index=index
        )
    return text


def _movement_view(m: Movement) -> dict[str, Any]:
    return {
        "id": m.id,
        "at": as_utc(m.created_at),
        "actor": m.actor,
        "reason": m.reason,
        "delta": m.delta,
        "quantity": m.quantity,
        "stock_version": m.stock_version,
        "order_id": m.order_id,
        "note": m.note,
    }
