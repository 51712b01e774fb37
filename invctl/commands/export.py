"""`invctl export products | stock | movements | orders`: central's data as CSV or JSON Lines
for scripts, streamed a page at a time.

Each page is written (and flushed) as it arrives, so an export of any size takes the memory
of one page. A products or stock export is in the format `invctl import` reads, so importing
it back changes nothing. Values are written exactly as central holds them: no escaping for
terminals (that is for tables) and none for spreadsheets (docs/operations.md says why).
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from invctl.client import ApiClient, items_of
from invctl.context import State, state_of
from invctl.errors import InvctlError, ServerError, UsageError
from invctl.moments import FORMS, wire_moment
from invctl.options import JsonFlag

app = typer.Typer(
    help="Export central's catalog, stock, stock movements or orders as CSV or JSON Lines, "
    "streamed page by page; a products or stock export can be imported back "
    "(`invctl import`).\n\nExample: invctl export products --out catalog.csv",
    no_args_is_help=True,
)

Record = dict[str, Any]
Pages = Iterator[list[Record]]

CATALOG_PAGE = 1000  # the largest page GET /exports/products, /products, /categories serve
LEDGER_PAGE = 1000
ORDERS_PAGE = 200  # the largest page GET /orders serves

# The columns of `invctl import` (invctl.importfile.FIELDS), in its order.
PRODUCT_COLUMNS = ("kind", "name", "sku", "price", "category", "description", "active")
STOCK_COLUMNS = ("kind", "sku", "quantity")
MOVEMENT_COLUMNS = (
    "id",
    "at",
    "sku",
    "reason",
    "delta",
    "quantity",
    "stock_version",
    "order_id",
    "store_id",
    "actor",
    "note",
)
ORDER_FIELDS = ("store_id", "status", "created_at", "created_by", "cancelled_at", "total")
LINE_FIELDS = ("sku", "quantity", "unit_price")
ORDER_COLUMNS = ("order_id", *ORDER_FIELDS, *LINE_FIELDS)


class Format(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


FormatOpt = Annotated[
    Format,
    typer.Option(
        "--format",
        "-f",
        help="csv (a header line, then one row a line) or jsonl (one JSON object a line).",
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        metavar="FILE",
        show_default=False,
        help="Write to FILE (default: stdout). It appears, complete, only when the export "
        "succeeds: until then the rows go to a hidden file beside it.",
    ),
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        show_default=False,
        help=f"Only those at or after WHEN: {FORMS} (local time, or UTC with --utc, unless "
        "it has an offset).",
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="ID",
        show_default=False,
        help="Only this store's. A store's key, or staff, gets its own store's only.",
    ),
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="export")


@app.command("products")
def export_products(
    ctx: typer.Context,
    file_format: FormatOpt = Format.csv,
    out: OutOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Export every category and product, as `invctl import` reads them.

    Category rows come first, then product rows by SKU, with the columns kind, name, sku,
    price, category (its name), description and active; stock is left out (see `export
    stock`), so importing the file back leaves stock alone and changes nothing else either.

    Example: invctl export products --out catalog.csv
    """
    state = state_of(ctx, json_out)
    central = state.central()
    records = _catalog_records(central)
    _run(state, Export("products", file_format, PRODUCT_COLUMNS, records), out)


