"""This store's sales as the replica records them (local_orders): the reads the till and the
replayer decide on, and the writes that record an outcome.

Helpers never commit: the caller (OrderDesk, Replayer) holds the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from invwire.orders import Line
from storeagent import order_rules as rules
from storeagent.central_client import Confirmed
from storeagent.clock import Clock, utc_now
from storeagent.models import LocalOrder
from storeagent.offline_rules import less_queued, queued_units_by_sku, units
from storeagent.replica import Replica, iso


@dataclass(frozen=True)
class QueueCounts:
    depth: int
    units: int
    oldest_queued_at: str | None
    rejected: int  # queued offline, then refused by central
    pending: int
    in_doubt: int  # failed, and central may hold them


def lines_of(row: LocalOrder) -> list[Line]:
    return [Line(item["sku"], item["quantity"]) for item in json.loads(str(row.lines))]


class LocalSales:
    def __init__(self, replica: Replica, clock: Clock = utc_now) -> None:
        self._replica, self._clock = replica, clock
        self._lo = replica.m.local_order

    def transaction(self) -> AbstractContextManager[Any]:
        return self._replica.transaction()

    def now(self) -> str:
        return iso(self._clock())

    def by_key(self, key: str) -> LocalOrder | None:
        return self._replica.local_order(key)

    def products(
        self, skus: Collection[str], queued: Mapping[str, int] | None = None
    ) -> dict[str, rules.Product]:
        """What the replica shows of these SKUs, less the units of the sales queued offline
        (`queued`, when the caller has read them already)."""
        prod, stock = self._replica.m.product, self._replica.m.stock
        quantities = {s.sku: s.quantity for s in stock.select().where(stock.sku.in_(skus))}
        shown = {
            p.sku: rules.Product(bool(p.active), quantities.get(p.sku, 0))
            for p in prod.select().where(prod.sku.in_(skus))
        }
        return less_queued(shown, self.queued_units() if queued is None else queued)

    def queued_units(self) -> dict[str, int]:
        return queued_units_by_sku([lines_of(row) for row in self._with_status(rules.QUEUED)])

    def counts(self) -> QueueCounts:
        queued = list(self._with_status(rules.QUEUED))
        return QueueCounts(
            depth=len(queued),
            units=sum(units(lines_of(row)) for row in queued),
            oldest_queued_at=min((str(row.queued_at) for row in queued), default=None),
            rejected=self.rejected_offline(),
            pending=int(self._with_status(rules.PENDING).count()),
            in_doubt=int(self._with_status(rules.FAILED).where(self._lo.outcome_unknown).count()),
        )

    def rejected_offline(self) -> int:
        lo = self._lo
        query = lo.select().where((lo.status == rules.REJECTED) & lo.queued_at.is_null(False))
        return int(query.count())

    def queue_depth(self) -> int:
        return int(self._with_status(rules.QUEUED).count())

    def next_to_replay(self, skip: Collection[str]) -> LocalOrder | None:
        """The oldest sale to send again: queued offline, or left pending by an agent that
        stopped before recording central's answer (`skip`: keys a till is sending now)."""
        lo = self._lo
        query = lo.select().where(lo.status.in_([rules.QUEUED, rules.PENDING]))
        if skip:
            query = query.where(lo.idempotency_key.not_in(list(skip)))
        return query.order_by(lo.seq).first()

    def next_to_void(self, failed_before: str, skip: Collection[str]) -> LocalOrder | None:
        """The oldest failed sale that may be at central, failed before `failed_before`."""
        lo = self._lo
        query = lo.select().where(
            (lo.status == rules.FAILED) & lo.outcome_unknown & (lo.updated_at < failed_before)
        )
        if skip:
            query = query.where(lo.idempotency_key.not_in(list(skip)))
        return query.order_by(lo.seq).first()

    def add(self, **fields: Any) -> None:
        self._replica.add_local_order(**fields)

    def update(self, local_ref: str, **fields: Any) -> None:
        self._replica.update_local_order(local_ref, **fields)

    def confirm(self, local_ref: str, result: Confirmed) -> None:
        """Central's order, and the stock it left, which the replica shows at once."""
        at = iso(result.created_at)
        for level in result.stock:
            self._replica.set_stock(level.sku, level.quantity, level.stock_version, updated_at=at)
        self.record(
            local_ref,
            rules.CONFIRMED,
            order_id=result.order_id,
            central_order=json.dumps(result.order),
        )

    def record(
        self,
        local_ref: str,
        status: str,
        *,
        code: str | None = None,
        message: str | None = None,
        **fields: Any,
    ) -> None:
        """Set the sale's status and reason; a sale that central answered is no longer in
        doubt (outcome_unknown is only kept for failed ones when the caller says so)."""
        fields.setdefault("outcome_unknown", False)
        self._replica.update_local_order(
            local_ref,
            status=status,
            reason_code=code,
            reason_message=message,
            updated_at=self.now(),
            **fields,
        )

    def _with_status(self, status: str) -> Any:
        return self._lo.select().where(self._lo.status == status)
