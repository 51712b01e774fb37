"""Sales at the store: line rules (the same as central's), the request fingerprint, the
replica-first stock check and the local order's states.

Pure: standard library only. Codes and statuses match central's so that a refusal reads
the same whether the agent or central made it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storeagent.errors import AgentError, InvalidSku
from storeagent.events import is_valid_sku

MAX_LINES = 100
MAX_LINE_QUANTITY = 10_000
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")

PENDING = "pending"  # persisted, central not yet answered (or the agent stopped meanwhile)
CONFIRMED = "confirmed"
REJECTED = "rejected"
FAILED = "failed"  # central unreachable; a replay with the same key tries again
QUEUED = "queued"  # accepted offline: the customer has the goods; replayed when central is back
STATUSES = (PENDING, CONFIRMED, REJECTED, FAILED, QUEUED)
VOIDED = "order.voided"  # the reason of a failed sale that central had recorded: cancelled there
# The wire lists `cancelled` for GET /orders; the agent does not learn of cancellations
# yet, so the filter is accepted and matches nothing.
FILTER_STATUSES = (*STATUSES, "cancelled")


class InvalidOrder(AgentError):
    """The order is not valid."""

    code = "order.invalid"
    status = 422


class DuplicateLine(InvalidOrder):
    """The order names the same SKU twice; send one line per SKU."""

    code = "order.duplicate_line"


class UnknownSku(InvalidOrder):
    """The order names a SKU that this store's replica does not know."""

    code = "order.sku_unknown"


class InactiveSku(InvalidOrder):
    """The order names a product that is not for sale."""

    code = "order.sku_inactive"


class InvalidQuantity(AgentError):
    """A line's quantity is a whole number between 1 and 10,000."""

    code = "quantity.invalid"
    status = 422


class InsufficientStock(AgentError):
    """Not enough stock for some lines; nothing was reserved."""

    code = "stock.insufficient"
    status = 409


class InvalidIdempotencyKey(AgentError):
    """An Idempotency-Key is 1-128 printable ASCII characters without spaces."""

    code = "idempotency.key_invalid"
    status = 400


class IdempotencyMismatch(AgentError):
    """This Idempotency-Key was used with different lines."""

    code = "idempotency.mismatch"
    status = 422


class OrderInProgress(AgentError):
    """This sale is being resolved with central right now; try again in a moment."""

    code = "order.in_progress"
    status = 409


class OrderVoided(AgentError):
    """This sale failed, and the copy central had recorded was cancelled there; ring it up
    again with a new Idempotency-Key."""

    code = "order.voided"
    status = 409


class InvalidStatus(AgentError):
    """The status filter is not one of the order states."""

    code = "request.invalid"
    status = 422


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    quantity: int

    def to_wire(self) -> dict[str, Any]:
        return {"sku": self.sku, "quantity": self.quantity}


@dataclass(frozen=True, slots=True)
class Product:
    """What the replica knows of a line's product: whether it is sold, and its stock."""

    active: bool
    quantity: int


def valid_key(raw: str) -> str:
    if not IDEMPOTENCY_KEY.fullmatch(raw):
        raise InvalidIdempotencyKey()
    return raw


def valid_lines(raw: object) -> list[Line]:
    """Lines sorted by SKU, as central sorts them, so equal orders have equal fingerprints."""
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
    if not is_valid_sku(sku):
        raise InvalidSku(sku=str(sku)[:80])
    return Line(sku, quantity)


def fingerprint(lines: list[Line]) -> str:
    canonical = json.dumps([[line.sku, line.quantity] for line in lines], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def needs_stock_check(status: str | None) -> bool:
    """A new or rejected sale is checked against the replica first. A pending or failed one
    may already be reserved at central (and its stock gone from the replica): only central
    can answer for it."""
    return status is None or status == REJECTED


def check_stock(products: Mapping[str, Product], lines: list[Line]) -> None:
    """The fast refusal: what the replica shows already rules the order out."""
    unknown = [line.sku for line in lines if line.sku not in products]
    if unknown:
        raise UnknownSku(skus=unknown)
    inactive = [line.sku for line in lines if not products[line.sku].active]
    if inactive:
        raise InactiveSku(skus=inactive)
    short = [
        {"sku": line.sku, "requested": line.quantity, "available": products[line.sku].quantity}
        for line in lines
        if products[line.sku].quantity < line.quantity
    ]
    if short:
        raise InsufficientStock(lines=short)


def valid_status(raw: str | None) -> str | None:
    if raw is not None and raw not in FILTER_STATUSES:
        raise InvalidStatus(f"status is one of {', '.join(FILTER_STATUSES)}", field="status")
    return raw
