"""`invctl product add | update | list | show`: the catalog, changed at central and read at
the store agent's replica or at central."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from invctl.categories import category_id, every_category, find_category, names_by_id
from invctl.client import segment
from invctl.context import State, state_of
from invctl.errors import UsageError
from invctl.options import JsonFlag, SkuArg
from invctl.output import Column
from invctl.paging import DEFAULT_LIMIT, AllOpt, LimitOpt, Listing, fetch_listing, warn_if_cut

app = typer.Typer(
    help="The product catalog: list it at the store agent or central, change it at central."
    "\n\nExample: invctl product list --category Dairy",
    no_args_is_help=True,
)
COLUMNS = (
    "sku",
    "name",
    Column("price", justify="right"),
    "category",
    "active",
    Column("quantity", "stock", "right"),
)

CategoryOpt = Annotated[
    str | None,
    typer.Option("--category", metavar="NAME|ID", help="Category name or id.", show_default=False),
]
SearchOpt = Annotated[
    str | None,
    typer.Option(
        "--search",
        metavar="TEXT",
        help="Only products whose SKU or name holds TEXT (any case).",
        show_default=False,
    ),
]
LowStockOpt = Annotated[
    int | None,
    typer.Option(
        "--low-stock",
        metavar="N",
        min=0,
        help="Only products with N or fewer in stock.",
        show_default=False,
    ),
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="product")


def _valid_sku(value: str) -> str:
    from invctl import importfile

    return _checked(importfile.check_sku, value)


def _valid_price(value: str | None) -> str | None:
    from invctl import importfile

    return None if value is None else _checked(importfile.check_price, value)


def _checked(check: Callable[[object], object], value: str) -> str:
    """Apply an import-file rule to an option, failing as a usage error (exit 2)."""
    from invctl.importfile import FieldError

    try:
        return str(check(value))
    except FieldError as exc:
        raise typer.BadParameter(exc.message) from None


PriceOpt = Annotated[
    str | None,
    typer.Option("--price", help="Price, e.g. 1.25.", callback=_valid_price, show_default=False),
]


@app.command("add")
def add(
    ctx: typer.Context,
    sku: Annotated[
        str,
        typer.Argument(
            metavar="SKU", help="New SKU, e.g. MILK-1L.", callback=_valid_sku, show_default=False
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="Display name.", show_default=False)],
    price: Annotated[
        str,
        typer.Option(
            "--price", help="Price, e.g. 1.25.", callback=_valid_price, show_default=False
        ),
    ],
    category: Annotated[
        str,
        typer.Option(
            "--category", metavar="NAME|ID", help="Category name or id.", show_default=False
        ),
    ],
    description: Annotated[str | None, typer.Option(help="Longer description.")] = None,
    inactive: Annotated[
        bool, typer.Option("--inactive", help="Create it as not for sale.")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Create a product at central; its stock starts at 0.

    Example: invctl product add MILK-1L --name "Milk 1 L" --price 1.25 --category Dairy
    """
    state = state_of(ctx, json_out)
    central = state.central()
    body: dict[str, Any] = {
        "sku": sku,
        "name": name,
        "price": price,
        "category_id": category_id(central, category),
        "active": not inactive,
    }
    if description is not None:
        body["description"] = description
    product = central.post("/products", json=body)
    state.out.emit(product, title="Product created")


@app.command("update")
def update(
    ctx: typer.Context,
    sku: SkuArg,
    name: Annotated[
        str | None, typer.Option("--name", help="New display name.", show_default=False)
    ] = None,
    price: PriceOpt = None,
    description: Annotated[
        str | None,
        typer.Option("--description", help='New description ("" clears it).', show_default=False),
    ] = None,
    category: CategoryOpt = None,
    active: Annotated[
        bool | None,
        typer.Option("--active/--inactive", help="For sale, or not for sale.", show_default=False),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Change the fields given of a product at central; the others stay as they are.

    The store agents learn the change within seconds (an inactive product is no longer
    sold there).

    Example: invctl product update MILK-1L --price 1.35 --inactive
    """
    state = state_of(ctx, json_out)
    central = state.central()
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("name", name),
            ("price", price),
            ("description", description),
            ("active", active),
        )
        if value is not None
    }
    if category is not None:
        changes["category_id"] = category_id(central, category)
    if not changes:
        raise UsageError(
            "nothing to change: give --name, --price, --description, --category, "
            "--active or --inactive",
            code="usage.nothing_to_change",
        )
    product = central.request("PATCH", f"/products/{segment(sku)}", json=changes)
    state.out.emit(product, title=f"Product {sku}")


@app.command("list")
def list_products(
    ctx: typer.Context,
    category: CategoryOpt = None,
    search: SearchOpt = None,
    low_stock: LowStockOpt = None,
    limit: LimitOpt = DEFAULT_LIMIT,
    every: AllOpt = False,
    json_out: JsonFlag = False,
) -> None:
    """List products by SKU, with their category and stock.

    Reads the store agent's replica, or central when central is named more explicitly
    than the agent (--central URL, INVCTL_CENTRAL, or `central` alone in the config
    file). The filters combine.

    Example: invctl product list --category Dairy --search milk --low-stock 5
    """
    state = state_of(ctx, json_out)
    listing, names = catalog_listing(state, category, search, low_stock, limit, every)
    rows = listing.items if state.out.json_mode else with_category_names(listing.items, names)
    state.out.emit(rows, table=COLUMNS)
    warn_if_cut(state.out, listing, "products")


def catalog_listing(
    state: State,
    category: str | None,
    search: str | None,
    low_stock: int | None,
    limit: int,
    every: bool,
) -> tuple[Listing, dict[Any, str]]:
    """Products from the reader (agent or central) as the filters ask, and category names
    (fetched only when a table shows them or --category names one)."""
    client = state.reader()
    names: dict[Any, str] = {}
    if category is not None or not state.out.json_mode:
        categories = every_category(client)
        names = names_by_id(categories)
    params = product_filters(category, search, low_stock, names)
    return fetch_listing(client, "/products", params, limit=limit, every=every), names


def product_filters(
    category: str | None,
    search: str | None,
    low_stock: int | None,
    names: dict[Any, str],
) -> dict[str, Any]:
    """The query of GET /products; a --category name becomes its id (`names`: id -> name)."""
    params: dict[str, Any] = {}
    if category is not None:
        known = [{"id": key, "name": name} for key, name in names.items()]
        params["category"] = find_category(known, category)["id"]
    if search:
        params["search"] = search
    if low_stock is not None:
        params["low_stock"] = low_stock
    return params


def with_category_names(items: list[dict[str, Any]], names: dict[Any, str]) -> list[dict[str, Any]]:
    """Rows for a table: each product's category by name (its id when the name is unknown)."""
    return [
        {**item, "category": names.get(item.get("category_id"), item.get("category_id"))}
        for item in items
    ]


@app.command("show")
def show(ctx: typer.Context, sku: SkuArg, json_out: JsonFlag = False) -> None:
    """Show one product at central, with its description.

    Example: invctl product show MILK-1L
    """
    state = state_of(ctx, json_out)
    product = state.central().get(f"/products/{segment(sku)}")
    state.out.emit(product, title=f"Product {sku}")
