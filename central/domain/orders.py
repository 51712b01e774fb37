"""Orders: the key rule, all-or-nothing reservation and release. Line rules and the
request fingerprint are the contract's (invwire.orders), shared with the store agent."""

from __future__ import annotations

from central.domain.stock import StockLevel
from central.errors import IdempotencyKeyRequired, InsufficientStock
from invwire.events import StockChanged
from invwire.orders import Line, fingerprint, valid_lines
from invwire.rules import is_idempotency_key

__all__ = ["Line", "fingerprint", "release", "reserve", "valid_key", "valid_lines"]

CONFIRMED = "confirmed"
CANCELLED = "cancelled"
STATUSES = (CONFIRMED, CANCELLED)


def valid_key(raw: str | None) -> str:
    if raw is None or not is_idempotency_key(raw):
        raise IdempotencyKeyRequired()
    return raw


def reserve(
    levels: dict[str, StockLevel], lines: list[Line], order_id: str
) -> list[tuple[StockLevel, StockChanged]]:
    """Take every line or nothing; a refusal names each short line and what is available."""
    short = [
        {"sku": line.sku, "requested": line.quantity, "available": levels[line.sku].quantity}
        for line in lines
        if levels[line.sku].quantity < line.quantity
    ]
    if short:
        raise InsufficientStock(lines=short)
    return [levels[line.sku].adjusted(-line.quantity, "order", order_id) for line in lines]


def release(
    levels: dict[str, StockLevel], lines: list[Line], order_id: str
) -> list[tuple[StockLevel, StockChanged]]:
    return [levels[line.sku].adjusted(line.quantity, "cancel", order_id) for line in lines]
