"""Order lines as both central and the agent accept them, and the request fingerprint
that tells a replay (same key, same lines) from a misuse (same key, other lines)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from invwire.errors import (
    DuplicateLine,
    InsufficientStock,
    InvalidOrder,
    InvalidQuantity,
    InvalidSku,
)
from invwire.rules import MAX_LINE_QUANTITY, MAX_LINES, is_sku

# Order statuses: the same name means the same thing at central and at the store.
CONFIRMED = "confirmed"  # central reserved the stock
CANCELLED = "cancelled"  # central released it again
CENTRAL_STATUSES = (CONFIRMED, CANCELLED)  # the statuses an `order.updated` event carries
# A sale a store had confirmed that a restored central lost and could not take again (its
# stock was sold meanwhile, ...): recorded for review, no stock taken. An admin's cancel
# closes it (`cancelled`, a later status than this one).
UNRECOVERED = "unrecovered"
ORDER_STATUSES = (CONFIRMED, CANCELLED, UNRECOVERED)  # what central lists and filters by
# An order's status at central only moves forward (confirmed, then maybe cancelled): a later
# status has a higher number, the `version` of an `order.updated` event.
STATUS_VERSIONS = {CONFIRMED: 1, CANCELLED: 2}
# A sale at the store also has the states before central confirmed it (sales.rules): saved and
# sent but not answered, queued offline, refused by central, failed (central unreachable).
STORE_STATUSES = (
    "pending",
    CONFIRMED,
    CANCELLED,
    "queued",
    "allowance",
    "rejected",
    "failed",
    UNRECOVERED,
)


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    quantity: int
    # the store's allowance a sale made under it is booked against (a replayed offline sale)
    grant_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"sku": self.sku, "quantity": self.quantity}
        if self.grant_id is not None:
            wire["grant_id"] = self.grant_id
        return wire


def valid_lines(raw: object) -> list[Line]:
    """Lines sorted by SKU: equal orders get equal fingerprints, and central locks stock rows
    in this order, so two orders never wait for each other's rows in opposite orders."""
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
    sku = item.get("sku", "")
    if not is_sku(sku):
        raise InvalidSku(sku=str(sku)[:80])
    return Line(sku, quantity, _grant_id(item.get("grant_id")))


def _grant_id(raw: object) -> str | None:
    """An allowance's id as a UUID in its canonical text, or None when the line names none."""
    if raw is None:
        return None
    try:
        if not isinstance(raw, str):
            raise ValueError(raw)
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidOrder("grant_id is an allowance's id (a UUID)", field="grant_id") from None


def fingerprint(lines: list[Line]) -> str:
    # a line without a grant keeps the fingerprint it had before grants existed
    canonical = json.dumps([_print(line) for line in lines], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _print(line: Line) -> list[object]:
    if line.grant_id is None:
        return [line.sku, line.quantity]
    return [line.sku, line.quantity, line.grant_id]


def require_stock(available: Mapping[str, int], lines: list[Line]) -> None:
    """All lines or none: a refusal names each short line and what is available."""
    short = [
        {"sku": line.sku, "requested": line.quantity, "available": available[line.sku]}
        for line in lines
        if available[line.sku] < line.quantity
    ]
    if short:
        raise InsufficientStock(lines=short)
