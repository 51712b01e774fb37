"""`invctl stock show | list | set | adjust | history`: stock levels and the ledger."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from invctl.charts import BarChart, whole
from invctl.client import items_of, segment
from invctl.commands.product import (
    CategoryOpt,
    LowStockOpt,
    SearchOpt,
    catalog_listing,
    with_category_names,
)
from invctl.context import state_of
from invctl.errors import UsageError
from invctl.options import JsonFlag, NoteOpt, SkuArg
from invctl.output import Column, OutputFormat
from invctl.paging import DEFAULT_LIMIT, AllOpt, LimitOpt, warn_if_cut

app = typer.Typer(
    help="Show and change stock levels.\n\nExample: invctl stock show MILK-1L",
    no_args_is_help=True,
)
HISTORY_COLUMNS = (
    "at",
    "actor",
    "reason",
    "delta",
    "quantity",
    "stock_version",
    "order_id",
    "note",
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="stock")


@app.command("show")
def show(ctx: typer.Context, sku: SkuArg, json_out: JsonFlag = False) -> None:
    """Show the stock of a SKU.

    Reads the store agent's replica, or central when --central URL (or INVCTL_CENTRAL)
    is given.

    Example: invctl stock show MILK-1L
    """
    state = state_of(ctx, json_out)
    client = state.reader()
    stock = client.get(f"/stock/{segment(sku)}")
    state.out.emit(stock, title=f"Stock of {sku} at the {client.target.name} ({client.target.url})")


STOCK_COLUMNS = (
    "sku",
    "name",
    "category",
    Column("quantity", justify="right"),
    Column("stock_version", "version", "right"),
    "active",
)


@app.command("list")
def list_stock(
    ctx: typer.Context,
    category: CategoryOpt = None,
    search: SearchOpt = None,
    low_stock: LowStockOpt = None,
    limit: LimitOpt = DEFAULT_LIMIT,
    every: AllOpt = False,
    json_out: JsonFlag = False,
) -> None:
    """List stock levels by SKU (the products list, its stock columns first).

    Reads the store agent's replica, or central when central is named more explicitly
    than the agent (--central URL, INVCTL_CENTRAL, or `central` alone in the config
    file). The filters combine; --low-stock 5 shows what is nearly gone.

    Example: invctl stock list --low-stock 5 --category Dairy
    """
    state = state_of(ctx, json_out)
    listing, names = catalog_listing(state, category, search, low_stock, limit, every)
    rows = listing.items if state.out.json_mode else with_category_names(listing.items, names)
    state.out.emit(rows, table=STOCK_COLUMNS)
    warn_if_cut(state.out, listing, "products")


@app.command("set")
def set_stock(
    ctx: typer.Context,
    sku: SkuArg,
    quantity: Annotated[
        int, typer.Argument(metavar="QTY", help="The new quantity.", min=0, show_default=False)
    ],
    note: NoteOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Set the absolute stock of a SKU (central).

    Example: invctl stock set MILK-1L 40 --note "stock take"
    """
    state = state_of(ctx, json_out)
    stock = state.central().put(
        f"/stock/{segment(sku)}", json=_with_note({"quantity": quantity}, note)
    )
    state.out.emit(stock, title=f"Stock of {sku}")


@app.command("adjust", context_settings={"ignore_unknown_options": True})
def adjust(
    ctx: typer.Context,
    sku: SkuArg,
    delta: Annotated[
        int | None,
        typer.Argument(metavar="DELTA", help="Change, e.g. 5 or -3.", show_default=False),
    ] = None,
    delta_option: Annotated[
        int | None,
        typer.Option("--delta", help="The change, as an option: --delta -3.", show_default=False),
    ] = None,
    note: NoteOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Add to or take from the stock of a SKU (central).

    Negative deltas work as -3, -- -3 or --delta -3; central refuses to take the stock
    below zero (exit 4).

    Example: invctl stock adjust MILK-1L -3 --note "broken bottles"
    """
    state = state_of(ctx, json_out)
    change = _one_delta(delta, delta_option)
    body = _with_note({"delta": change, "reason": "adjust"}, note)
    stock = state.central().post(f"/stock/{segment(sku)}/adjustments", json=body)
    state.out.emit(stock, title=f"Stock of {sku}")


def _one_delta(argument: int | None, option: int | None) -> int:
    if (argument is None) == (option is None):
        raise UsageError("give the change once: DELTA or --delta", code="usage.delta")
    change = argument if argument is not None else option
    if not change:
        raise UsageError("the change must not be 0", code="usage.delta")
    return change


def _with_note(body: dict[str, Any], note: str | None) -> dict[str, Any]:
    return {**body, "note": note} if note else body


@app.command("history")
def history(
    ctx: typer.Context,
    sku: SkuArg,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N movements.")] = 50,
    chart: Annotated[
        bool,
        typer.Option(
            "--chart",
            help="Chart the stock level: one bar per movement, oldest first, each the "
            "quantity after it (tables only; tsv and --json print the ledger as without).",
        ),
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Show the stock ledger of a SKU (central).

    Each movement says who changed the stock, when, why and by how much; --chart draws the
    level it left, movement by movement.

    Example: invctl stock history MILK-1L --limit 20 --chart
    """
    state = state_of(ctx, json_out)
    answer = state.central().get(f"/stock/{segment(sku)}/movements", params={"limit": limit})
    movements = items_of(answer)
    if chart and state.out.style.format is OutputFormat.table:
        state.out.emit(movements, render=lambda rows: [level_chart(rows, sku)])
        return
    state.out.emit(movements, table=HISTORY_COLUMNS, title=f"Movements of {sku}")


CHART_COLUMNS = (
    Column("at"),
    Column("reason"),
    Column("delta", justify="right"),
    Column("quantity", justify="right"),
)


def level_chart(movements: list[dict[str, Any]], sku: str) -> BarChart:
    """The stock level after each movement, oldest first (central lists the newest first)."""
    rows = [{**row, "delta": _signed(row.get("delta"))} for row in reversed(movements)]
    title = f"Stock of {sku}, after each of its last {len(rows)} movements (bars: quantity)"
    return BarChart(rows, CHART_COLUMNS, lambda row: whole(row.get("quantity")), title)


def _signed(delta: object) -> object:
    return f"{delta:+d}" if isinstance(delta, int) and not isinstance(delta, bool) else delta
