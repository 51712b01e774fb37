"""Whatever an import file holds is a row error with a stable code and its line number:
numbers of any length, bytes that are not UTF-8, control characters, endless lines. The
error list is capped and its count exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from invctl.importfile import MAX_LINE_CHARS, ErrorLog, RowError, checked_file
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer

pytestmark = pytest.mark.unit

IMPORT_URL = f"{CENTRAL}/api/v1/import"
HEADER = b"kind,name,sku,price,category,description,active,quantity\n"
HOSTILE = "Milk\x1b]0;owned\x07\x1b[2J"


def _file(tmp_path: Path, *rows: bytes, name: str = "catalog.csv", header: bytes = HEADER) -> Path:
    path = tmp_path / name
    path.write_bytes(header + b"".join(row + b"\n" for row in rows))
    return path


def _errors(path: Path, file_format: str = "csv") -> list[tuple[int, str]]:
    with checked_file(path, file_format) as checked:
        return [(error.line, error.code) for error in checked.errors.kept]


def _only_error(path: Path, file_format: str = "csv") -> RowError:
    with checked_file(path, file_format) as checked:
        assert checked.errors.count == 1, checked.errors.kept
        return checked.errors.kept[0]


def test_a_29_digit_price_is_a_row_error_naming_the_bound(tmp_path: Path) -> None:
    path = _file(tmp_path, b"product,Milk,MILK,12345678901234567890123456789.50,Dairy,,,")

    error = _only_error(path)

    assert (error.line, error.code) == (2, "price.invalid")
    assert "below 1,000,000,000" in error.message


@pytest.mark.parametrize(
    ("price", "good"),
    [(b"999999999.99", True), (b"1000000000", False), (b"0" * 5000 + b"1.5", True)],
)
def test_the_price_bound_is_centrals(tmp_path: Path, price: bytes, good: bool) -> None:
    path = _file(tmp_path, b"product,Milk,MILK," + price + b",Dairy,,,")

    assert _errors(path) == ([] if good else [(2, "price.invalid")])


def test_a_5000_digit_quantity_is_a_row_error_with_a_short_message(tmp_path: Path) -> None:
    path = _file(tmp_path, b"stock,,MILK,,,,," + b"9" * 5000)

    error = _only_error(path)

    assert (error.line, error.code) == (2, "quantity.invalid")
    assert "above 1,000,000,000" in error.message
    assert len(error.message) < 200


@pytest.mark.parametrize(
    ("quantity", "good"),
    [(b"1000000000", True), (b"1000000001", False), (b"0" * 5000 + b"7", True)],
)
def test_the_quantity_bound_is_invwires(tmp_path: Path, quantity: bytes, good: bool) -> None:
    path = _file(tmp_path, b"stock,,MILK,,,,," + quantity)

    assert _errors(path) == ([] if good else [(2, "quantity.invalid")])


def test_huge_json_numbers_are_row_errors(tmp_path: Path) -> None:
    digits = b"9" * 5000
    path = _file(
        tmp_path,
        b'{"kind": "stock", "sku": "A", "quantity": ' + digits + b"}",
        b'{"kind": "product", "sku": "B", "name": "B", "category": "C", "price": ' + digits + b"}",
        b'{"kind": "stock", "sku": "A", "quantity": 12345678901234567890123}',
        name="rows.jsonl",
        header=b"",
    )

    assert _errors(path, "jsonl") == [
        (1, "quantity.invalid"),
        (2, "price.invalid"),
        (3, "quantity.invalid"),
    ]


def test_bytes_that_are_not_utf8_cost_their_row_only(tmp_path: Path) -> None:
    path = _file(tmp_path, b"category,Cr\xe8me,,,,,,", b"category,Dairy,,,,,,")

    with checked_file(path, "csv") as checked:
        errors = checked.errors.kept
        rows = [row for chunk in checked.chunks(10) for row in chunk]

    assert [(e.line, e.code) for e in errors] == [(2, "row.encoding")]
    assert "0xe8" in errors[0].message
    assert rows == [{"line": 3, "kind": "category", "name": "Dairy"}]


def test_bytes_that_are_not_utf8_in_json_lines(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        b'{"kind": "category", "name": "Cr\xff"}',
        b'{"kind": "category", "name": "Dairy"}',
        name="rows.jsonl",
        header=b"",
    )

    assert _errors(path, "jsonl") == [(1, "row.encoding")]


@pytest.mark.parametrize(
    ("row", "code"),
    [
        (f"category,{HOSTILE},,,,,,", "name.invalid"),
        ("category,abc\u202edcba,,,,,,", "name.invalid"),
        ("category,a\x00b,,,,,,", "name.invalid"),
        (f"product,Milk,MILK,1,{HOSTILE},,,", "category.invalid"),
        (f"product,Milk,MILK,1,Dairy,{HOSTILE},,", "description.invalid"),
    ],
)
def test_control_and_invisible_characters_in_text_are_row_errors(
    tmp_path: Path, row: str, code: str
) -> None:
    error = _only_error(_file(tmp_path, row.encode()))

    assert (error.line, error.code) == (2, code)
    assert first_char_shown(error.message)


def first_char_shown(message: str) -> bool:
    """The message names the character as an escape, and holds no raw control character."""
    return "\\x" in message or "\\u" in message


def test_a_lone_surrogate_in_a_json_name_is_a_row_error(tmp_path: Path) -> None:
    path = _file(tmp_path, b'{"kind": "category", "name": "a\\ud800b"}', name="r.jsonl", header=b"")

    error = _only_error(path, "jsonl")

    assert (error.line, error.code) == (1, "name.invalid")
    assert "\\ud800" in error.message


def test_an_endless_line_is_a_row_error_and_line_numbers_stay_right(tmp_path: Path) -> None:
    endless = b"category," + b"x" * (3 * MAX_LINE_CHARS)
    path = _file(tmp_path, b"category,Dairy,,,,,,", endless, b"stock,,bad sku,,,,,1")

    assert _errors(path) == [(3, "row.too_long"), (4, "sku.invalid")]


def test_an_endless_json_line_is_a_row_error(tmp_path: Path) -> None:
    endless = b'{"kind": "category", "name": "' + b"x" * MAX_LINE_CHARS + b'"}'
    path = _file(tmp_path, endless, b'{"kind": "stock"}', name="r.jsonl", header=b"")

    assert _errors(path, "jsonl") == [
        (1, "row.too_long"),
        (2, "sku.missing"),
        (2, "quantity.missing"),
    ]


def test_a_quote_that_never_closes_is_a_row_error(tmp_path: Path) -> None:
    # The open field swallows the lines after it until csv's field limit stops it.
    lines = [b'category,"Dairy'] + [b"y" * 1000] * 200
    path = _file(tmp_path, *lines, b"category,Fish,,,,,,")

    with checked_file(path, "csv") as checked:
        first = checked.errors.kept[0]
        rows = [row for chunk in checked.chunks(10) for row in chunk]

    assert (first.line, first.code) == (2, "row.malformed")
    assert rows[-1] == {"line": 203, "kind": "category", "name": "Fish"}


def test_json_nested_too_deeply_is_a_row_error(tmp_path: Path) -> None:
    path = _file(tmp_path, b"[" * 50_000, name="r.jsonl", header=b"")

    assert _errors(path, "jsonl") == [(1, "row.malformed")]


def test_the_error_log_counts_everything_and_keeps_the_first() -> None:
    log = ErrorLog(keep=3)
    for line in range(1, 6):
        log.add([RowError(line, "a", "x"), RowError(line, "b", "y")])

    assert [(e.line, e.code) for e in log.kept] == [(1, "a"), (1, "b"), (2, "a")]
    assert (log.count, log.bad_lines, log.omitted) == (10, 5, 7)


def _bad_stock_rows(tmp_path: Path, count: int, name: str = "catalog.csv") -> Path:
    return _file(tmp_path, *(b"stock,,bad sku,,,,,1" for _ in range(count)), name=name)


def _counting(request: httpx.Request) -> httpx.Response:
    rows = json.loads(request.content)["rows"]
    return httpx.Response(200, json={"created": len(rows), "updated": 0, "unchanged": 0})


def _import_json(cli: CliHarness, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("--central", CENTRAL, "--json", "import", *args)
    return result.exit_code, json.loads(result.stdout)


def test_the_report_lists_the_first_100_errors_and_counts_all(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    server.on_call("POST", IMPORT_URL, _counting)
    path = _file(tmp_path, b"stock,,GOOD,,,,,1", *(b"stock,,bad sku,,,,,1" for _ in range(250)))

    code, report = _import_json(cli, str(path))

    assert code == 1
    assert (report["error_count"], report["errors_omitted"], report["bad_rows"]) == (250, 150, 250)
    assert [e["line"] for e in report["errors"]] == list(range(3, 103))
    assert (report["rows"], report["created"]) == (251, 1)


def test_people_see_the_first_100_errors_and_how_many_more(cli: CliHarness, tmp_path: Path) -> None:
    path = _bad_stock_rows(tmp_path, 250)

    result = cli("import", "--dry-run", str(path))

    assert result.exit_code == 1
    assert result.stdout.count("sku.invalid") == 100
    assert "... and 150 more row errors (250 in all)" in result.stdout


def test_dry_run_checks_without_central(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    path = _file(tmp_path, b"stock,,GOOD,,,,,1", b"category,Dairy,,,,,,")

    result = cli("--json", "import", "--dry-run", str(path))

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["dry_run"], report["rows"], report["created"], report["skipped"]) == (
        True,
        2,
        0,
        0,
    )
    assert server.requests == []
    assert "2 good rows; nothing was sent" in result.stderr


def test_all_or_nothing_with_many_bad_rows_sends_nothing(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    path = _file(tmp_path, b"stock,,GOOD,,,,,1", *(b"stock,,bad sku,,,,,1" for _ in range(250)))

    code, report = _import_json(cli, str(path), "--all-or-nothing")

    assert code == 1
    assert server.requests == []
    assert (report["skipped"], report["error_count"]) == (1, 250)


def test_good_rows_are_sent_in_file_order_across_bad_ones(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    server.on_call("POST", IMPORT_URL, _counting)
    rows = [b"stock,,bad sku,,,,,1" if i % 3 == 0 else b"stock,,S%d,,,,,1" % i for i in range(9)]
    path = _file(tmp_path, *rows)

    code, report = _import_json(cli, str(path), "--chunk-size", "4")

    sent = [[row["sku"] for row in server.sent_json(i)["rows"]] for i in range(2)]
    assert sent == [["S1", "S2", "S4", "S5"], ["S7", "S8"]]
    assert (code, report["created"], report["bad_rows"]) == (1, 6, 3)


def test_a_file_name_with_control_characters_is_shown_escaped(
    cli: CliHarness, tmp_path: Path
) -> None:
    path = _bad_stock_rows(tmp_path, 1, name="x\x1b[2J.csv")

    result = cli("import", "--dry-run", str(path))

    assert "x\\x1b[2J.csv" in result.stdout
    assert "\x1b[2J" not in result.stdout


def test_a_non_numeric_count_from_central_is_reported_not_crashed_on(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    answer = {"created": "9" * 5000, "updated": 0, "unchanged": 0}
    server.on("POST", IMPORT_URL, 200, answer)
    path = _file(tmp_path, b"stock,,GOOD,,,,,1")

    result = cli("--central", CENTRAL, "import", str(path), env={"INVCTL_DEBUG": None})

    assert result.exit_code == 1
    assert "[unexpected]" in result.stderr
