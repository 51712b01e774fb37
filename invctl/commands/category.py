"""`invctl category add | list`: product categories at central."""

from __future__ import annotations

from typing import Annotated

import typer

from invctl.client import items_of
from invctl.context import state_of
from invctl.options import JsonFlag

app = typer.Typer(
    help="Manage product categories (central).\n\nExample: invctl category list",
    no_args_is_help=True,
)
COLUMNS = ("id", "name")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="category")


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Category name, 1-200 characters.")],
    json_out: JsonFlag = False,
) -> None:
    """Create a category.

    Example: invctl category add Dairy
    """
    state = state_of(ctx, json_out)
    category = state.central().post("/categories", json={"name": name})
    state.out.emit(category, title="Category created")


@app.command("list")
def list_categories(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """List all categories.

    Example: invctl category list --json
    """
    state = state_of(ctx, json_out)
    categories = items_of(state.central().get("/categories"))
    state.out.emit(categories, table=COLUMNS)
