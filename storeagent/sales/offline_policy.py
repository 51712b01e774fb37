"""The store's offline policy: whether a sale may be queued while central is unreachable.

Pure: standard library only. A queued sale is handed to the customer before central has
reserved its stock, so the policy bounds what the store can oversell: a per-sale and a total
limit on queued units, and the replica's stock less the units of the sales already queued.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from storeagent.sales.rules import Line, Product

OFF_REFUSAL = "offline.off"
NO_CENTRAL = "offline.no_central"
ORDER_TOO_LARGE = "offline.order_too_large"
QUEUE_FULL = "offline.queue_full"
STOCK_SHORT = "offline.stock_short"
# Unavailability that no replay can cure: the agent has no central to send the sale to.
NOT_REPLAYABLE = frozenset({"not_configured"})


@dataclass(frozen=True)
class OfflinePolicy:
    enabled: bool = False
    max_units_per_order: int = 20
    max_queued_units: int = 200  # across every queued sale of the store
    max_age_s: int = 3600  # a queued sale older than this is reported overdue

    def summary(self) -> dict[str, object]:
        return {
            "offline": "on" if self.enabled else "off",
            "offline_max_units_per_order": self.max_units_per_order,
            "offline_max_queued_units": self.max_queued_units,
            "offline_max_age_s": self.max_age_s,
        }


DEFAULT_POLICY = OfflinePolicy()


@dataclass(frozen=True)
class QueueRefusal:
    """Why a sale was not queued offline (the till then gets 503 `central.unavailable`)."""

    code: str
    message: str

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


OFF = QueueRefusal(OFF_REFUSAL, "offline mode is off for this store")


def units(lines: Sequence[Line]) -> int:
    return sum(line.quantity for line in lines)


def queued_units_by_sku(queued_sales: Sequence[Sequence[Line]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for lines in queued_sales:
        for line in lines:
            totals[line.sku] = totals.get(line.sku, 0) + line.quantity
    return totals


def less_queued(products: Mapping[str, Product], queued: Mapping[str, int]) -> dict[str, Product]:
    """What a new sale may take: the replica's stock less the units of the queued sales,
    which the customers already took home."""
    return {sku: Product(p.active, p.quantity - queued.get(sku, 0)) for sku, p in products.items()}


def queue_refusal(
    policy: OfflinePolicy,
    lines: Sequence[Line],
    *,
    available: Mapping[str, Product],
    queued_units: int,
    unavailable_reason: str | None = None,
) -> QueueRefusal | None:
    """None when the sale may be queued; `available` is the replica less the queued sales."""
    if not policy.enabled:
        return OFF
    if unavailable_reason in NOT_REPLAYABLE:
        return QueueRefusal(NO_CENTRAL, "no central is configured to replay the sale to")
    wanted = units(lines)
    if wanted > policy.max_units_per_order:
        return QueueRefusal(
            ORDER_TOO_LARGE,
            f"the sale has {wanted} units; at most {policy.max_units_per_order} per sale "
            "may be sold offline",
        )
    if queued_units + wanted > policy.max_queued_units:
        return QueueRefusal(
            QUEUE_FULL,
            f"{queued_units} units are queued offline already; at most "
            f"{policy.max_queued_units} may be",
        )
    short = [line.sku for line in lines if not _in_stock(available.get(line.sku), line.quantity)]
    if short:
        return QueueRefusal(
            STOCK_SHORT,
            "the replica, less the sales queued offline, shows too little stock for "
            + ", ".join(short),
        )
    return None


def _in_stock(product: Product | None, quantity: int) -> bool:
    return product is not None and product.active and product.quantity >= quantity
