"""Stock levels: every change yields a new version and a StockChanged event."""

from __future__ import annotations

from dataclasses import dataclass

from invwire.errors.central import InvalidQuantity, NegativeStock
from invwire.events import StockChanged
from invwire.rules import MAX_STOCK_QUANTITY

MAX_QUANTITY = MAX_STOCK_QUANTITY  # the contract's bound (invwire.rules)


def valid_quantity(raw: object, *, field: str = "quantity") -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_QUANTITY:
        raise InvalidQuantity(field=field, value=str(raw)[:40])
    return raw


def valid_delta(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw == 0 or abs(raw) > MAX_QUANTITY:
        raise InvalidQuantity(
            "delta is a non-zero whole number within +-1,000,000,000", field="delta"
        )
    return raw


@dataclass(frozen=True)
class StockLevel:
    """`quantity` is what any store may take; `held` what stores' allowances set aside."""

    sku: str
    quantity: int
    version: int
    held: int = 0

    def adjusted(
        self, delta: int, reason: str, order_id: str | None = None
    ) -> tuple[StockLevel, StockChanged]:
        after = self.quantity + delta
        if after < 0:
            raise NegativeStock(sku=self.sku, available=self.quantity, delta=delta)
        if after > MAX_QUANTITY:
            raise InvalidQuantity(field="quantity", value=str(after))
        level = StockLevel(self.sku, after, self.version + 1, self.held)
        return level, StockChanged(self.sku, after, delta, reason, level.version, order_id)

    def set_to(self, quantity: int, reason: str) -> tuple[StockLevel, StockChanged | None]:
        valid_quantity(quantity)
        if quantity == self.quantity:
            return self, None
        level = StockLevel(self.sku, quantity, self.version + 1, self.held)
        event = StockChanged(self.sku, quantity, quantity - self.quantity, reason, level.version)
        return level, event