@app.command("stock")
def export_stock(
    ctx: typer.Context,
    file_format: FormatOpt = Format.csv,
    out: OutOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Export the stock of every product, as `invctl import` reads it (kind, sku, quantity).

    Importing the file sets each product's stock to the quantity written, so import it
    back only to restore those quantities: sales since the export would be undone.

    Example: invctl export stock --format jsonl --out stock.jsonl
    """
    state = state_of(ctx, json_out)
    records = _stock_records(state.central())
    _run(state, Export("stock", file_format, STOCK_COLUMNS, records), out)


@app.command("movements")
def export_movements(
    ctx: typer.Context,
    since: SinceOpt = None,
    store: StoreOpt = None,
    file_format: FormatOpt = Format.csv,
    out: OutOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Export the stock ledger of every SKU, oldest first.

    One row a movement: id, at, sku, reason, delta, quantity (after it), stock_version,
    order_id, store_id (of its order), actor and note. --store keeps that store's sales and
    their cancellations; stock set or adjusted at central belongs to no store. An admin or ops
    login sees every store's; a store's key or a staff login, its own store's only.

    Example: invctl export movements --since 1d --store store-042 --out ledger.csv
    """
    state = state_of(ctx, json_out)
    params = {"since": _since(state, since), "store": store}
    records = _movement_records(state.central(), params)
    _run(state, Export("movements", file_format, MOVEMENT_COLUMNS, records), out)


@app.command("orders")
def export_orders(
    ctx: typer.Context,
    since: SinceOpt = None,
    store: StoreOpt = None,
    file_format: FormatOpt = Format.csv,
    out: OutOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Export central's orders, newest first.

    CSV has one row per order line (order_id, store_id, status, created_at, created_by,
    cancelled_at, total, then the line's sku, quantity and unit_price); JSON Lines has one
    order a line, with its lines, as `orders show --json` prints it.

    Example: invctl export orders --since today --format jsonl > orders.jsonl
    """
    state = state_of(ctx, json_out)
    params = {"since": _since(state, since), "store": store}
    records = _order_records(state.central(), params, file_format)
    _run(state, Export("orders", file_format, ORDER_COLUMNS, records), out)


def _since(state: State, since: str | None) -> str | None:
    return wire_moment(since, state.deps.now(), option="--since")


# --- what central pages through ---------------------------------------------------------------


def after_pages(client: ApiClient, path: str, params: dict[str, Any], size: int) -> Pages:
    """`path`'s items a page at a time, following `next_after` (ascending) to the end."""
    after: Any = None
    while True:
        cursor = {} if after is None else {"after": after}
        page = client.get(path, params={**_given(params), **cursor, "limit": size})
        yield items_of(page)
        following = page.get("next_after")
        if following is None:
            return
        after = _forward(following, after, "next_after", ascending=True)


def before_pages(client: ApiClient, path: str, params: dict[str, Any], size: int) -> Pages:
    """`path`'s items a page at a time, following `next_before` (descending) to the end."""
    before: int | None = None
    while True:
        cursor = {} if before is None else {"before": before}
        page = client.get(path, params={**_given(params), **cursor, "limit": size})
        yield items_of(page)
        following = page.get("next_before")
        if following is None:
            return
        before = _forward(following, before, "next_before", ascending=False)


def _given(params: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


def _forward(cursor: object, previous: Any, name: str, *, ascending: bool) -> Any:
    """The next page's cursor; it must move on, or the pages would never end."""
    same_kind = (
        isinstance(cursor, int | str)
        and not isinstance(cursor, bool)
        and (previous is None or type(cursor) is type(previous))
    )
    if same_kind and (previous is None or (cursor > previous if ascending else cursor < previous)):
        return cursor
    raise ServerError(f"central's {name} {cursor!r} does not follow {previous!r}")


def _catalog_records(central: ApiClient) -> Pages:
    for categories in after_pages(central, "/categories", {}, CATALOG_PAGE):
        yield [{"kind": "category", "name": c["name"]} for c in categories]
    for products in after_pages(central, "/exports/products", {}, CATALOG_PAGE):
        yield [_product_row(p) for p in products]


def _product_row(product: Record) -> Record:
    """A product as an import row. An empty description is written empty, which an import
    reads as "keep what central holds": the same, for an export imported back."""
    return {
        "kind": "product",
        "name": product["name"],
        "sku": product["sku"],
        "price": product["price"],
        "category": product["category"],
        "description": product["description"],
        "active": product["active"],
    }


def _stock_records(central: ApiClient) -> Pages:
    for products in after_pages(central, "/products", {}, CATALOG_PAGE):
        yield [{"kind": "stock", "sku": p["sku"], "quantity": p["quantity"]} for p in products]


def _movement_records(central: ApiClient, params: dict[str, Any]) -> Pages:
    for movements in after_pages(central, "/movements", params, LEDGER_PAGE):
        yield [{column: m.get(column) for column in MOVEMENT_COLUMNS} for m in movements]


def _order_records(central: ApiClient, params: dict[str, Any], file_format: Format) -> Pages:
    for orders in before_pages(central, "/orders", params, ORDERS_PAGE):
        if file_format is Format.jsonl:
            yield orders
        else:
            yield [row for order in orders for row in _order_line_rows(order)]


def _order_line_rows(order: Record) -> Iterator[Record]:
    lines = order.get("lines")
    if not isinstance(lines, list):
        raise ServerError(f"central's order {order.get('id')!r} has no list of lines")
    head = {"order_id": order.get("id"), **{name: order.get(name) for name in ORDER_FIELDS}}
    for line in lines:
        yield {**head, **{name: line.get(name) for name in LINE_FIELDS}}


# --- writing ----------------------------------------------------------------------------------


@dataclass
class Export:
    what: str
    file_format: Format
    columns: tuple[str, ...]
    records: Pages
    rows: int = field(default=0, init=False)

    def write_to(self, handle: TextIO) -> None:
        """Every record, a page at a time, each page flushed as it is written."""
        write: Callable[[Record], object] | None = None
        for page in self.records:
            write = write or self._writer(handle)  # once central answered: no header for nothing
            for record in page:
                write(record)
                self.rows += 1
            handle.flush()

    def _writer(self, handle: TextIO) -> Callable[[Record], object]:
        """How one record is written; a CSV's header line is written (and flushed) first."""
        if self.file_format is Format.jsonl:
            return lambda record: handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        import csv  # here: `invctl --help` starts without it

        table = csv.writer(handle, lineterminator="\n")
        table.writerow(self.columns)
        handle.flush()
        return lambda record: table.writerow([_cell(record.get(c)) for c in self.columns])


def _cell(value: object) -> str:
    """A CSV cell as `invctl import` reads it: true/false, nothing for null, else the text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _run(state: State, export: Export, out: Path | None) -> None:
    target = None if out is None or str(out) == "-" else out.expanduser()
    sink = _stdout() if target is None else _file(target, _hidden_beside(target))
    try:
        with sink as handle:
            export.write_to(handle)
    except InvctlError as err:
        raise _stopped(err, export, target) from None
    except OSError as exc:  # a full disk, a closed pipe
        failed = InvctlError(f"cannot write: {exc.strerror or exc}", code="export.write_failed")
        raise _stopped(failed, export, target) from None
    message = f"exported {export.rows:,} {export.what} rows"
    if target is None:
        state.out.note(message)
        return
    summary = {"export": export.what, "format": str(export.file_format), "rows": export.rows}
    state.out.done({**summary, "file": str(target)}, f"{message} to {target}")


def _stopped(err: InvctlError, export: Export, out: Path | None) -> InvctlError:
    """`err`, saying how far the export got and what is left of it; its code and exit code."""
    if out is not None:
        left = f"; nothing was written to {out} (a file there is unchanged)"
    elif export.rows:
        left = " (stdout holds only those: discard them)"
    else:
        left = ""
    return type(err)(
        f"the {export.what} export stopped after {export.rows:,} rows{left}: {err.message}",
        code=err.code,
        hint=err.hint or "run the export again",
        details={**err.details, "rows_written": export.rows},
        request_id=err.request_id,
    )


@contextmanager
def _stdout() -> Iterator[TextIO]:
    """stdout as UTF-8 whatever the locale says, every row as the row is written."""
    sys.stdout.flush()
    handle = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
    try:
        yield handle
        handle.flush()
    finally:
        with suppress(ValueError, OSError):
            handle.detach()  # stdout stays open for what follows


def _hidden_beside(target: Path) -> str:
    """A new hidden file in `target`'s directory (so the final rename cannot cross disks)."""
    import tempfile

    try:
        if target.is_dir():
            raise IsADirectoryError(21, "it is a directory")
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise UsageError(
            f"cannot write {target}: {exc.strerror or exc}",
            code="usage.out",
            hint="--out names a file in a directory that exists and that you may write to",
        ) from None
    os.close(fd)
    return temp


@contextmanager
def _file(target: Path, temp: str) -> Iterator[TextIO]:
    """`temp`, renamed to `target` once every row is written; removed if the export fails,
    so a partial export never looks like a complete one."""
    try:
        with open(temp, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise
