"""Import files are validated locally with central's rules and physical line numbers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from invctl.errors import ImportFileError
from invctl.importfile import (
    Checked,
    FieldError,
    Row,
    RowError,
    check_active,
    check_price,
    check_quantity,
    check_sku,
    checked_file,
    parse_csv,
    parse_jsonl,
)

pytestmark = pytest.mark.unit

HEADER = "kind,name,sku,price,category,description,active,quantity\n"


def _csv(*rows: str) -> list[str]:
    return (HEADER + "".join(f"{row}\n" for row in rows)).splitlines(keepends=True)


@dataclass
class ParsedFile:
    """Every record of a (small) file, collected for assertions."""

    rows: list[Row] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def bad_lines(self) -> int:
        return len({error.line for error in self.errors})


def _collect(records: Iterable[Checked]) -> ParsedFile:
    parsed = ParsedFile()
    for row, errors in records:
        parsed.errors += errors
        if row is not None and not errors:
            parsed.rows.append(row)
    return parsed


def _csv_file(lines: Iterable[str]) -> ParsedFile:
    return _collect(parse_csv(lines))


def _jsonl_file(lines: Iterable[str]) -> ParsedFile:
    return _collect(parse_jsonl(lines))


def _codes(parsed: ParsedFile) -> list[tuple[int, str]]:
    return [(e.line, e.code) for e in parsed.errors]


def test_csv_rows_become_wire_rows_with_line_numbers() -> None:
    parsed = _csv_file(
        _csv(
            "category,Dairy,,,,,,",
            "product,Milk 1 L,MILK-1L,1.5,Dairy,,yes,40",
            "stock,,MILK-1L,,,,,7",
        )
    )

    assert parsed.errors == []
    assert parsed.rows == [
        {"line": 2, "kind": "category", "name": "Dairy"},
        {
            "line": 3,
            "kind": "product",
            "sku": "MILK-1L",
            "name": "Milk 1 L",
            "price": "1.50",
            "category": "Dairy",
            "active": True,
            "quantity": 40,
        },
        {"line": 4, "kind": "stock", "sku": "MILK-1L", "quantity": 7},
    ]


def test_csv_line_numbers_count_blank_lines_and_multiline_fields() -> None:
    lines = _csv(
        "category,Dairy,,,,,,",
        "",
        'product,Milk,MILK,1,Dairy,"two',
        'lines",,1',
        "stock,,bad sku,,,,,1",
    )

    parsed = _csv_file(lines)

    assert [row["line"] for row in parsed.rows] == [2]
    # A line break is a control character, refused in descriptions as in names.
    assert _codes(parsed) == [(4, "description.invalid"), (6, "sku.invalid")]


def test_csv_reports_every_problem_of_a_row() -> None:
    parsed = _csv_file(_csv("product,,milk,1.999,,,maybe,-1"))

    assert _codes(parsed) == [
        (2, "sku.invalid"),
        (2, "name.missing"),
        (2, "price.invalid"),
        (2, "category.missing"),
        (2, "active.invalid"),
        (2, "quantity.invalid"),
    ]
    assert parsed.bad_lines == 1
    assert parsed.rows == []


def test_csv_unknown_kind_and_extra_fields() -> None:
    parsed = _csv_file(_csv("shelf,A,,,,,,", "stock,,MILK,,,,,1,extra"))

    assert _codes(parsed) == [(2, "kind.invalid"), (3, "row.malformed")]


def test_csv_unknown_column_is_reported_on_line_1() -> None:
    parsed = _csv_file(["kind,sku,qty\n", "stock,MILK,\n"])

    assert (1, "column.unknown") in _codes(parsed)


def test_csv_without_kind_column_cannot_be_imported() -> None:
    with pytest.raises(ImportFileError, match="no 'kind' column"):
        _csv_file(["sku,quantity\n"])


def test_jsonl_rows_and_errors_use_physical_lines() -> None:
    lines = [
        '{"kind": "category", "name": "Dairy"}\n',
        "\n",
        '{"kind": "stock", "sku": "MILK", "quantity": 5}\n',
        "{not json\n",
        "[1, 2]\n",
        '{"kind": "stock", "sku": "MILK", "qty": 5}\n',
        '{"kind": "product", "sku": "EGG", "name": "Eggs", "price": 2.5, "category": "Dairy",'
        ' "active": false, "description": null}\n',
    ]

    parsed = _jsonl_file(lines)

    assert [row["line"] for row in parsed.rows] == [1, 3, 7]
    assert parsed.rows[2]["price"] == "2.50"
    assert parsed.rows[2]["active"] is False
    assert "description" not in parsed.rows[2]
    assert _codes(parsed) == [
        (4, "row.malformed"),
        (5, "row.malformed"),
        (6, "quantity.missing"),
        (6, "field.unknown"),
    ]


def test_jsonl_rejects_wrongly_typed_values() -> None:
    lines = [
        '{"kind": "stock", "sku": 123, "quantity": 1}\n',
        '{"kind": "stock", "sku": "A", "quantity": 1.5}\n',
        '{"kind": "stock", "sku": "A", "quantity": true}\n',
        '{"kind": "category", "name": 7}\n',
    ]

    assert _codes(_jsonl_file(lines)) == [
        (1, "sku.invalid"),
        (2, "quantity.invalid"),
        (3, "quantity.invalid"),
        (4, "name.invalid"),
    ]


@pytest.mark.parametrize("sku", ["A", "MILK-1L", "A.B_C-9", "9" * 64])
def test_valid_skus(sku: str) -> None:
    assert check_sku(sku) == sku


@pytest.mark.parametrize("sku", ["", "milk", "-A", ".A", "A B", "A" * 65, "Ä"])
def test_invalid_skus(sku: str) -> None:
    with pytest.raises(FieldError):
        check_sku(sku)


@pytest.mark.parametrize(
    ("price", "canonical"), [("0", "0.00"), ("1.5", "1.50"), ("12.34", "12.34"), (3, "3.00")]
)
def test_valid_prices(price: object, canonical: str) -> None:
    assert check_price(price) == canonical


@pytest.mark.parametrize("price", ["-1", "1.234", "1.", ".5", "1e3", "NaN", "abc", True, ""])
def test_invalid_prices(price: object) -> None:
    with pytest.raises(FieldError):
        check_price(price)


@pytest.mark.parametrize(
    ("quantity", "value"), [("0", 0), ("40", 40), (1_000_000_000, 1_000_000_000)]
)
def test_valid_quantities(quantity: object, value: int) -> None:
    assert check_quantity(quantity) == value


@pytest.mark.parametrize("quantity", ["-1", "1.0", "1_000", "1000000001", 2.0, False])
def test_invalid_quantities(quantity: object) -> None:
    with pytest.raises(FieldError):
        check_quantity(quantity)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("Yes", True),
        ("1", True),
        ("false", False),
        ("no", False),
        ("0", False),
        ("", None),
    ],
)
def test_active_words(raw: str, value: bool | None) -> None:
    assert check_active(raw) is value


def test_name_longer_than_200_is_rejected() -> None:
    parsed = _csv_file(_csv(f"category,{'x' * 201},,,,,,", f"category,{'y' * 200},,,,,,"))

    assert _codes(parsed) == [(2, "name.too_long")]


def test_ten_thousand_rows_come_back_in_chunks_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    rows = (f"product,Item {i},SKU-{i:05d},{i % 100}.99,Dairy,,true,{i}\n" for i in range(10_000))
    path.write_text(HEADER + "".join(rows), encoding="utf-8")

    with checked_file(path, "csv") as checked:
        chunks = list(checked.chunks(1000))

    assert checked.good_rows == 10_000
    assert [len(chunk) for chunk in chunks] == [1000] * 10
    assert [row["line"] for chunk in chunks for row in chunk] == list(range(2, 10_002))


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + "category,Crème,,,,,,\n".encode())

    with checked_file(path, "csv") as checked:
        assert list(checked.chunks(10)) == [[{"line": 2, "kind": "category", "name": "Crème"}]]


def test_non_utf8_header_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("kind,name,pr\xe8s\n".encode("latin-1"))

    with pytest.raises(ImportFileError, match="not UTF-8") as caught, checked_file(path, "csv"):
        pass
    assert caught.value.code == "import.encoding"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with (
        pytest.raises(ImportFileError, match="cannot read"),
        checked_file(tmp_path / "x.csv", "csv"),
    ):
        pass
