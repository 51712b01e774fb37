"""The one output sink: rich tables for people, stable JSON for scripts.

Data goes to stdout; notes, warnings, progress and (in human mode) errors go to stderr,
so `invctl --json ... | jq` always sees clean JSON. rich is imported only when rendering.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import typer

from invctl.errors import InvctlError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

MAX_LISTED_ERRORS = 20


@dataclass(frozen=True)
class Column:
    key: str
    header: str = ""
    justify: Literal["left", "right"] = "left"

    @property
    def title(self) -> str:
        return self.header or self.key.replace("_", " ")


Columns = Sequence[str | Column]
Renderer = Callable[[Any], Iterable["RenderableType"]]


class Output:
    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode

    def emit(
        self,
        data: Any,
        *,
        table: Columns | None = None,
        title: str | None = None,
        render: Renderer | None = None,
    ) -> None:
        """Print `data`: as JSON, through `render`, or as a table (list) / record (dict)."""
        if self.json_mode:
            typer.echo(to_json(data))
            return
        if render is not None:
            renderables = list(render(data))
        elif isinstance(data, list):
            renderables = [rows_table(data, table, title)]
        else:
            renderables = record_view(data, table, title)
        console = _console()
        for renderable in renderables:
            console.print(renderable)

    def done(self, data: Any, message: str) -> None:
        """Report a finished action: `data` as JSON, or `message` for people."""
        if self.json_mode:
            typer.echo(to_json(data))
        else:
            typer.echo(message)

    def note(self, text: str) -> None:
        typer.echo(text, err=True)

    def warn(self, text: str) -> None:
        typer.secho(f"warning: {text}", fg="yellow", err=True)

    def error(self, err: InvctlError) -> None:
        if self.json_mode:
            typer.echo(to_json({"error": err.to_dict()}))
            return
        typer.secho(f"error: {err.message} [{err.code}]", fg="red", err=True)
        for line in detail_lines(err.details):
            typer.echo(f"  {line}", err=True)
        if err.hint:
            typer.echo(f"hint: {err.hint}", err=True)

    @contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[int], None]]:
        """A progress bar on a terminal's stderr (none for JSON or pipes); yields `advance(n)`."""
        console = None if self.json_mode else _console(stderr=True)
        if console is None or not console.is_terminal:
            yield lambda _n: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        columns = (
            "{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)


def to_json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def rows_table(
    rows: Sequence[Mapping[str, Any]], columns: Columns | None, title: str | None
) -> Table:
    from rich.table import Table
    from rich.text import Text

    spec = _columns(columns, rows)
    table = Table(title=title, title_justify="left", header_style="bold")
    table.caption = None if rows else "(none)"
    for column in spec:
        table.add_column(column.title, justify=column.justify, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell(row.get(column.key))) for column in spec))
    return table


def record_view(
    record: Mapping[str, Any], columns: Columns | None, title: str | None
) -> list[RenderableType]:
    """A title line and a two-column grid of field names and values."""
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for column in _columns(columns, [record]):
        grid.add_row(Text(column.title), Text(cell(record.get(column.key))))
    return [Text(title, style="bold underline"), grid] if title else [grid]


def detail_lines(details: Mapping[str, Any]) -> list[str]:
    """Human lines for an error's details; per-line errors and short order lines first, capped."""
    lines: list[str] = []
    for key, show in (("errors", _line_error), ("lines", _line_detail)):
        items = details.get(key)
        if isinstance(items, list):
            lines += _capped(items, show)
    listed = ("errors", "lines")
    lines += [f"{key}: {cell(value)}" for key, value in details.items() if key not in listed]
    return lines


def _capped(items: list[Any], show: Callable[[object], str]) -> list[str]:
    shown = [show(item) for item in items[:MAX_LISTED_ERRORS]]
    if len(items) > MAX_LISTED_ERRORS:
        shown.append(f"... and {len(items) - MAX_LISTED_ERRORS} more")
    return shown


def _line_detail(item: object) -> str:
    """An order line named in an error, e.g. `MILK-1L: requested 3, available 1`."""
    if not isinstance(item, dict) or "sku" not in item:
        return cell(item)
    rest = ", ".join(f"{key} {cell(value)}" for key, value in item.items() if key != "sku")
    return f"{item['sku']}: {rest}"


def _line_error(item: object) -> str:
    if not isinstance(item, dict):
        return cell(item)
    where = f"line {item['line']}: " if "line" in item else ""
    code = f" [{item['code']}]" if item.get("code") else ""
    return f"{where}{item.get('message', '')}{code}"


def _columns(columns: Columns | None, rows: Sequence[Mapping[str, Any]]) -> list[Column]:
    if columns is None:
        keys: dict[str, None] = {}
        for row in rows:
            keys.update(dict.fromkeys(row))
        columns = list(keys)
    return [c if isinstance(c, Column) else Column(c) for c in columns]


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False)
