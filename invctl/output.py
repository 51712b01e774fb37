"""The one output sink: rich tables for people, stable JSON for scripts.

Data goes to stdout; notes, warnings, progress and (in human mode) errors go to stderr,
so `invctl --json ... | jq` always sees clean JSON. rich is imported only when rendering.

Text from servers and files is of unknown origin: every string that reaches a terminal
passes through here and is escaped (`invwire.text.escape_for_terminal`), so an ESC, a
bidi override or a lone surrogate shows as `\\x1b`, `\\u202e`, `\\ud800` instead of acting
on the terminal. Strings reach rich only as `Text`, never as markup, so `[bold]` prints
as typed. JSON escapes the same characters as `\\uXXXX`, so it stays the exact data.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import typer

from invctl.errors import InvctlError
from invwire.text import escape_for_terminal, is_refused_char

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

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
        console = _console()
        for renderable in rendered(data, table=table, title=title, render=render):
            console.print(renderable)

    def done(self, data: Any, message: str) -> None:
        """Report a finished action: `data` as JSON, or `message` for people."""
        if self.json_mode:
            typer.echo(to_json(data))
        else:
            typer.echo(escape_for_terminal(message))

    def note(self, text: str) -> None:
        typer.echo(escape_for_terminal(text), err=True)

    def warn(self, text: str) -> None:
        typer.secho(f"warning: {escape_for_terminal(text)}", fg="yellow", err=True)

    def error(self, err: InvctlError) -> None:
        if self.json_mode:
            typer.echo(to_json({"error": err.to_dict()}))
            return
        headline = f"error: {err.message} [{err.code}]"
        typer.secho(escape_for_terminal(headline), fg="red", err=True)
        for line in detail_lines(err.details):
            typer.echo(f"  {line}", err=True)
        if err.hint:
            typer.echo(f"hint: {escape_for_terminal(err.hint)}", err=True)

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


def rendered(
    data: Any,
    *,
    table: Columns | None = None,
    title: str | None = None,
    render: Renderer | None = None,
) -> list[RenderableType]:
    """What `emit` prints for people: `render` (or a table/record) given terminal-safe data."""
    safe = terminal_safe(data)
    if render is not None:
        return list(render(safe))
    if isinstance(safe, list):
        return [rows_table(safe, table, title)]
    return record_view(safe, table, title)


def terminal_safe(data: Any) -> Any:
    """`data` with every string in it (keys too) escaped for a terminal."""
    if isinstance(data, str):
        return escape_for_terminal(data)
    if isinstance(data, dict):
        return {terminal_safe(key): terminal_safe(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [terminal_safe(item) for item in data]
    return data


# json.dumps leaves DEL, C1 controls, format characters, line separators and lone
# surrogates raw when ensure_ascii=False; only characters outside printable ASCII need a look.
_MAYBE_REFUSED = re.compile(r"[^\x00-\x7e]")


def to_json(data: Any) -> str:
    """Stable, readable JSON in which no string character can act on a terminal."""
    import json

    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    if text.isascii() and "\x7f" not in text:
        return text
    return _MAYBE_REFUSED.sub(_json_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    # Outside strings json.dumps writes only ASCII, so every match is inside a string,
    # where a `\uXXXX` escape is the same character to any JSON reader.
    char = match.group()
    if not is_refused_char(char):
        return char
    code = ord(char)
    if code > 0xFFFF:  # JSON spells a character beyond the BMP as a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def cell(value: Any) -> str:
    """A value as terminal-safe text for a table cell or a detail line."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        import json

        return escape_for_terminal(json.dumps(value, sort_keys=True, ensure_ascii=False))
    return escape_for_terminal(str(value))


def rows_table(
    rows: Sequence[Mapping[str, Any]], columns: Columns | None, title: str | None
) -> Table:
    from rich.table import Table
    from rich.text import Text

    spec = _columns(columns, rows)
    shown_title = None if title is None else _plain(title)
    table = Table(title=shown_title, title_justify="left", header_style="bold")
    table.caption = None if rows else "(none)"
    for column in spec:
        table.add_column(_plain(column.title), justify=column.justify, overflow="fold")
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
        grid.add_row(_plain(column.title), Text(cell(record.get(column.key))))
    return [_plain(title, style="bold underline"), grid] if title else [grid]


def _plain(text: str, style: str = "") -> Text:
    """`text` for rich as literal, terminal-safe text: never read as markup."""
    from rich.text import Text

    return Text(escape_for_terminal(text), style=style)


def detail_lines(details: Mapping[str, Any]) -> list[str]:
    """Human lines for an error's details; per-line errors and short order lines first, capped."""
    lines: list[str] = []
    for key, show in (("errors", _line_error), ("lines", _line_detail)):
        items = details.get(key)
        if isinstance(items, list):
            lines += _capped(items, show)
    listed = ("errors", "lines")
    lines += [f"{cell(key)}: {cell(value)}" for key, value in details.items() if key not in listed]
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
    rest = ", ".join(f"{cell(key)} {cell(value)}" for key, value in item.items() if key != "sku")
    return f"{cell(item['sku'])}: {rest}"


def _line_error(item: object) -> str:
    if not isinstance(item, dict):
        return cell(item)
    where = f"line {cell(item['line'])}: " if "line" in item else ""
    code = f" [{cell(item['code'])}]" if item.get("code") else ""
    return f"{where}{cell(item.get('message', ''))}{code}"


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
