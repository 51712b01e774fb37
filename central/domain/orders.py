"""Orders: the key rule, all-or-nothing reservation and release. Line rules and the
request fingerprint are the contract's (invwire.orders), shared with the store agent."""

from __future__ import annotations

from datetime import datetime

from central.domain.stock import StockLevel
from invwire.errors.central import IdempotencyKeyRequired, InvalidInput
from invwire.events import OrderUpdated, StockChanged, order_updated
from invwire.orders import (
    CANCELLED,
    CONFIRMED,
    ORDER_STATUSES,
    UNRECOVERED,
    Line,
    fingerprint,
    require_stock,
    valid_lines,
)
from invwire.rules import is_idempotency_key

__all__ = [
    "CANCELLED",
    "CONFIRMED",
    "UNRECOVERED",
    "Line",
    "fingerprint",
    "known_line_fields",
    "release",
    "reserve",
    "status_changed",
    "valid_key",
    "valid_lines",
]

STATUSES = ORDER_STATUSES  # confirmed, cancelled, unrecovered: the names the store uses too
LINE_FIELDS = frozenset({"sku", "quantity", "grant_id"})  # grant_id: a replayed allowance sale


def valid_key(raw: str | None) -> str:
    if raw is None or not is_idempotency_key(raw):
        raise IdempotencyKeyRequired()
    return raw


def known_line_fields(raw: object) -> None:
    """Refuse a line field central does not know (a misspelt `quantity` must not pass
    unnoticed), in the shape of any other unknown field (central.api.errors)."""
    if not isinstance(raw, list):
        return  # valid_lines says what is wrong with it
    unknown = [
        {"field": f"lines.{index}.{name}", "message": "unknown field"}
        for index, line in enumerate(raw)
        if isinstance(line, dict)
        for name in sorted(set(line) - LINE_FIELDS, key=str)
    ]
    if unknown:
        raise InvalidInput("the request is not valid", errors=unknown)


def reserve(
    levels: dict[str, StockLevel], lines: list[Line], order_id: str
) -> list[tuple[StockLevel, StockChanged]]:
    """Take every line or nothing."""
    require_stock({sku: level.quantity for sku, level in levels.items()}, lines)
    return [levels[line.sku].adjusted(-line.quantity, "order", order_id) for line in lines]


def release(
    levels: dict[str, StockLevel], lines: list[Line], order_id: str
) -> list[tuple[StockLevel, StockChanged]]:
    return [levels[line.sku].adjusted(line.quantity, "cancel", order_id) for line in lines]


def status_changed(
    order_id: str, store_id: str, status: str, cancelled_at: datetime | None
) -> OrderUpdated:
    """What the order's store learns when its status changes after it was placed."""
    return order_updated(order_id, store_id, status, cancelled_at)
