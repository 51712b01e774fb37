"""Sales at the store: the replica-first stock check and the local order's states.

Pure: standard library and the contract only. Line rules, the request fingerprint and the
refusal codes are the contract's (invwire), so a refusal reads the same whether the agent
or central made it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from invwire.errors import InactiveSku, InvalidIdempotencyKey, UnknownSku
from invwire.orders import Line, fingerprint, require_stock, valid_lines
from invwire.rules import is_idempotency_key
from storeagent.errors import AgentError

__all__ = ["Line", "fingerprint", "valid_lines"]

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
class Product:
    """What the replica knows of a line's product: whether it is sold, and its stock."""

    active: bool
    quantity: int


def valid_key(raw: str) -> str:
    if not is_idempotency_key(raw):
        raise InvalidIdempotencyKey()
    return raw


def needs_stock_check(status: str | None) -> bool:
    """A new or rejected sale is checked against the replica first. A pending or failed one
    may already be reserved at central (and its stock gone from the replica): only central
    can answer for it."""
    return status is None or status == REJECTED


def check_stock(products: Mapping[str, Product], lines: list[Line]) -> None:
    """The fast refusal: what the replica shows already rules the order out."""
    unknown = [line.sku for line in lines if line.sku not in products]
    if unknown:
        raise UnknownSku("the order names a SKU this store's replica does not know", skus=unknown)
    inactive = [line.sku for line in lines if not products[line.sku].active]
    if inactive:
        raise InactiveSku(skus=inactive)
    require_stock({line.sku: products[line.sku].quantity for line in lines}, lines)


def valid_status(raw: str | None) -> str | None:
    if raw is not None and raw not in FILTER_STATUSES:
        raise InvalidStatus(f"status is one of {', '.join(FILTER_STATUSES)}", field="status")
    return raw
