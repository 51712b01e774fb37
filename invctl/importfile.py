"""Reading and validating batch import files (CSV or JSON Lines); standard library only.

Rows are checked with the same rules central applies, so bad rows are reported with their
physical line number before anything is sent. Good rows come out in the wire shape of
`POST /api/v1/import` (see docs/wire.md).

A file of any size is read as a stream in bounded memory: a line is read at most
MAX_LINE_CHARS characters at a time (a longer line is a row error), every row error is
counted but only the first MAX_KEPT_ERRORS are kept, and good rows wait in a temporary file
until they are sent. Whatever a file holds (bytes that are not UTF-8, numbers of any length,
control characters) becomes a row error with a stable code and its line number.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from invctl.errors import ImportFileError
from invwire.rules import MAX_PRICE, MAX_STOCK_QUANTITY, is_sku
from invwire.text import escape_for_terminal, first_refused_char

PRICE_PATTERN = re.compile(r"(\d+)(\.\d{1,2})?")
QUANTITY_PATTERN = re.compile(r"\d+")
KINDS = ("category", "product", "stock")
FIELDS = ("kind", "name", "sku", "price", "category", "description", "active", "quantity")
MAX_NAME = 200
MAX_LINE_CHARS = 65_536
MAX_KEPT_ERRORS = 100
MAX_SHOWN_VALUE = 32
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# Files are decoded with errors="surrogateescape": each byte that is not UTF-8 becomes one
# of these lone surrogates, so a bad byte costs its row, not the whole file.
NOT_UTF8 = re.compile("[\udc80-\udcff]")

Row = dict[str, Any]


class FieldError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class RowError:
    line: int
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "code": self.code, "message": self.message}


# One record of a file: its wire row, or None and every problem found in it.
Checked = tuple[Row | None, list[RowError]]


@dataclass
class ErrorLog:
    """Every row error, counted exactly; only the first `keep` are kept, so a file of a
    million bad rows takes no more memory than one of a hundred."""

    keep: int = MAX_KEPT_ERRORS
    kept: list[RowError] = field(default_factory=list)
    count: int = 0
    bad_lines: int = 0

    def add(self, errors: Sequence[RowError]) -> None:
        """Log the errors of one row, or of one chunk central rejected (distinct lines)."""
        self.add_reported(errors, len(errors), len({error.line for error in errors}))

    def add_reported(self, errors: Sequence[RowError], count: int, bad_lines: int) -> None:
        """Log an answer that lists `errors`, of `count` errors on `bad_lines` lines in all
        (central lists the first 100 and counts the rest)."""
        self.count += max(count, len(errors))
        self.bad_lines += max(bad_lines, len({error.line for error in errors}))
        room = self.keep - len(self.kept)
        if room > 0:
            self.kept.extend(errors[:room])

    @property
    def omitted(self) -> int:
        return self.count - len(self.kept)


@dataclass
class CheckedFile:
    """A checked file: its logged errors, and its good rows waiting on disk to be sent."""

    spool: TextIO
    errors: ErrorLog = field(default_factory=ErrorLog)
    good_rows: int = 0

    @property
    def rows(self) -> int:
        """The file's rows: the good ones and the lines with errors."""
        return self.good_rows + self.errors.bad_lines

    def take(self, row: Row | None, errors: list[RowError]) -> None:
        if errors:
            self.errors.add(errors)
        elif row is not None:
            self.spool.write(json.dumps(row) + "\n")
            self.good_rows += 1

    def chunks(self, size: int) -> Iterator[list[Row]]:
        """The good rows, in file order, `size` at a time."""
        self.spool.seek(0)
        chunk: list[Row] = []
        for text in self.spool:
            chunk.append(json.loads(text))
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def check_sku(value: object) -> str:
    if not is_sku(value):
        raise FieldError(
            "sku.invalid",
            f"SKU {shown(value)} must be 1-64 uppercase letters, digits, '.', '_' or '-' "
            "and start with a letter or digit",
        )
    return value


