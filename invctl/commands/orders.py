"""`invctl orders list | show | cancel`: a store's sales, at the store agent or central."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from invctl.client import ApiClient, items_of, segment
from invctl.context import state_of
from invctl.errors import NotFoundError, ServerError, UsageError
from invctl.options import JsonFlag
from invctl.output import Column, Columns, record_view, rows_table

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(
    help="List, show and cancel a store's orders.\n\nExample: invctl orders list --status queued",
    no_args_is_help=True,
)
AGENT_STATUSES = ("confirmed", "queued", "rejected", "cancelled")
CENTRAL_STATUSES = ("confirmed", "cancelled")
CENTRAL_ONLY = "--store, --since, --until and --all-pages"
MAX_PAGE = 200
CENTRAL_COLUMNS = (
    "id",
    "store_id",
    "status",
    "created_at",
    "created_by",
    Column("total", justify="right"),
    "items",
)
AGENT_COLUMNS = ("local_ref", "status", "order_id", "created_at", "items", "reason")
ORDER_FIELDS = (
    "id",
    "local_ref",
    "order_id",
    "store_id",
    "status",
    "created_at",
    "created_by",
    "cancelled_at",
    "reason",
    "total",
)
LINE_COLUMNS = (
    Column("sku"),
    Column("quantity", "qty", "right"),
    Column("unit_price", "unit price", "right"),
)

OrderIdArg = Annotated[
    str,
    typer.Argument(
        metavar="ORDER_ID",
        help="Central's order id (or, at the store agent, its local reference).",
        show_default=False,
    ),
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="orders")


def _iso_moment(value: str | None) -> str | None:
    """The moment in extended ISO 8601, so central never reads `20261101` as a timestamp."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or time, e.g. 2026-11-29 or 2026-11-29T10:00:00Z"
        ) from None


def _moment_option(name: str, what: str) -> Any:
    return typer.Option(name, metavar="ISO", callback=_iso_moment, help=what, show_default=False)


