"""Reading and validating batch import files (CSV or JSON Lines); standard library only.

Rows are checked with the same rules central applies, so bad rows are reported with their
physical line number before anything is sent. Good rows come out in the wire shape of
`POST /api/v1/import` (see docs/wire.md).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from invctl.errors import ImportFileError
from invwire.rules import is_sku

PRICE_PATTERN = re.compile(r"\d+(\.\d{1,2})?")
QUANTITY_PATTERN = re.compile(r"\d+")
KINDS = ("category", "product", "stock")
FIELDS = ("kind", "name", "sku", "price", "category", "description", "active", "quantity")
MAX_NAME = 200
MAX_QUANTITY = 1_000_000_000
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

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


@dataclass
class ParsedFile:
    rows: list[Row] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def bad_lines(self) -> int:
        return len({error.line for error in self.errors})


def check_sku(value: object) -> str:
    if not is_sku(value):
        raise FieldError(
            "sku.invalid",
            f"SKU {value!r} must be 1-64 uppercase letters, digits, '.', '_' or '-' "
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
    return value


def check_price(value: object) -> str:
    """A non-negative amount with at most two decimals, returned as e.g. `"1.50"`."""
    text = str(value).strip() if isinstance(value, str | int | float) else ""
    if isinstance(value, bool) or not PRICE_PATTERN.fullmatch(text):
        raise FieldError(
            "price.invalid",
            f"price {value!r} must be a non-negative amount with at most 2 decimals, e.g. 1.25",
        )
    return str(Decimal(text).quantize(Decimal("0.01")))


def check_quantity(value: object) -> int:
    text = str(value).strip() if isinstance(value, str | int) else ""
    if isinstance(value, bool) or not QUANTITY_PATTERN.fullmatch(text):
        raise FieldError("quantity.invalid", f"quantity {value!r} must be a whole number >= 0")
    quantity = int(text)
    if quantity > MAX_QUANTITY:
        raise FieldError("quantity.invalid", f"quantity {quantity} is above {MAX_QUANTITY:_}")
    return quantity


def check_active(value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else "?"
    if text == "":
        return None
    if text in TRUE_WORDS | FALSE_WORDS:
        return text in TRUE_WORDS
    raise FieldError("active.invalid", f"active {value!r} must be true/false, 1/0 or yes/no")


def validate_row(line: int, raw: Mapping[str, object]) -> tuple[Row | None, list[RowError]]:
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
            f"kind {kind!r} must be one of {allowed}" if kind else f"kind is required: {allowed}"
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
    return value


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
    """Iterates a text file's lines, remembering how many were read (for decode errors)."""

    def __init__(self, handle: Iterable[str]) -> None:
        self._handle = handle
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        for line in self._handle:
            self.count += 1
            yield line


def parse_csv(lines: Iterable[str]) -> ParsedFile:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise ImportFileError("the CSV file is empty; it needs a header row", code="import.empty")
    columns = _csv_header(header)
    parsed = ParsedFile()
    unknown = [name for name in columns if name not in FIELDS]
    if unknown:
        message = f"unknown column(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}"
        parsed.errors.append(RowError(1, "column.unknown", message))
    last_line = reader.line_num
    for cells in reader:
        line, last_line = last_line + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(columns):
            message = f"row has {len(cells)} fields but the header has {len(columns)}"
            parsed.errors.append(RowError(line, "row.malformed", message))
            continue
        raw = {name: cell.strip() for name, cell in zip(columns, cells, strict=False)}
        _add(parsed, *validate_row(line, raw))
    return parsed


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
            f"the CSV header repeats column(s) {', '.join(duplicates)}", code="import.header"
        )
    return columns


def parse_jsonl(lines: Iterable[str]) -> ParsedFile:
    parsed = ParsedFile()
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        raw, error = _json_object(line, text)
        if error is not None:
            parsed.errors.append(error)
            continue
        row, errors = validate_row(line, _json_fields(raw))
        errors += _unknown_fields(line, raw)
        _add(parsed, None if errors else row, errors)
    return parsed


def _unknown_fields(line: int, raw: Mapping[str, Any]) -> list[RowError]:
    unknown = sorted(key for key in raw if key not in FIELDS)
    if not unknown:
        return []
    message = f"unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}"
    return [RowError(line, "field.unknown", message)]


def _json_object(line: int, text: str) -> tuple[dict[str, Any], RowError | None]:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return {}, RowError(line, "row.malformed", f"not valid JSON: {exc}")
    if not isinstance(raw, dict):
        return {}, RowError(line, "row.malformed", "each line must be a JSON object")
    return raw, None


def _json_fields(raw: Mapping[str, Any]) -> dict[str, object]:
    return {key: value.strip() if isinstance(value, str) else value for key, value in raw.items()}


def _add(parsed: ParsedFile, row: Row | None, errors: list[RowError]) -> None:
    if row is not None:
        parsed.rows.append(row)
    parsed.errors.extend(errors)


PARSERS: dict[str, Callable[[Iterable[str]], ParsedFile]] = {
    "csv": parse_csv,
    "jsonl": parse_jsonl,
}


def detect_format(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


def read_file(path: Path, file_format: str) -> ParsedFile:
    """Parse and validate `path`; raise ImportFileError if it cannot be read at all."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return _parse(handle, file_format, path)
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _parse(handle: TextIO, file_format: str, path: Path) -> ParsedFile:
    lines = _Lines(handle)
    try:
        return PARSERS[file_format](lines)
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"{path} is not UTF-8 text (line {lines.count + 1}: {exc.reason})",
            code="import.encoding",
            hint="save the file as UTF-8",
        ) from exc
    except csv.Error as exc:
        raise ImportFileError(f"{path}: line {lines.count}: {exc}", code="import.csv") from exc
