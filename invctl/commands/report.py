"""`invctl report sales`: what sold, by UTC day, SKU or store, with totals and a bar chart.

Central groups and sums in SQL (`GET /reports/sales`); this only draws the answer. The
totals are central's own count over the whole window, never the shown rows added up, so
rows cut at --limit still come with true totals."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from invctl.charts import BarChart, cents, whole
from invctl.context import state_of
from invctl.moments import FORMS, wire_moment
from invctl.options import JsonFlag
from invctl.output import Column, OutputFormat, current_style, people_time, rows_table

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(
    help="Reports from central's orders.\n\nExample: invctl report sales --since 1w --by day",
    no_args_is_help=True,
)
DEFAULT_ROWS = 100
MAX_ROWS = 1000  # central's most
FIGURES = (
    Column("orders", justify="right"),
    Column("units", justify="right"),
    Column("revenue", justify="right"),
)
NAMES = {"day": ("UTC day", "days"), "sku": ("SKU", "SKUs"), "store": ("store", "stores")}


class By(StrEnum):
    day = "day"
    sku = "sku"
    store = "store"


ZONE = "local time, or UTC with --utc, unless it has an offset"
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help=f"Orders placed at or after: {FORMS} ({ZONE}).",
        show_default=False,
    ),
]
UntilOpt = Annotated[
    str | None,
    typer.Option(
        "--until", metavar="WHEN", help=f"Orders placed before: {FORMS}.", show_default=False
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", metavar="ID", help="Only this store's sales.", show_default=False),
]
ByOpt = Annotated[
    By,
    typer.Option(
        "--by",
        help="One row per UTC day (oldest first), per SKU or per store (most revenue first).",
    ),
]
RowsOpt = Annotated[
    int,
    typer.Option(
        "--limit",
        "-n",
        min=1,
        max=MAX_ROWS,
        metavar="N",
        help="Show at most N rows: the newest days, or the SKUs or stores with the most "
        "revenue. The totals always count every order.",
    ),
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="report")


@app.command("sales")
def sales(
    ctx: typer.Context,
    by: ByOpt = By.day,
    since: SinceOpt = None,
    until: UntilOpt = None,
    store: StoreOpt = None,
    limit: RowsOpt = DEFAULT_ROWS,
    json_out: JsonFlag = False,
) -> None:
    """Sales at central: confirmed orders by UTC day, SKU or store, with totals.

    Each row shows its orders, units and revenue, and a bar scaled to the row with the most
    revenue. The totals count every confirmed order placed in the window (an order with two
    SKUs is one order, in two SKU rows). Orders cancelled since they were placed are in
    neither: a line of their own counts them. Without --since, from the first order. Days
    are UTC days (--since and --until take local time unless --utc). Admins and ops see
    every store; a store (INVCTL_API_KEY) and its staff see their own. tsv and --json carry
    the numbers without bars.

    Example: invctl report sales --since 1w --by sku
    """
    state = state_of(ctx, json_out)
    now = state.deps.now()
    params = {
        "by": by.value,
        "since": wire_moment(since, now, option="--since"),
        "until": wire_moment(until, now, option="--until"),
        "store": store,
        "limit": limit,
    }
    report = state.central().get(
        "/reports/sales", params={key: value for key, value in params.items() if value is not None}
    )
    state.out.emit(report, render=render_sales)
    if isinstance(report, dict) and report.get("truncated"):
        state.out.warn(_cut_warning(report, by))


def render_sales(data: Any) -> Iterable[RenderableType]:
    """The rows as a bar chart and the totals as lines; for tsv, both as plain tables."""
    report = data if isinstance(data, dict) else {}
    by = str(report.get("by") or By.day)
    rows = [{by: row.get("key"), **row} for row in _list(report.get("rows"))]
    columns = [Column(by, NAMES.get(by, (by, ""))[0]), *FIGURES]
    if current_style().format is OutputFormat.tsv:
        yield rows_table(rows, columns, None)
        yield rows_table(_totals_rows(report), [Column("status"), *FIGURES], None)
        return
    yield BarChart(rows, columns, lambda row: cents(row.get("revenue")), _title(report, by))
    yield from _totals_lines(report)


def _title(report: dict[str, Any], by: str) -> str:
    where = f"store {report['store']}" if report.get("store") else "every store"
    since, until = report.get("since"), report.get("until")
    window = f"from {people_time(since)}" if since else "from the first order"
    window += f" to {people_time(until)}" if until else " to now"
    return f"Sales by {NAMES.get(by, (by, ''))[0]}, {where}, {window} (bars: revenue)"


def _totals_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"status": "confirmed", **_dict(report.get("totals"))},
        {"status": "cancelled", **_dict(report.get("cancelled"))},
    ]


def _totals_lines(report: dict[str, Any]) -> Iterable[RenderableType]:
    from rich.text import Text

    totals, cancelled = _dict(report.get("totals")), _dict(report.get("cancelled"))
    yield Text(f"Total: {_figures(totals)}", style="bold")
    if whole(cancelled.get("orders")):
        yield Text(f"Cancelled since, not counted: {_figures(cancelled)}")


def _figures(part: dict[str, Any]) -> str:
    orders, units = whole(part.get("orders")), whole(part.get("units"))
    return (
        f"{orders:,} order{'' if orders == 1 else 's'}, "
        f"{units:,} unit{'' if units == 1 else 's'}, revenue {part.get('revenue', '0.00')}"
    )


def _cut_warning(report: dict[str, Any], by: By) -> str:
    shown, every = len(_list(report.get("rows"))), whole(report.get("keys"))
    which = "newest" if by is By.day else "top"
    return (
        f"showing the {which} {shown:,} of {every:,} {NAMES[by.value][1]}; the totals count "
        f"them all: add --limit N (up to {MAX_ROWS:,}) or narrow with --since/--until"
    )


def _list(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
