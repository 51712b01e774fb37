"""Bar charts for people: a table whose last column is a bar per row, drawn with block
characters and scaled to the largest row, in the room the terminal leaves after the other
columns (80 columns included). Only tables get bars: tsv and JSON carry the numbers alone.

A bar's length is integer arithmetic on the values (cents, units), never floats: the same
data draws the same bars everywhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invctl.style import current_style
from invctl.views import COLUMN_GAP, Column, TableView, table_cell
from invwire.text import escape_for_terminal

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

FULL = "█"
EIGHTHS = ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")  # 1/8 to 7/8 of a cell
MIN_BAR = 10  # narrower, differences no longer show: the other columns give way instead
MAX_BAR = 40
BAR_KEY = "bar"

Measure = Callable[[Mapping[str, Any]], int]


def bar(value: int, largest: int, width: int) -> str:
    """`value` as a bar of at most `width` cells, which `largest` fills, to an eighth of a
    cell; a value above zero shows at least an eighth, so no sale is invisible."""
    if value <= 0 or largest <= 0 or width <= 0:
        return ""
    eighths = max(1, min(value * width * 8 // largest, width * 8))
    full, rest = divmod(eighths, 8)
    return FULL * full + EIGHTHS[rest]


def cents(amount: object) -> int:
    """A decimal amount as the server writes it (`"12.50"`) in whole cents; 0 if it is none."""
    from decimal import Decimal, InvalidOperation  # only when drawing: a fast `invctl --help`

    try:
        value = Decimal(str(amount)) * 100
    except InvalidOperation:
        return 0
    return int(value) if value.is_finite() else 0


def whole(value: object) -> int:
    """A count as the server writes it; 0 if it is none."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass
class BarChart:
    """`rows` under `columns`, then a bar of `measure(row)` in the width left over."""

    rows: Sequence[Mapping[str, Any]]
    columns: Sequence[Column]
    measure: Measure
    title: str | None = None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        if self.title:
            yield Text(escape_for_terminal(self.title), style="bold")
        width = options.max_width
        room = self.bar_width(width)
        values = [max(0, self.measure(row)) for row in self.rows]
        largest = max(values, default=0)
        rows = [
            {**row, BAR_KEY: bar(value, largest, room)}
            for row, value in zip(self.rows, values, strict=True)
        ]
        yield TableView(rows, [*self.columns, Column(BAR_KEY, " ")]).table(width)

    def bar_width(self, width: int) -> int:
        """What `width` leaves for the bars after the other columns, within MIN_BAR-MAX_BAR."""
        from rich.cells import cell_len

        style = current_style()
        used = 0
        for column in self.columns:
            cells = [table_cell(row.get(column.key), style) for row in self.rows]
            used += max([cell_len(column.title), *map(cell_len, cells)]) + COLUMN_GAP
        return max(MIN_BAR, min(MAX_BAR, width - used))
