"""`invctl orders list | show | cancel`: a store's sales, at the store agent or central."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from invctl.client import ApiClient, items_of, segment
from invctl.context import state_of
from invctl.errors import NotFoundError, ServerError, UsageError
from invctl.ids import is_uuid, resolve_prefix
from invctl.moments import FORMS, wire_moment
from invctl.options import JsonFlag
from invctl.order_errors import explained
from invctl.output import Column, Columns, record_view, rows_table
from invwire.orders import ORDER_STATUSES, STORE_STATUSES

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(
    help="List, show and cancel a store's orders.\n\nExample: invctl orders list --status queued",
    no_args_is_help=True,
)
AGENT_STATUSES = STORE_STATUSES  # the statuses GET {agent}/orders shows and filters by
CENTRAL_ONLY = "--store and --all-pages"
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
    "recovered_at",
    "review",
    "reason",
    "total",
)
# Fields only a sale sent back after a restore has: left out of `orders show` while null.
RECOVERY_FIELDS = ("recovered_at", "review")
LINE_COLUMNS = (
    Column("sku"),
    Column("quantity", "qty", "right"),
    Column("unit_price", "unit price", "right"),
)

ShownIdArg = Annotated[
    str,
    typer.Argument(
        metavar="ORDER_ID",
        help="Central's order id (or, at the store agent, its local reference), or any "
        "unique prefix of it, such as the 8 characters a table shows.",
        show_default=False,
    ),
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="orders")


def _moment_option(name: str, what: str) -> Any:
    zone = "local time, or UTC with --utc, unless it has an offset"
    return typer.Option(name, metavar="WHEN", help=f"{what}: {FORMS} ({zone}).", show_default=False)


StatusOpt = Annotated[
    str | None,
    typer.Option(
        "--status",
        metavar="STATUS",
        help="Only orders in this state: confirmed, cancelled or unrecovered (central and "
        "store agent; unrecovered: a sale a restored central could not take again, left "
        "for review); at the store agent also pending, queued, rejected or failed.",
        show_default=False,
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", metavar="ID", help="Only this store's orders.", show_default=False),
]
SinceOpt = Annotated[str | None, _moment_option("--since", "Only orders placed at or after")]
UntilOpt = Annotated[str | None, _moment_option("--until", "Only orders placed before")]
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
    """The filters of `orders list`, every one given (None: not asked for)."""

    status: str | None
    store: str | None
    since: str | None
    until: str | None
    limit: int

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
        return self.store is not None


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

    Reads the store agent's sales by default: those queued offline, refused or failed too,
    and a sale central cancelled since shows `cancelled`. With --central URL (or
    INVCTL_CENTRAL) it reads central, which also filters by --store; there --limit is the
    page size and --all-pages fetches every page. Both filter by --status, --since and
    --until: `--since today` is the day's sales, `--since 1d` the last 24 hours.

    Example: invctl --central http://central:8000 orders list --since 2026-11-01 --all-pages
    """
    state = state_of(ctx, json_out)
    client = state.reader()
    now = state.deps.now()
    query = OrderQuery(
        status,
        store,
        wire_moment(since, now, option="--since"),
        wire_moment(until, now, option="--until"),
        limit,
    )
    if client.target.name == "central":
        _check_status(status, ORDER_STATUSES, "central")
        items, more = central_orders(client, query, all_pages=all_pages)
        columns: Columns = central_columns(items)
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
            hint="pending, queued, rejected and failed sales exist only at the store agent "
            "(drop --central)"
            if target == "central"
            else None,
        )


def _check_agent_query(query: OrderQuery, all_pages: bool) -> None:
    _check_status(query.status, AGENT_STATUSES, "store agent")
    if query.central_only() or all_pages:
        raise UsageError(
            f"{CENTRAL_ONLY} need central; the store agent filters by --status, --since, "
            "--until and --limit",
            code="usage.needs_central",
            hint="add --central URL (or set INVCTL_CENTRAL)",
        )


def central_columns(orders: list[Any]) -> Columns:
    """Central's columns, and `review` when an order has one (an unrecovered sale's code)."""
    if any(isinstance(order, dict) and _reviewed(order) for order in orders):
        return (*CENTRAL_COLUMNS, "review")
    return CENTRAL_COLUMNS


