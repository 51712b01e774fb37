"""The product list's filters, as central's `GET /api/v1/products` applies them to its
tables and the agent's `GET /products` to its replica's: one meaning on both sides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProductFilter:
    """Which products a list shows: of one category, whose SKU or name holds `search`
    (letters in any case), whose stock is at most `low_stock`."""

    category_id: int | None = None
    search: str = ""
    low_stock: int | None = None

    def conditions(self, *, category: Any, sku: Any, name: Any, quantity: Any) -> list[Any]:
        """The filters as peewee conditions on the caller's columns (none: every product)."""
        from peewee import fn  # invwire imports no third-party library at import time

        conditions: list[Any] = []
        if self.category_id is not None:
            conditions.append(category == self.category_id)
        if self.search:
            # INSTR, not LIKE: a `%` or `_` typed by someone searching means itself.
            in_sku = fn.INSTR(sku, self.search.upper()) > 0
            in_name = fn.INSTR(fn.LOWER(name), self.search.lower()) > 0
            conditions.append(in_sku | in_name)
        if self.low_stock is not None:
            conditions.append(quantity <= self.low_stock)
        return conditions
