"""Orders: line rules, the request fingerprint, all-or-nothing reservation and release."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from central.domain.catalog import valid_sku
from central.domain.events import StockChanged
from central.domain.stock import StockLevel
from central.errors import (
    DuplicateLine,
    IdempotencyKeyRequired,
    InsufficientStock,
    InvalidOrder,
    InvalidQuantity,
)

MAX_LINES = 100
MAX_LINE_QUANTITY = 10_000
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")

CONFIRMED = "confirmed"
CANCELLED = "cancelled"
STATUSES = (CONFIRMED, CANCELLED)


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


def valid_key(raw: str | None) -> str:
    if raw is None or not IDEMPOTENCY_KEY.fullmatch(raw):
        raise IdempotencyKeyRequired()
    return raw


def valid_lines(raw: object) -> list[Line]:
    """Lines sorted by SKU: the order in which stock rows are locked, so two orders never
    wait for each other's rows in opposite orders."""
    if not isinstance(raw, list) or not raw:
        raise InvalidOrder("an order has at least one line")
    if len(raw) > MAX_LINES:
        raise InvalidOrder(f"an order has at most {MAX_LINES} lines")
    lines = [_line(item) for item in raw]
    skus = [line.sku for line in lines]
    if len(set(skus)) != len(skus):
        raise DuplicateLine(skus=sorted({s for s in skus if skus.count(s) > 1}))
    return sorted(lines, key=lambda line: line.sku)


def _line(item: object) -> Line:
    if not isinstance(item, dict):
        raise InvalidOrder("each line is an object with sku and quantity")
    quantity = item.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise InvalidQuantity("quantity must be a whole number", field="quantity")
    if not 1 <= quantity <= MAX_LINE_QUANTITY:
        raise InvalidQuantity(
            f"quantity must be between 1 and {MAX_LINE_QUANTITY}", field="quantity"
        )
    return Line(valid_sku(item.get("sku", "")), quantity)


def fingerprint(lines: list[Line]) -> str:
    canonical = json.dumps([[line.sku, line.quantity] for line in lines], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


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