def check_name(value: object, what: str = "name") -> str:
    if not isinstance(value, str):
        raise FieldError(f"{what}.invalid", f"{what} must be text")
    if not value:
        raise FieldError(f"{what}.missing", f"{what} is required")
    if len(value) > MAX_NAME:
        raise FieldError(f"{what}.too_long", f"{what} is longer than {MAX_NAME} characters")
    return _clean(value, what)


def _clean(value: str, what: str) -> str:
    """`value`, if it holds no character that invwire.text refuses (ESC, bidi, surrogate)."""
    index = first_refused_char(value)
    if index is not None:
        char = escape_for_terminal(value[index])
        raise FieldError(
            f"{what}.invalid",
            f"{what} holds a control or invisible character ({char}) at position {index + 1}",
        )
    return value


def check_price(value: object) -> str:
    """A non-negative amount below MAX_PRICE with at most two decimals, e.g. `"1.50"`."""
    text = _number_text(value, floats=True)
    match = PRICE_PATTERN.fullmatch(text) if text is not None else None
    if text is None or match is None:
        raise FieldError(
            "price.invalid",
            f"price {shown(value)} must be a non-negative amount with at most 2 decimals, "
            "e.g. 1.25",
        )
    # Count digits first: Decimal arithmetic on 29 digits overflows its 28-digit context.
    if _more_digits_than(match.group(1), MAX_PRICE) or Decimal(text) >= MAX_PRICE:
        raise FieldError("price.invalid", f"price {shown(value)} must be below {MAX_PRICE:,}")
    return str(Decimal(text).quantize(Decimal("0.01")))


def check_quantity(value: object) -> int:
    text = _number_text(value)
    if text is None or not QUANTITY_PATTERN.fullmatch(text):
        raise FieldError("quantity.invalid", f"quantity {shown(value)} must be a whole number >= 0")
    digits = text.lstrip("0") or "0"
    # Count digits first: int() refuses more than 4,300 digits with a ValueError.
    if _more_digits_than(digits, MAX_STOCK_QUANTITY) or int(digits) > MAX_STOCK_QUANTITY:
        raise FieldError(
            "quantity.invalid", f"quantity {shown(value)} is above {MAX_STOCK_QUANTITY:,}"
        )
    return int(digits)


def _number_text(value: object, *, floats: bool = False) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | Decimal) or (floats and isinstance(value, float)):
        return str(value)
    return None


def _more_digits_than(digits: str, bound: int) -> bool:
    return len(digits.lstrip("0")) > len(str(bound))


