"""Sales at the store: the replica-first stock check and the local order's states.

Pure: standard library and the contract only. Line rules, the request fingerprint and the
refusal codes are the contract's (invwire), so a refusal reads the same whether the agent
or central made it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from invwire.errors import InactiveSku, InvalidIdempotencyKey, UnknownSku
from invwire.errors.agent import AgentError
from invwire.orders import (
    STORE_STATUSES,
    UNRECOVERED,
    Line,
    fingerprint,
    require_stock,
    valid_lines,
)
from invwire.rules import is_idempotency_key

__all__ = ["UNRECOVERED", "Line", "fingerprint", "valid_lines"]

PENDING = "pending"  # persisted, central not yet answered (or the agent stopped meanwhile)
CONFIRMED = "confirmed"
REJECTED = "rejected"
FAILED = "failed"  # central unreachable; a replay with the same key tries again
QUEUED = "queued"  # accepted offline: the customer has the goods; replayed when central is back
# sold offline under central's allowances (docs/offline.md): final, replayed when central is
# back, and never refused there
ALLOWANCE = "allowance"
STATUSES = (PENDING, CONFIRMED, REJECTED, FAILED, QUEUED, ALLOWANCE, UNRECOVERED)
WAITING = (QUEUED, ALLOWANCE)  # sold offline, central not told yet
# UNRECOVERED: confirmed, then lost by a restored central that could not take it again
# (sales.recovery): the customer has the goods, the sale waits for review at central.
VOIDED = "order.voided"  # the reason of a failed sale that central had recorded: cancelled there
# The reason of a failed sale whose outcome the replica could not record: its till was told it
# failed, so it is voided (never completed); the replayer cancels any copy central holds.
NOT_RECORDED = "order.not_recorded"
# The reason of a failed sale whose key central already held from another agent or till.
KEY_CONFLICT = "order.key_conflict"
VOIDED_OUTCOME = "voided"  # details.outcome of an answer for a sale that will not happen
NOT_SENT_OUTCOME = "not_sent"  # details.outcome when nothing was saved nor sent
# A confirmed sale that central cancelled later shows `cancelled` (replica.order_status);
# GET /orders filters by the status shown.
CANCELLED = "cancelled"
FILTER_STATUSES = STORE_STATUSES


class OrderInProgress(AgentError):
    """This sale is being resolved with central right now; try again in a moment."""

    code = "order.in_progress"
    status = 409


class OrderVoided(AgentError):
    """This sale failed, and the copy central had recorded was cancelled there; ring it up
    again with a new Idempotency-Key."""

    code = "order.voided"
    status = 409


class KeyConflict(AgentError):
    """Central already holds an order under this Idempotency-Key that this agent never sent:
    another agent or till uses the same key. Nothing was sold here; ring the sale up again
    with a new key, and make sure only one agent runs for this store."""

    code = KEY_CONFLICT
    status = 409


class OutcomeNotRecorded(AgentError):
    """The replica could not record this sale's outcome, so the sale is void: it will not
    happen, and any copy central holds is cancelled. Ring it up again with a new
    Idempotency-Key."""

    code = "database.unavailable"
    status = 503


class SaleNotSaved(AgentError):
    """The replica database is unavailable: the sale was neither saved nor sent to central,
    and nothing was sold. Try again shortly."""

    code = "database.unavailable"
    status = 503


class SaleNotFound(AgentError):
    """No sale of this store has that local reference or order id."""

    code = "order.not_found"
    status = 404


class SaleAmbiguous(AgentError):
    """More than one sale starts with that reference; give more of it."""

    code = "order.ambiguous"
    status = 409


class NothingToCancel(AgentError):
    """This sale has no order at central to cancel."""

    code = "order.not_placed"
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


def orphaned(sale_instance: str | None, this_instance: str) -> bool:
    """Whether a `pending` sale no till is sending was left by another agent process: one
    that stopped before it answered the till (the till saw the agent vanish), so the sale is
    completed with its key. A pending sale of this very process was answered with an error
    (its outcome could not be recorded), so it is voided, never completed. Sales saved before
    agents had instance ids (None) predate this process."""
    return sale_instance != this_instance


def foreign_replay(replayed: bool, first_send: bool) -> bool:
    """Whether central's answer belongs to another sale: central replayed an order for a key
    this agent never sent before (the sale is new to the replica and no earlier attempt of
    this request may have reached central). Another agent or till uses the same key."""
    return replayed and first_send


def valid_status(raw: str | None) -> str | None:
    if raw is not None and raw not in FILTER_STATUSES:
        raise InvalidStatus(f"status is one of {', '.join(FILTER_STATUSES)}", field="status")
    return raw


def cancel_refusal(status: str, order_id: str | None, local_ref: str) -> AgentError | None:
    """Why a sale cannot be cancelled at central, or None when it can: only a sale central
    confirmed has an order there (a voided one too: cancelling it again changes nothing)."""
    if order_id is not None:
        return None
    if status == PENDING:
        return OrderInProgress(
            "this sale is being sent to central right now; try again in a moment",
            local_ref=local_ref,
        )
    why = {
        QUEUED: "it is queued offline and central has no order for it yet; cancel it once "
        "it is confirmed",
        ALLOWANCE: "it was sold offline under an allowance and central has no order for it "
        "yet; cancel it once it is confirmed",
        REJECTED: "central refused it: nothing was sold",
        FAILED: "it failed: nothing was sold",
    }.get(status, f"it is {status}")
    return NothingToCancel(f"sale {local_ref} has no order at central: {why}", local_ref=local_ref)
