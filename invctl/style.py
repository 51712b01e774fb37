"""How data looks for people, decided once per invocation: the output format, the time
style and colour.

- the format: `table` on a terminal, `tsv` when stdout is not one, `json` when asked
  (`--output/-o`, `INVCTL_OUTPUT`, `--json`);
- times in one style: local time to the second (`2026-11-29 11:00:00`), or UTC with
  `--utc` (`2026-11-29 10:00:00Z`); tsv writes them as ISO 8601 with the offset;
- colour only on a terminal and never with NO_COLOR (errors and warnings included).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import IO

from invwire.text import escape_for_terminal


class OutputFormat(StrEnum):
    table = "table"
    tsv = "tsv"
    json = "json"


def default_format(stream: IO[str] | None = None) -> OutputFormat:
    """Tables for a person at a terminal; tab-separated lines for a pipe or a file."""
    return OutputFormat.table if _is_terminal(stream or sys.stdout) else OutputFormat.tsv


@dataclass(frozen=True)
class Style:
    """How this invocation shows data; the root command sets it once (`use_style`)."""

    format: OutputFormat = OutputFormat.table
    utc: bool = False

    @property
    def json(self) -> bool:
        return self.format is OutputFormat.json

    def moment(self, moment: datetime) -> str:
        """A moment for people: local time to the second, or UTC marked `Z`."""
        shown = _in_zone(moment, self.utc)
        if shown is None:
            return moment.isoformat(timespec="seconds")
        return f"{shown.year:04d}-{shown:%m-%d %H:%M:%S}{'Z' if self.utc else ''}"

    def iso_moment(self, moment: datetime) -> str:
        """A moment for tsv: ISO 8601 to the second, with its offset (`Z` for UTC)."""
        shown = _in_zone(moment, self.utc)
        if shown is None:
            return moment.isoformat(timespec="seconds")
        text = shown.isoformat(timespec="seconds")
        return text.removesuffix("+00:00") + "Z" if self.utc else text


_STYLE: ContextVar[Style | None] = ContextVar("invctl_output_style", default=None)


def use_style(style: Style) -> None:
    """Make `style` the one every view and `Output` of this invocation renders with."""
    _STYLE.set(style)


def current_style() -> Style:
    return _STYLE.get() or Style()


@contextmanager
def styled(style: Style) -> Iterator[None]:
    token = _STYLE.set(style)
    try:
        yield
    finally:
        _STYLE.reset(token)


def wants_color(stream: IO[str]) -> bool:
    """Colour on a terminal; never with NO_COLOR (https://no-color.org); FORCE_COLOR forces."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return _is_terminal(stream) and os.environ.get("TERM") != "dumb"


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


# --- times ----------------------------------------------------------------------------------

_ISO_MOMENT = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?", re.ASCII
)


def parse_moment(value: object) -> datetime | None:
    """An ISO 8601 date and time from a server, as an aware datetime (naive means UTC)."""
    if not isinstance(value, str) or not _ISO_MOMENT.fullmatch(value):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def people_time(value: object) -> str:
    """`value` (an ISO 8601 string or a datetime) in this invocation's time style; text that
    is not a time, unchanged (escaped)."""
    moment = value if isinstance(value, datetime) else parse_moment(value)
    if moment is None:
        return "-" if value is None else escape_for_terminal(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return current_style().moment(moment)


def _in_zone(moment: datetime, utc: bool) -> datetime | None:
    """`moment` in UTC or local time; None when it cannot be (a server's year 1 or 9999
    must not end the command: it is then shown as it came, with its offset)."""
    try:
        if utc:
            return moment.astimezone(UTC)
        zone = _named_zone()
        return moment.astimezone(zone) if zone else moment.astimezone()
    except (OverflowError, OSError, ValueError):
        return None


def people_zone() -> tzinfo | None:
    """The zone of moments people type and read: UTC with --utc, else the one TZ names,
    else None (the system's own rules)."""
    return UTC if current_style().utc else _named_zone()


def _named_zone() -> tzinfo | None:
    """The zone TZ names (read on each call: a test or a wrapper may set it late), else
    None for the system's own rules."""
    name = os.environ.get("TZ", "").removeprefix(":")
    if not name:
        return None
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(name)
    except (ValueError, OSError):  # a POSIX rule such as "CET-1CEST", or no such zone
        return None