StatusOpt = Annotated[
    str | None,
    typer.Option(
        "--status",
        metavar="STATUS",
        help="Only orders in this state: confirmed or cancelled (central); "
        "also queued or rejected (store agent).",
        show_default=False,
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", metavar="ID", help="Only this store's orders.", show_default=False),
]
SinceOpt = Annotated[
    str | None, _moment_option("--since", "Only orders placed at or after (UTC unless given).")
]
UntilOpt = Annotated[
    str | None, _moment_option("--until", "Only orders placed before (UTC unless given).")
]
LimitOpt = Annotated[
    int,
    typer.Option(
        "--limit",
        "-n",
        min=1,
        max=MAX_PAGE,
        help="Newest N orders (the page size with --all-pages).",
    ),
]
AllPagesOpt = Annotated[
    bool, typer.Option("--all-pages", help="Follow central's pages to the oldest order.")
]


@dataclass(frozen=True)
class OrderQuery:
    status: str | None = None
    store: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = 50

    def params(self, before: int | None = None) -> dict[str, Any]:
        named = {
            "status": self.status,
            "store": self.store,
            "since": self.since,
            "until": self.until,
            "limit": self.limit,
            "before": before,
        }
        return {key: value for key, value in named.items() if value is not None}

    def central_only(self) -> bool:
        return any(value is not None for value in (self.store, self.since, self.until))


@app.command("list")
def list_orders(
    ctx: typer.Context,
    status: StatusOpt = None,
    store: StoreOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: LimitOpt = 50,
    all_pages: AllPagesOpt = False,
    json_out: JsonFlag = False,
) -> None:
    """List orders, newest first.

    Reads the store agent's sales by default, including those queued offline or rejected
    on replay; the agent filters by --status and --limit only. With --central URL (or
    INVCTL_CENTRAL) it reads central, which also filters by --store, --since and --until
    (ISO 8601); there --limit is the page size and --all-pages fetches every page.

    Example: invctl --central http://central:8000 orders list --since 2026-11-01 --all-pages
    """
    state = state_of(ctx, json_out)
    client = state.reader()
    query = OrderQuery(status, store, since, until, limit)
    if client.target.name == "central":
        _check_status(status, CENTRAL_STATUSES, "central")
        items, more = central_orders(client, query, all_pages=all_pages)
        columns: Columns = CENTRAL_COLUMNS
    else:
        _check_agent_query(query, all_pages)
        items, more = items_of(client.get("/orders", params=query.params())), False
        columns = AGENT_COLUMNS
    state.out.emit(items, render=lambda data: [rows_table(summaries(data), columns, None)])
    if more:
        state.out.note("there are older orders: add --all-pages, or narrow with --since/--until")


def central_orders(
    client: ApiClient, query: OrderQuery, *, all_pages: bool
) -> tuple[list[dict[str, Any]], bool]:
    """Central's orders, following `next_before` when `all_pages`; and whether more remain."""
    items: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        page = client.get("/orders", params=query.params(before))
        items += items_of(page)
        cursor = page.get("next_before")
        if cursor is None or not all_pages:
            return items, cursor is not None
        before = _next_cursor(cursor, before)


def _next_cursor(cursor: object, previous: int | None) -> int:
    """The next page's `before`; it must go down, or the pages would never end."""
    if isinstance(cursor, bool) or not isinstance(cursor, int):
        raise ServerError(f"central's next_before {cursor!r} is not a whole number")
    if previous is not None and cursor >= previous:
        raise ServerError(f"central's next_before did not go down ({previous} -> {cursor})")
    return cursor


def _check_status(status: str | None, allowed: tuple[str, ...], target: str) -> None:
    if status is not None and status not in allowed:
        raise UsageError(
            f"the {target} has no {status!r} orders; --status is one of {', '.join(allowed)}",
            code="usage.status",
            hint="queued and rejected sales exist only at the store agent (drop --central)"
            if target == "central"
            else None,
        )


def _check_agent_query(query: OrderQuery, all_pages: bool) -> None:
    _check_status(query.status, AGENT_STATUSES, "store agent")
    if query.central_only() or all_pages:
        raise UsageError(
            f"{CENTRAL_ONLY} need central; the store agent filters by --status and --limit only",
            code="usage.needs_central",
            hint="add --central URL (or set INVCTL_CENTRAL)",
        )


def summaries(orders: Iterable[Any]) -> list[dict[str, Any]]:
    """Orders as table rows, their lines folded into one `items` cell: `MILK-1L x2, ...`."""
    return [{**order, "items": _items(order.get("lines"))} for order in orders]


def _items(lines: object) -> str:
    if not isinstance(lines, list):
        return "-"
    shown = [
        f"{line.get('sku')} x{line.get('quantity')}" for line in lines if isinstance(line, dict)
    ]
    return ", ".join(shown) or "-"


@app.command("show")
def show(ctx: typer.Context, order_id: OrderIdArg, json_out: JsonFlag = False) -> None:
    """Show one order and its lines.

    With --central URL (or INVCTL_CENTRAL): central's order, by id. Otherwise the store
    agent's record of the sale, found by central's order id or the agent's local reference
    among its latest 200 sales.

    Example: invctl orders show 5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13
    """
    state = state_of(ctx, json_out)
    client = state.reader()
    if client.target.name == "central":
        order = client.get(f"/orders/{segment(order_id)}")
    else:
        order = _agent_order(client, order_id)
    state.out.emit(order, render=render_order)


def _agent_order(client: ApiClient, wanted: str) -> dict[str, Any]:
    for item in items_of(client.get("/orders", params={"limit": MAX_PAGE})):
        if wanted in (item.get("order_id"), item.get("local_ref")):
            return item
    raise NotFoundError(
        f"no order {wanted!r} among the store agent's latest {MAX_PAGE} sales",
        code="order.not_found",
        hint=f"ask central: invctl --central URL orders show {wanted}",
    )


@app.command("cancel")
def cancel(ctx: typer.Context, order_id: OrderIdArg, json_out: JsonFlag = False) -> None:
    """Cancel an order at central and put its stock back.

    Needs central (--central URL, INVCTL_CENTRAL or `invctl config set central URL`).
    Cancelling an order that is already cancelled changes nothing.

    Example: invctl --central http://central:8000 orders cancel 5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13
    """
    state = state_of(ctx, json_out)
    order = state.central().post(f"/orders/{segment(order_id)}/cancel")
    state.out.emit(order, render=_cancelled)


def _cancelled(data: Any) -> Iterable[RenderableType]:
    from rich.text import Text

    order = data if isinstance(data, dict) else {}
    yield Text(f"Order {order.get('id')} is {order.get('status')}; its stock is released.")
    yield from render_order(order)


def render_order(data: Any) -> Iterable[RenderableType]:
    """An order (central's, or the agent's record of a sale): its fields, then its lines."""
    order = data if isinstance(data, dict) else {}
    yield from record_view(order, [key for key in ORDER_FIELDS if key in order], None)
    yield lines_table(order)


def lines_table(
    order: dict[str, Any], title: str | None = "Lines", stock: str = "stock after"
) -> RenderableType:
    """The order's lines: sku, qty and, from central, unit price and the SKU's stock just
    after the order was placed (column header `stock`)."""
    rows = [_line_row(line) for line in order.get("lines") or [] if isinstance(line, dict)]
    spec = [*LINE_COLUMNS, Column("stock_left", stock, "right")]
    columns = [c for c in spec if c.key in ("sku", "quantity") or _any(rows, c.key)]
    return rows_table(rows, columns, title)


def _line_row(line: dict[str, Any]) -> dict[str, Any]:
    stock = line.get("stock")
    if isinstance(stock, dict):
        return {**line, "stock_left": stock.get("quantity")}
    return line


def _any(rows: list[dict[str, Any]], key: str) -> bool:
    return any(row.get(key) is not None for row in rows)
