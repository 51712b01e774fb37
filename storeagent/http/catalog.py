"""The store terminal API's catalog reads: products (with their stock) and categories from
the replica, filtered and paged as central's `GET /api/v1/products` and `/categories` are, so
`invctl product list` reads the same at the store as at central (docs/wire.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import FastAPI, Query

from invwire.events import MAX_INTEGER
from invwire.rules import MAX_STOCK_QUANTITY
from storeagent.replica.queries import CategoryList, ProductFilter, ProductList, ReplicaReads

MAX_PAGE = 1000
MAX_SEARCH = 200


def add_catalog_routes(
    app: FastAPI, reads: ReplicaReads, require_bootstrapped: Callable[[], None]
) -> None:
    @app.get("/products")
    def get_products(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
        after: Annotated[str, Query(max_length=64)] = "",
        category: Annotated[int | None, Query(ge=1, le=MAX_INTEGER)] = None,
        search: Annotated[str, Query(max_length=MAX_SEARCH)] = "",
        low_stock: Annotated[int | None, Query(ge=0, le=MAX_STOCK_QUANTITY)] = None,
    ) -> ProductList:
        """Products by SKU with their stock, a page at a time: follow `next_after`."""
        require_bootstrapped()
        where = ProductFilter(category, search, low_stock)
        return reads.product_list(where, limit=limit, after=after)

    @app.get("/categories")
    def get_categories(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
        after: Annotated[int, Query(ge=0, le=MAX_INTEGER)] = 0,
    ) -> CategoryList:
        """Categories by id, a page at a time: follow `next_after`."""
        require_bootstrapped()
        return reads.category_list(limit=limit, after=after)
