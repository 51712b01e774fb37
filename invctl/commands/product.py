"""`invctl product add | list | show`: the catalog at central."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from invctl.client import items_of, segment
from invctl.context import state_of
from invctl.options import JsonFlag, SkuArg

app = typer.Typer(
    help="Manage the product catalog (central).\n\nExample: invctl product list",
    no_args_is_help=True,
)
COLUMNS = ("sku", "name", "price", "category_id", "active")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="product")


def _valid_sku(value: str) -> str:
    from invctl import importfile

    return _checked(importfile.check_sku, value)


def _valid_price(value: str) -> str:
    from invctl import importfile

    return _checked(importfile.check_price, value)


def _checked(check: Callable[[object], object], value: str) -> str:
    """Apply an import-file rule to an option, failing as a usage error (exit 2)."""
    from invctl.importfile import FieldError

    try:
        return str(check(value))
    except FieldError as exc:
        raise typer.BadParameter(exc.message) from None


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
    category: Annotated[int, typer.Option("--category", help="Category id.", show_default=False)],
    description: Annotated[str | None, typer.Option(help="Longer description.")] = None,
    inactive: Annotated[
        bool, typer.Option("--inactive", help="Create it as not for sale.")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Create a product; its stock starts at 0.

    Example: invctl product add MILK-1L --name "Milk 1 L" --price 1.25 --category 3
    """
    state = state_of(ctx, json_out)
    body: dict[str, Any] = {
        "sku": sku,
        "name": name,
        "price": price,
        "category_id": category,
        "active": not inactive,
    }
    if description is not None:
        body["description"] = description
    product = state.central().post("/products", json=body)
    state.out.emit(product, title="Product created")


@app.command("list")
def list_products(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """List all products.

    Example: invctl product list
    """
    state = state_of(ctx, json_out)
    products = items_of(state.central().get("/products"))
    state.out.emit(products, table=COLUMNS)


@app.command("show")
def show(ctx: typer.Context, sku: SkuArg, json_out: JsonFlag = False) -> None:
    """Show one product.

    Example: invctl product show MILK-1L
    """
    state = state_of(ctx, json_out)
    product = state.central().get(f"/products/{segment(sku)}")
    state.out.emit(product, title=f"Product {sku}")
