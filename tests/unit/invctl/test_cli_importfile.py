"""Import files are validated locally with central's rules and physical line numbers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from invctl.errors import ImportFileError
from invctl.importfile import (
    FieldError,
    ParsedFile,
    check_active,
    check_price,
    check_quantity,
    check_sku,
    parse_csv,
    parse_jsonl,
    read_file,
)

pytestmark = pytest.mark.unit

HEADER = "kind,name,sku,price,category,description,active,quantity\n"


def _csv(*rows: str) -> list[str]:
    return (HEADER + "".join(f"{row}\n" for row in rows)).splitlines(keepends=True)


def _codes(parsed: ParsedFile) -> list[tuple[int, str]]:
    return [(e.line, e.code) for e in parsed.errors]


def test_csv_rows_become_wire_rows_with_line_numbers() -> None:
    parsed = parse_csv(
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

    parsed = parse_csv(lines)

    assert [row["line"] for row in parsed.rows] == [2, 4]
    assert parsed.rows[1]["description"] == "two\nlines"
    assert _codes(parsed) == [(6, "sku.invalid")]


def test_csv_reports_every_problem_of_a_row() -> None:
    parsed = parse_csv(_csv("product,,milk,1.999,,,maybe,-1"))

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
    parsed = parse_csv(_csv("shelf,A,,,,,,", "stock,,MILK,,,,,1,extra"))

    assert _codes(parsed) == [(2, "kind.invalid"), (3, "row.malformed")]


def test_csv_unknown_column_is_reported_on_line_1() -> None:
    parsed = parse_csv(["kind,sku,qty\n", "stock,MILK,\n"])

    assert (1, "column.unknown") in _codes(parsed)


def test_csv_without_kind_column_cannot_be_imported() -> None:
    with pytest.raises(ImportFileError, match="no 'kind' column"):
        parse_csv(["sku,quantity\n"])


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

    parsed = parse_jsonl(lines)

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

    assert _codes(parse_jsonl(lines)) == [
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
    parsed = parse_csv(_csv(f"category,{'x' * 201},,,,,,", f"category,{'y' * 200},,,,,,"))

    assert _codes(parsed) == [(2, "name.too_long")]


def test_ten_thousand_rows_validate_quickly(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    rows = (f"product,Item {i},SKU-{i:05d},{i % 100}.99,Dairy,,true,{i}\n" for i in range(10_000))
    path.write_text(HEADER + "".join(rows), encoding="utf-8")

    started = time.perf_counter()
    parsed = read_file(path, "csv")
    elapsed = time.perf_counter() - started

    assert len(parsed.rows) == 10_000
    assert parsed.rows[-1]["line"] == 10_001
    assert elapsed < 1.0


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + "category,Crème,,,,,,\n".encode())

    assert read_file(path, "csv").rows == [{"line": 2, "kind": "category", "name": "Crème"}]


def test_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.encode() + "category,Cr\xe8me,,,,,,\n".encode("latin-1"))

    with pytest.raises(ImportFileError, match="not UTF-8"):
        read_file(path, "csv")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="cannot read"):
        read_file(tmp_path / "nope.csv", "csv")
