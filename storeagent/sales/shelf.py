"""The replica's stock as a sale sees it: what the replica shows, less the units of the sales
queued offline (their customers took the goods), and central's stock after a confirmed sale,
written back at once so the till reads its own writes."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from storeagent.replica.db import Replica, iso
from storeagent.replica.queries import ReplicaReads
from storeagent.sales import rules
from storeagent.sales.offline_policy import less_queued
from storeagent.upstream.client import Confirmed


class Shelf:
    """On one replica handle; writes join the caller's transaction."""

    def __init__(self, replica: Replica, reads: ReplicaReads) -> None:
        self._replica, self._reads = replica, reads

    def available(
        self, skus: Collection[str], queued: Mapping[str, int]
    ) -> dict[str, rules.Product]:
        """What a new sale may take of `skus`, `queued` being the units queued offline."""
        shown = {
            sku: rules.Product(item.active, item.quantity)
            for sku, item in self._reads.on_hand(skus).items()
        }
        return less_queued(shown, queued)

    def restock(self, result: Confirmed) -> None:
        """Central's stock of each line right after the sale (a versioned upsert, at the
        epoch central answered with; without one, at the newest the replica has seen)."""
        at = iso(result.created_at)
        epoch = self._replica.epoch() if result.epoch is None else result.epoch
        for level in result.stock:
            self._replica.set_stock(
                level.sku, level.quantity, level.stock_version, updated_at=at, epoch=epoch
            )