def check_active(value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else "?"
    if text == "":
        return None
    if text in TRUE_WORDS | FALSE_WORDS:
        return text in TRUE_WORDS
    raise FieldError("active.invalid", f"active {shown(value)} must be true/false, 1/0 or yes/no")


def shown(value: object) -> str:
    """`value` for a message: its repr (which escapes control characters), cut short."""
    text = str(value) if isinstance(value, Decimal) else repr(value)
    if len(text) <= MAX_SHOWN_VALUE:
        return text
    return f"{text[:MAX_SHOWN_VALUE]}... ({len(text):,} characters)"


def validate_row(line: int, raw: Mapping[str, object]) -> Checked:
    """Check one row; return its wire form, or None and every problem found."""
    row: Row = {"line": line}
    problems: list[FieldError] = []

    def take(key: str, check: Callable[[object], object], required: bool = True) -> None:
        value = raw.get(key)
        if value is None or value == "":
            if required:
                problems.append(FieldError(f"{key}.missing", f"{key} is required"))
            return
        try:
            row[key] = check(value)
        except FieldError as exc:
            problems.append(exc)

    kind = raw.get("kind")
    kind = kind.strip().lower() if isinstance(kind, str) else kind
    if kind not in KINDS:
        allowed = ", ".join(KINDS)
        message = (
            f"kind {shown(kind)} must be one of {allowed}"
            if kind
            else f"kind is required: {allowed}"
        )
        return None, [RowError(line, "kind.invalid", message)]
    row["kind"] = kind
    for key, check, required in _RULES[str(kind)]:
        take(key, check, required)
    if problems:
        return None, [RowError(line, p.code, p.message) for p in problems]
    return row, []


def _check_description(value: object) -> str:
    if not isinstance(value, str):
        raise FieldError("description.invalid", "description must be text")
    return _clean(value, "description")


def _check_active_present(value: object) -> bool:
    active = check_active(value)
    if active is None:
        raise FieldError("active.invalid", "active must be true/false, 1/0 or yes/no")
    return active


Rule = tuple[str, Callable[[object], object], bool]
_RULES: dict[str, list[Rule]] = {
    "category": [("name", check_name, True)],
    "product": [
        ("sku", check_sku, True),
        ("name", check_name, True),
        ("price", check_price, True),
        ("category", lambda v: check_name(v, "category"), True),
        ("description", _check_description, False),
        ("active", _check_active_present, False),
        ("quantity", check_quantity, False),
    ],
    "stock": [("sku", check_sku, True), ("quantity", check_quantity, True)],
}


class _Lines:
    """The physical lines of a file for a parser, counted. A line of MAX_LINE_CHARS or more
    is held back and its number noted, so that one endless line cannot fill memory.

    `pieces` are lines, or parts of a long line (`readline(MAX_LINE_CHARS)`).
    """

    def __init__(self, pieces: Iterable[str]) -> None:
        self._pieces = pieces
        self.count = 0
        self._record_start = 0
        self._too_long: list[int] = []

    def __iter__(self) -> Iterator[str]:
        in_long_line = False
        for piece in self._pieces:
            if in_long_line:
                in_long_line = not _ends_line(piece)
                continue
            self.count += 1
            if len(piece) >= MAX_LINE_CHARS:
                self._too_long.append(self.count)
                in_long_line = not _ends_line(piece)
                continue
            if not self._record_start:
                self._record_start = self.count
            yield piece

    def start_of_record(self) -> int:
        """The first line of the record just read; the next record starts afresh."""
        start, self._record_start = self._record_start, 0
        return start or self.count

    def held_back(self) -> Iterator[Checked]:
        """A row error for each line held back since the last call."""
        lines, self._too_long = self._too_long, []
        message = f"the line is longer than {MAX_LINE_CHARS:,} characters"
        for line in lines:
            yield None, [RowError(line, "row.too_long", message)]


def _ends_line(piece: str) -> bool:
    return piece.endswith(("\n", "\r"))


def parse_csv(pieces: Iterable[str]) -> Iterator[Checked]:
    """Each record of a CSV file, checked, in file order (blank records are skipped)."""
    lines = _Lines(pieces)
    reader = csv.reader(lines)
    columns = _csv_columns(reader, lines)
    unknown = [name for name in columns if name not in FIELDS]
    if unknown:
        message = f"unknown column(s) {_listed(unknown)}; known: {', '.join(FIELDS)}"
        yield None, [RowError(1, "column.unknown", message)]
    while True:
        try:
            cells = next(reader, None)
        except csv.Error as exc:  # e.g. a quoted field that never ends; reading goes on
            yield from lines.held_back()
            yield None, [RowError(lines.start_of_record(), "row.malformed", f"bad CSV: {exc}")]
            continue
        yield from lines.held_back()
        if cells is None:
            return
        record = _csv_record(lines.start_of_record(), cells, columns)
        if record is not None:
            yield record


def _csv_columns(reader: Iterator[list[str]], lines: _Lines) -> list[str]:
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ImportFileError(f"the CSV header is not valid: {exc}", code="import.header") from exc
    lines.start_of_record()
    if next(lines.held_back(), None) is not None:
        raise ImportFileError(
            f"the CSV header is longer than {MAX_LINE_CHARS:,} characters", code="import.header"
        )
    if header is None:
        raise ImportFileError("the CSV file is empty; it needs a header row", code="import.empty")
    if _first_not_utf8(header) is not None:
        raise ImportFileError(
            "the CSV header is not UTF-8 text",
            code="import.encoding",
            hint="save the file as UTF-8",
        )
    return _csv_header(header)


def _csv_header(header: list[str]) -> list[str]:
    columns = [name.strip().lower() for name in header]
    if "kind" not in columns:
        raise ImportFileError(
            "the CSV header has no 'kind' column",
            code="import.header",
            hint=f"the first line names the columns: {','.join(FIELDS)}",
        )
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        raise ImportFileError(
            f"the CSV header repeats column(s) {_listed(duplicates)}", code="import.header"
        )
    return columns


def _csv_record(line: int, cells: list[str], columns: list[str]) -> Checked | None:
    if not any(cell.strip() for cell in cells):
        return None
    if len(cells) > len(columns):
        message = f"row has {len(cells)} fields but the header has {len(columns)}"
        return None, [RowError(line, "row.malformed", message)]
    bad_byte = _first_not_utf8(cells)
    if bad_byte is not None:
        return None, [_not_utf8_error(line, bad_byte)]
    raw = {name: cell.strip() for name, cell in zip(columns, cells, strict=False)}
    return validate_row(line, raw)


def parse_jsonl(pieces: Iterable[str]) -> Iterator[Checked]:
    """Each line of a JSON Lines file, checked, in file order (blank lines are skipped)."""
    lines = _Lines(pieces)
    for text in lines:
        yield from lines.held_back()
        line = lines.start_of_record()
        if text.strip():
            yield _jsonl_record(line, text)
    yield from lines.held_back()


def _jsonl_record(line: int, text: str) -> Checked:
    bad_byte = _first_not_utf8([text])
    if bad_byte is not None:
        return None, [_not_utf8_error(line, bad_byte)]
    raw, error = _json_object(line, text)
    if error is not None:
        return None, [error]
    row, errors = validate_row(line, _json_fields(raw))
    errors += _unknown_fields(line, raw)
    return (None if errors else row), errors


def _unknown_fields(line: int, raw: Mapping[str, Any]) -> list[RowError]:
    unknown = sorted(key for key in raw if key not in FIELDS)
    if not unknown:
        return []
    message = f"unknown field(s) {_listed(unknown)}; known: {', '.join(FIELDS)}"
    return [RowError(line, "field.unknown", message)]


def _json_object(line: int, text: str) -> tuple[dict[str, Any], RowError | None]:
    try:
        raw = json.loads(text, parse_int=_json_int)
    except (ValueError, RecursionError) as exc:  # RecursionError: `[[[[...` nested deeply
        return {}, RowError(line, "row.malformed", f"not valid JSON: {exc}")
    if not isinstance(raw, dict):
        return {}, RowError(line, "row.malformed", "each line must be a JSON object")
    return raw, None


def _json_int(digits: str) -> int | Decimal:
    # int() refuses more than 4,300 digits; a Decimal keeps any length, for a clear bound error.
    return int(digits) if len(digits) <= 20 else Decimal(digits)


def _json_fields(raw: Mapping[str, Any]) -> dict[str, object]:
    return {key: value.strip() if isinstance(value, str) else value for key, value in raw.items()}


def _first_not_utf8(texts: Iterable[str]) -> str | None:
    for text in texts:
        if not text.isascii():
            found = NOT_UTF8.search(text)
            if found:
                return found.group()
    return None


def _not_utf8_error(line: int, escaped: str) -> RowError:
    byte = ord(escaped) - 0xDC00
    message = f"the line is not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8"
    return RowError(line, "row.encoding", message)


def _listed(names: Sequence[str], most: int = 10) -> str:
    """Column or field names for a message: terminal-safe, cut short, at most `most`."""
    listed = ", ".join(escape_for_terminal(name[:MAX_SHOWN_VALUE]) for name in names[:most])
    return listed + (f" and {len(names) - most} more" if len(names) > most else "")


PARSERS: dict[str, Callable[[Iterable[str]], Iterator[Checked]]] = {
    "csv": parse_csv,
    "jsonl": parse_jsonl,
}


def detect_format(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


@contextmanager
def checked_file(path: Path, file_format: str) -> Iterator[CheckedFile]:
    """Check every record of `path`; yield the errors and the good rows, spooled to disk."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        checked = CheckedFile(spool)
        for row, errors in read_records(path, file_format):
            checked.take(row, errors)
        yield checked


def read_records(path: Path, file_format: str) -> Iterator[Checked]:
    """The records of `path`, checked; raise ImportFileError if it cannot be read at all."""
    try:
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
            yield from PARSERS[file_format](_pieces(handle))
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _pieces(handle: TextIO) -> Iterator[str]:
    return iter(partial(handle.readline, MAX_LINE_CHARS), "")
