"""`invctl category add | rename | list`: product categories, changed at central and read at
the store agent's replica or at central."""

from __future__ import annotations

from typing import Annotated

import typer

from invctl.categories import every_category, find_category
from invctl.context import state_of
from invctl.options import JsonFlag
from invctl.paging import DEFAULT_LIMIT, AllOpt, LimitOpt, fetch_listing, warn_if_cut

app = typer.Typer(
    help="Product categories: list them at the store agent or central, change them at "
    "central.\n\nExample: invctl category list",
    no_args_is_help=True,
)
COLUMNS = ("id", "name")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Category name, 1-200 characters.")]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="category")


@app.command("add")
def add(ctx: typer.Context, name: NameArg, json_out: JsonFlag = False) -> None:
    """Create a category at central.

    Example: invctl category add Dairy
    """
    state = state_of(ctx, json_out)
    category = state.central().post("/categories", json={"name": name})
    state.out.emit(category, title="Category created")


@app.command("rename")
def rename(
    ctx: typer.Context,
    old: Annotated[
        str, typer.Argument(metavar="OLD", help="The category's name or id.", show_default=False)
    ],
    new: Annotated[str, typer.Argument(metavar="NEW", help="Its new name, 1-200 characters.")],
    json_out: JsonFlag = False,
) -> None:
    """Rename a category at central; its products stay in it, and the stores learn the new
    name within seconds. A name another category holds is refused (exit 4).

    Example: invctl category rename Dairy "Milk & cheese"
    """
    state = state_of(ctx, json_out)
    central = state.central()
    category = find_category(every_category(central), old)
    renamed = central.request("PATCH", f"/categories/{category['id']}", json={"name": new})
    state.out.emit(renamed, title="Category renamed")


@app.command("list")
def list_categories(
    ctx: typer.Context,
    limit: LimitOpt = DEFAULT_LIMIT,
    every: AllOpt = False,
    json_out: JsonFlag = False,
) -> None:
    """List categories by id.

    Reads the store agent's replica, or central when central is named more explicitly
    than the agent (--central URL, INVCTL_CENTRAL, or `central` alone in the config
    file).

    Example: invctl category list --all --json
    """
    state = state_of(ctx, json_out)
    listing = fetch_listing(state.reader(), "/categories", limit=limit, every=every)
    state.out.emit(listing.items, table=COLUMNS)
    warn_if_cut(state.out, listing, "categories")
