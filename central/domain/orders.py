"""Orders: the key rule, all-or-nothing reservation and release. Line rules and the
request fingerprint are the contract's (invwire.orders), shared with the store agent."""

from __future__ import annotations

from central.domain.stock import StockLevel
from central.errors import IdempotencyKeyRequired
from invwire.events import StockChanged
from invwire.orders import Line, fingerprint, require_stock, valid_lines
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
    """Take every line or nothing."""
    require_stock({sku: level.quantity for sku, level in levels.items()}, lines)
    return [levels[line.sku].adjusted(-line.quantity, "order", order_id) for line in lines]


def release(
    levels: dict[str, StockLevel], lines: list[Line], order_id: str
) -> list[tuple[StockLevel, StockChanged]]:
    return [levels[line.sku].adjusted(line.quantity, "cancel", order_id) for line in lines]
