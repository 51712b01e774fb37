"""The one output sink: tables for people, tab-separated lines for pipes, JSON for scripts.

Data goes to stdout; notes, warnings, progress and (in human mode) errors go to stderr,
so `invctl --json ... | jq` always sees clean JSON. rich is imported only when rendering.
How data looks is decided once per invocation (`invctl.style`: the format, the time style,
colour) and drawn by `invctl.views` (tables that fit 80 columns, short ids, tsv).

Text from servers and files is of unknown origin: every string that reaches a terminal
passes through here and is escaped (`invwire.text.escape_for_terminal`), so an ESC, a
bidi override or a lone surrogate shows as `\\x1b`, `\\u202e`, `\\ud800` instead of acting
on the terminal (a tab or a newline in a tsv field shows as `\\x09`, `\\x0a`, so a field
is always one field). Strings reach rich only as `Text`, never as markup, so `[bold]`
prints as typed. JSON escapes the same characters as `\\uXXXX`, so it stays the exact data.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import typer

from invctl.errors import InvctlError
from invctl.style import (
    OutputFormat,
    Style,
    current_style,
    default_format,
    people_time,
    styled,
    use_style,
    wants_color,
)
from invctl.views import (
    Column,
    Columns,
    RecordView,
    TableView,
    _columns,
    cell,
    tsv_text,
)
from invwire.text import escape_all, escape_for_terminal, is_refused_char

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = [
    "Column",
    "Columns",
    "Output",
    "OutputFormat",
    "Renderer",
    "Style",
    "cell",
    "current_style",
    "default_format",
    "detail_lines",
    "people_time",
    "record_view",
    "rendered",
    "rows_table",
    "to_json",
    "use_style",
]

MAX_LISTED_ERRORS = 20
Renderer = Callable[[Any], Iterable["RenderableType"]]


class Output:
    def __init__(self, *, json_mode: bool = False, style: Style | None = None) -> None:
        chosen = style or current_style()
        self.style = replace(chosen, format=OutputFormat.json) if json_mode else chosen

    @property
    def json_mode(self) -> bool:
        return self.style.json

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
        with styled(self.style):
            blocks = rendered(data, table=table, title=title, render=render)
            if self.style.format is OutputFormat.tsv:
                typer.echo(tsv_text(blocks), nl=False)
                return
            console = _console()
            for block in blocks:
                console.print(block)

    def emit_line(self, data: Any, *, render: Renderer | None = None) -> None:
        """One item of a stream (`--watch`): JSON on a single line (JSON Lines); for people,
        as `emit` prints it, then a blank line."""
        if self.json_mode:
            typer.echo(to_json(data, one_line=True))
            return
        self.emit(data, render=render)
        typer.echo("")

    def done(self, data: Any, message: str) -> None:
        """Report a finished action: `data` as JSON, or `message` for people."""
        if self.json_mode:
            typer.echo(to_json(data))
        else:
            typer.echo(escape_for_terminal(message))

    def note(self, text: str) -> None:
        typer.echo(escape_for_terminal(text), err=True)

    def warn(self, text: str) -> None:
        self._to_stderr(f"warning: {escape_for_terminal(text)}", "yellow")

    def error(self, err: InvctlError) -> None:
        if self.json_mode:
            typer.echo(to_json({"error": err.to_dict()}))
            return
        self._to_stderr(escape_for_terminal(f"error: {err.message} [{err.code}]"), "red")
        for line in detail_lines(err.details):
            typer.echo(f"  {line}", err=True)
        if err.hint:
            typer.echo(f"hint: {escape_for_terminal(err.hint)}", err=True)

    def _to_stderr(self, line: str, color: str) -> None:
        if wants_color(typer.get_text_stream("stderr")):
            typer.secho(line, fg=color, err=True, color=True)  # click would strip it in a pipe
        else:
            typer.echo(line, err=True)

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
    safe = escape_all(data)
    if render is not None:
        return list(render(safe))
    if isinstance(safe, list):
        return [rows_table(safe, table, title)]
    return record_view(safe, table, title)


# json.dumps leaves DEL, C1 controls, format characters, line separators and lone
# surrogates raw when ensure_ascii=False; only characters outside printable ASCII need a look.
_MAYBE_REFUSED = re.compile(r"[^\x00-\x7e]")


def to_json(data: Any, *, one_line: bool = False) -> str:
    """Stable, readable JSON in which no string character can act on a terminal; with
    `one_line`, compact on a single line (a JSON Lines record)."""
    import json

    text = json.dumps(
        data,
        indent=None if one_line else 2,
        separators=(",", ":") if one_line else None,
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
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


def rows_table(
    rows: Sequence[Mapping[str, Any]], columns: Columns | None, title: str | None
) -> TableView:
    return TableView(rows, _columns(columns, rows), title)


def record_view(
    record: Mapping[str, Any], columns: Columns | None, title: str | None
) -> list[RenderableType]:
    """A title line and a two-column grid of field names and values."""
    return [RecordView(record, _columns(columns, [record]), title)]


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


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False)
