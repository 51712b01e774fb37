"""Tables and records for people, and the same as tab-separated lines for pipes.

A table fits the terminal (80 columns included) and never wraps a row onto a second line:
when the columns do not fit, text gives way first (cut with `…`), ids, times, numbers and
short words only when nothing else can; UUIDs show their first 8 characters
(`invctl.ids`), times the invocation's time style (`invctl.style`). tsv writes every value
whole. Every string shown is terminal-safe (`invwire.text.escape_for_terminal`) and reaches
rich as `Text`, never as markup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from invctl.ids import is_uuid, short_id
from invctl.style import Style, current_style, parse_moment
from invwire.text import escape_for_terminal

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.table import Table
    from rich.text import Text

COLUMN_GAP = 2  # spaces between two table columns
MIN_CUT_WIDTH = 5  # a column cut to fit keeps at least this many characters
MIN_WRAP_WIDTH = 12  # a column that wraps to fit keeps at least this many characters
MIN_HEADER_WIDTH = 7  # a header cut over a narrower column keeps this many characters
SHORT_WORD = 10  # a value this short without spaces is kept whole, like a number


@dataclass(frozen=True)
class Column:
    """A table column. `wrap`: its cells may wrap onto more lines instead of being cut when
    the table is too wide (for views that are not lists, e.g. long paths); list views keep
    every row on one line. `keep`: its values are kept whole like numbers and short words
    (a state such as `auth-failed`, a little longer than SHORT_WORD)."""

    key: str
    header: str = ""
    justify: Literal["left", "right"] = "left"
    wrap: bool = False
    keep: bool = False

    @property
    def title(self) -> str:
        return self.header or self.key.replace("_", " ")


Columns = Sequence[str | Column]


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


def table_cell(value: Any, style: Style | None = None) -> str:
    """A value as a table shows it: a UUID cut to 8 characters, a time in the time style."""
    if isinstance(value, str):
        if is_uuid(value):
            return short_id(value)
        moment = parse_moment(value)
        if moment is not None:
            return (style or current_style()).moment(moment)
    return cell(value)


def record_cell(value: Any, style: Style | None = None) -> str:
    """A value as a record (one object) shows it: ids whole, times in the time style."""
    moment = parse_moment(value)
    return cell(value) if moment is None else (style or current_style()).moment(moment)


def tsv_cell(value: Any, style: Style | None = None) -> str:
    """A value as one tab-separated field: the data whole (ids, ISO times), no placeholders."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    moment = parse_moment(value)
    if moment is not None:
        return (style or current_style()).iso_moment(moment)
    if isinstance(value, dict | list):
        import json

        return escape_for_terminal(json.dumps(value, sort_keys=True, ensure_ascii=False))
    return escape_for_terminal(str(value))


@dataclass
class TableView:
    """Rows under column headers: a table that fits the width, or tsv (`tsv_lines`)."""

    rows: Sequence[Mapping[str, Any]]
    columns: list[Column]
    title: str | None = None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.title:
            yield _plain(self.title, style="bold")
        yield self.table(options.max_width)

    def table(self, width: int) -> Table:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        style = current_style()
        cells = [[table_cell(row.get(c.key), style) for c in self.columns] for row in self.rows]
        headers = [escape_for_terminal(column.title) for column in self.columns]
        kinds = [self._kind(column) for column in self.columns]
        natural = _natural_widths(headers, cells)
        values = _natural_widths(["" for _ in headers], cells)
        widths = fit_widths(natural, width, kinds=kinds, values=values)
        table = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, COLUMN_GAP - 1, 0, 0),
            header_style="bold",
        )
        table.caption = None if self.rows else "(none)"
        for column, header, column_width in zip(self.columns, headers, widths, strict=True):
            table.add_column(
                Text(header),
                justify=column.justify,
                no_wrap=not column.wrap,
                overflow="fold" if column.wrap else "ellipsis",
                width=column_width,
            )
        for row in cells:
            table.add_row(*(Text(text) for text in row))
        return table

    def _kind(self, column: Column) -> str:
        if column.wrap:
            return "wrap"
        if column.keep:
            return "keep"
        whole = all(_keep_whole(row.get(column.key)) for row in self.rows)
        return "keep" if whole else "cut"

    def tsv_lines(self) -> list[str]:
        style = current_style()
        lines = ["\t".join(escape_for_terminal(column.key) for column in self.columns)]
        for row in self.rows:
            lines.append("\t".join(tsv_cell(row.get(c.key), style) for c in self.columns))
        return lines


@dataclass
class RecordView:
    """One object: a title and a two-column grid of field names and values."""

    record: Mapping[str, Any]
    columns: list[Column] = field(default_factory=list)
    title: str | None = None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.table import Table
        from rich.text import Text

        if self.title:
            yield _plain(self.title, style="bold underline")
        style = current_style()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column(overflow="fold")
        for column in self.columns:
            value = record_cell(self.record.get(column.key), style)
            grid.add_row(_plain(column.title), Text(value))
        yield grid

    def tsv_lines(self) -> list[str]:
        style = current_style()
        return [
            f"{escape_for_terminal(column.key)}\t{tsv_cell(self.record.get(column.key), style)}"
            for column in self.columns
        ]


_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?", re.ASCII)