def summaries(orders: Iterable[Any]) -> list[dict[str, Any]]:
    """Orders as table rows, their lines folded into one `items` cell: `MILK-1L x2, ...`,
    and central's review of an unrecovered order into its code."""
    return [
        {**order, "items": _items(order.get("lines")), **_review_code(order)} for order in orders
    ]


def _reviewed(order: dict[str, Any]) -> bool:
    return isinstance(order.get("review"), dict)


def _review_code(order: dict[str, Any]) -> dict[str, Any]:
    return {"review": order["review"].get("code")} if _reviewed(order) else {}


def _review_text(order: dict[str, Any]) -> dict[str, Any]:
    if not _reviewed(order):
        return {}
    review = order["review"]
    return {"review": f"{review.get('code')}: {review.get('message')}"}


def _items(lines: object) -> str:
    if not isinstance(lines, list):
        return "-"
    shown = [
        f"{line.get('sku')} x{line.get('quantity')}" for line in lines if isinstance(line, dict)
    ]
    return ", ".join(shown) or "-"


@app.command("show")
def show(ctx: typer.Context, order_id: ShownIdArg, json_out: JsonFlag = False) -> None:
    """Show one order and its lines.

    With --central URL (or INVCTL_CENTRAL): central's order, by id; a prefix is looked up
    among central's latest 200 orders. Otherwise the store agent's record of the sale,
    found by central's order id or the agent's local reference (or a prefix of either),
    with the status central gave it since (`cancelled`).

    Example: invctl orders show 5f0c9a1e
    """
    state = state_of(ctx, json_out)
    client = state.reader()
    with explained(client.target.name, "shown"):
        if client.target.name == "central":
            order = client.get(f"/orders/{segment(central_order_id(client, order_id))}")
        else:
            order = client.get(f"/orders/{segment(order_id)}")
    state.out.emit(order, render=render_order)


def central_order_id(client: ApiClient, wanted: str) -> str:
    """`wanted` if it is a whole order id, else the one of central's latest orders it starts."""
    if is_uuid(wanted):
        return wanted
    latest = items_of(client.get("/orders", params={"limit": MAX_PAGE}))
    try:
        return resolve_prefix([order.get("id") for order in latest], wanted)
    except NotFoundError as err:
        err.message = f"no order id starts with {wanted!r} among central's latest {MAX_PAGE}"
        err.hint = "give the whole order id"
        raise


@app.command("cancel")
def cancel(ctx: typer.Context, order_id: ShownIdArg, json_out: JsonFlag = False) -> None:
    """Cancel an order at central and put its stock back.

    Through the store agent by default: it finds the sale (by order id or local reference,
    or a prefix of either), asks central to cancel it as the store, and shows it cancelled
    at once. With --central URL (or INVCTL_CENTRAL) it asks central directly, as the store
    (INVCTL_API_KEY), its staff or an admin; a prefix is looked up among central's latest
    200 orders first. A prefix of several orders cancels nothing (exit 2, naming them).
    A cancel is never queued: with central unreachable nothing changes (exit 5).
    Cancelling a cancelled order changes nothing. An admin closes an unrecovered order
    (a sale a restored central could not take again) the same way, with --central: it
    took no stock, so none moves.

    Example: invctl orders cancel 5f0c9a1e
    """
    state = state_of(ctx, json_out)
    client = state.reader()
    with explained(client.target.name, "cancelled"):
        if client.target.name == "central":
            order_id = central_order_id(client, order_id)
        order = client.post(f"/orders/{segment(order_id)}/cancel", json={})
    state.out.emit(order, render=_cancelled)


def _cancelled(data: Any) -> Iterable[RenderableType]:
    from rich.text import Text

    order = data if isinstance(data, dict) else {}
    stock = "it took no stock" if _reviewed(order) else "its stock is released"
    yield Text(f"Order {order.get('id')} is {order.get('status')}; {stock}.")
    yield from render_order(order)


def render_order(data: Any) -> Iterable[RenderableType]:
    """An order (central's, or the agent's record of a sale): its fields, then its lines."""
    order = data if isinstance(data, dict) else {}
    fields = {**order, **_review_text(order)}
    shown = [key for key in ORDER_FIELDS if key in order and _worth_showing(key, order[key])]
    yield from record_view(fields, shown, None)
    yield lines_table(order)


def _worth_showing(key: str, value: object) -> bool:
    return value is not None or key not in RECOVERY_FIELDS


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
