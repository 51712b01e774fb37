"""Sales under this store's allowances, as the order desk and the replayer use them.

Selling: the grants' cover is checked, the sale marked `allowance` and its debits recorded
in one BEGIN IMMEDIATE replica transaction: two tills never both sell the same units, and a
crash leaves either the sale with its debits or neither (the till then had no answer, and
its retry with the same key sells it once).

Order: while a sale under grants waits to be replayed, no new sale is sent to central before
it (central's online orders draw on the store's live grants, and central cannot see sales it
has not been told of): the till's sale takes the offline path instead, behind it in the queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from invwire.logs import EventLog
from invwire.orders import Line
from storeagent.clock import Clock, utc_now
from storeagent.replica.allowances import Allowances, Debit, by_sku
from storeagent.replica.local_orders import LocalOrders
from storeagent.sales import allowance_cover
from storeagent.sales.allowance_cover import Cover
from storeagent.upstream.client import DEFAULT_MARGIN_S, CentralUnavailable

REPLAY_PENDING = "allowance.replay_pending"  # the reason a sale was not sent to central


class AllowanceSales:
    def __init__(
        self,
        allowances: Allowances,
        orders: LocalOrders,
        *,
        central_time: Clock = utc_now,
        poke: Callable[[], None] = lambda: None,
        log: EventLog | None = None,
    ) -> None:
        """`central_time`: the agent's estimate of central's clock; `poke`: ask the keeper
        to fetch the grants again soon."""
        self._allowances, self._orders = allowances, orders
        self._central_time, self._poke = central_time, poke
        self._log = log or EventLog("storeagent.allowances")

    def replay_first(self) -> CentralUnavailable | None:
        """Why a new sale may not go to central now (sales under grants wait), or None."""
        if self._orders.allowance_sales() == 0:
            return None
        self._poke()  # a fetch central answers wakes the replayer (allowance_keeper)
        return CentralUnavailable(
            "sales made under allowances are replayed to central first", reason=REPLAY_PENDING
        )

    def sell(self, local_ref: str, lines: Sequence[Line], exc: CentralUnavailable) -> str | None:
        """Sell the sale under grants if they cover every line (the caller holds the
        transaction); None when sold, else the reason it was not."""
        if exc.maybe_sent:  # central may hold it already: not final here
            return allowance_cover.OUTCOME_UNKNOWN
        found = self._cover(lines)
        if isinstance(found, str):
            return found
        self._allowances.debit(
            [Debit(local_ref, found.grants[line.sku], line.sku, line.quantity) for line in lines]
        )
        self._orders.sell_under_allowance(local_ref, exc.code, exc.message)
        return None

    def grants_of(self, local_ref: str) -> dict[str, str]:
        """The grant each SKU of a sale was sold under (empty: not an allowance sale)."""
        return {debit.sku: debit.grant_id for debit in self._allowances.debits_of(local_ref)}

    def replayed(self, local_ref: str) -> None:
        """Central booked the sale (the caller holds the transaction)."""
        self._allowances.replayed(local_ref)

    def booked(self, local_ref: str, central_order: Mapping[str, Any]) -> None:
        """Central's answer to a sale: what it took from the store's grants (`allowances`)
        counts against them at once (the caller holds the transaction)."""
        draws = [
            Debit(local_ref, str(draw["grant_id"]), str(draw["sku"]), int(draw["units"]))
            for draw in central_order.get("allowances") or ()
            if isinstance(draw, Mapping)
        ]
        self._allowances.drawn_online(local_ref, draws)

    def left_by_sku(self) -> dict[str, int]:
        """Units this store may still sell under its live grants, by SKU (central lets its
        online orders draw on them too)."""
        left: dict[str, int] = {}
        for use in self._allowances.uses():
            left[use.grant.sku] = left.get(use.grant.sku, 0) + use.left
        return left

    def sold_online(self, skus: Iterable[str]) -> None:
        """An online sale: fetch the grants again soon when it may have drawn on one."""
        held = {use.grant.sku for use in self._allowances.uses()}
        if held.intersection(skus):
            self._poke()

    def _cover(self, lines: Sequence[Line]) -> Cover | str:
        return allowance_cover.cover(
            lines,
            by_sku(self._allowances.uses()),
            now=self._now(),
            margin_s=self._allowances.margin_s(DEFAULT_MARGIN_S),
        )

    def _now(self) -> datetime:
        return self._central_time()