def _keep_whole(value: Any) -> bool:
    """Values a table cuts only when text cannot give way: numbers, ids, times, yes/no,
    and short words (a status, a role, a short SKU)."""
    if value is None or isinstance(value, bool | int | float):
        return True
    if not isinstance(value, str):
        return False
    short_word = len(value) <= SHORT_WORD and not any(char.isspace() for char in value)
    return bool(short_word or _NUMBER.fullmatch(value) or is_uuid(value) or parse_moment(value))


def _natural_widths(headers: list[str], rows: list[list[str]]) -> list[int]:
    from rich.cells import cell_len

    widths = [cell_len(header) for header in headers]
    for row in rows:
        widths = [max(width, cell_len(text)) for width, text in zip(widths, row, strict=True)]
    return widths


def fit_widths(
    natural: Sequence[int],
    width: int,
    gap: int = COLUMN_GAP,
    kinds: Sequence[str] | None = None,
    values: Sequence[int] | None = None,
) -> list[int]:
    """Column widths that fit `width` (`values`: each column's widest value, its header
    aside). Columns give way by kind: those that may `wrap` first; then the headers of
    those to `keep` whole (ids, times, numbers, short words: cut, they would mislead), down
    to their values; then text that can be `cut`, the widest first, down to MIN_CUT_WIDTH;
    and only then the values kept whole. What still cannot fit is left to rich, which then
    cuts every column."""
    room = width - gap * max(0, len(natural) - 1)
    kinds = kinds or ["cut"] * len(natural)
    values = values or natural
    steps = (
        ("wrap", lambda i: MIN_WRAP_WIDTH),
        ("keep", lambda i: max(values[i], MIN_HEADER_WIDTH)),
        ("cut", lambda i: MIN_CUT_WIDTH),
        ("keep", lambda i: MIN_CUT_WIDTH),
    )
    widths = list(natural)
    for kind, floor in steps:
        if sum(widths) <= room:
            break
        chosen = [i for i, k in enumerate(kinds) if k == kind]
        others = sum(widths) - sum(widths[i] for i in chosen)
        shrunk = _water_fill([widths[i] for i in chosen], room - others, [floor(i) for i in chosen])
        for index, new in zip(chosen, shrunk, strict=True):
            widths[index] = new
    return widths


def _water_fill(natural: Sequence[int], room: int, floors: Sequence[int]) -> list[int]:
    """The widest columns shrink first, none below its floor (or its natural width)."""
    floors = [min(n, floor) for n, floor in zip(natural, floors, strict=True)]

    def capped(cap: int) -> list[int]:
        return [max(low, min(n, cap)) for n, low in zip(natural, floors, strict=True)]

    low, high = 0, max(natural, default=0)
    while low < high:  # the largest cap whose widths still fit
        middle = (low + high + 1) // 2
        low, high = (middle, high) if sum(capped(middle)) <= room else (low, middle - 1)
    widths = capped(low)
    spare = room - sum(widths)
    for index, n in enumerate(natural):  # share what the cap left over, left to right
        if spare <= 0:
            break
        if widths[index] < n:
            widths[index] += 1
            spare -= 1
    return widths


def tsv_text(blocks: Iterable[Any]) -> str:
    """Blocks as tab-separated lines, a blank line between two blocks; titles left out."""
    parts = ["\n".join(lines) for lines in map(_tsv_block, blocks) if lines]
    return "\n\n".join(parts) + "\n" if parts else ""


def _tsv_block(block: Any) -> list[str]:
    from rich.table import Table
    from rich.text import Text

    if isinstance(block, TableView | RecordView):
        return block.tsv_lines()
    if isinstance(block, Text):
        return block.plain.splitlines()
    if isinstance(block, str):
        return block.splitlines()
    if isinstance(block, Table):
        return _rich_table_tsv(block)
    return _plain_render(block)


def _rich_table_tsv(table: Table) -> list[str]:
    """A table a command built itself (a summary grid): its cells as tab-separated lines."""
    columns = table.columns
    lines: list[str] = []
    if table.show_header and any(_cell_text(column.header) for column in columns):
        lines.append("\t".join(_cell_text(column.header) for column in columns))
    cells = [list(column.cells) for column in columns]
    for index in range(table.row_count):
        lines.append("\t".join(_cell_text(column[index]) for column in cells))
    return lines


def _cell_text(renderable: Any) -> str:
    from rich.text import Text

    text = renderable.plain if isinstance(renderable, Text) else str(renderable)
    return escape_for_terminal(text)


def _plain_render(renderable: Any) -> list[str]:
    from rich.console import Console

    console = Console(width=10_000, color_system=None, highlight=False, soft_wrap=True)
    with console.capture() as captured:
        console.print(renderable)
    return [line.rstrip() for line in captured.get().splitlines()]


def _plain(text: str, style: str = "") -> Text:
    """`text` for rich as literal, terminal-safe text: never read as markup."""
    from rich.text import Text

    return Text(escape_for_terminal(text), style=style)


def _columns(columns: Columns | None, rows: Sequence[Mapping[str, Any]]) -> list[Column]:
    if columns is None:
        keys: dict[str, None] = {}
        for row in rows:
            keys.update(dict.fromkeys(row))
        columns = list(keys)
    return [c if isinstance(c, Column) else Column(c) for c in columns]
