"""`invctl export`: central's pages streamed to CSV or JSON Lines; products and stock in the
format `invctl import` reads; a failure part-way exits non-zero, says how far it got, and
never leaves a partial file under the name asked for."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from invctl.importfile import parse_csv, parse_jsonl
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import FIXED_NOW, CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
TOKEN = {"INVCTL_TOKEN": "a-token"}


def make_product(sku: str, **overrides: Any) -> dict[str, Any]:
    return {
        "sku": sku,
        "name": f"Product {sku}",
        "price": "1.25",
        "category_id": 1,
        "category": "Dairy",
        "description": "",
        "active": True,
        "quantity": 4,
        "updated_at": "2026-11-29T09:00:00+00:00",
        **overrides,
    }


def make_movement(number: int, **overrides: Any) -> dict[str, Any]:
    return {
        "id": number,
        "at": f"2026-11-29T09:00:{number:02d}+00:00",
        "sku": "MILK",
        "reason": "order",
        "delta": -1,
        "quantity": 10 - number,
        "stock_version": number,
        "order_id": f"order-{number}",
        "store_id": "store-042",
        "actor": "store:store-042",
        "note": "",
        **overrides,
    }


def make_order(number: int, lines: int = 1) -> dict[str, Any]:
    return {
        "id": f"order-{number}",
        "store_id": "store-042",
        "status": "confirmed",
        "created_at": f"2026-11-29T09:00:{number:02d}+00:00",
        "created_by": "store:store-042",
        "cancelled_at": None,
        "total": "2.50",
        "lines": [
            {
                "sku": f"SKU-{i}",
                "quantity": 2,
                "unit_price": "1.25",
                "stock": {"quantity": 3, "stock_version": 7},
            }
            for i in range(lines)
        ],
    }


def paged(pages: list[list[dict[str, Any]]], cursor: str = "next_after") -> Any:
    """A handler answering page k of `pages` to the k-th request, each with its cursor."""
    served = iter(range(len(pages)))

    def handle(_request: httpx.Request) -> httpx.Response:
        k = next(served)
        following = k + 1 if k + 1 < len(pages) else None
        if cursor == "next_before" and following is not None:
            following = 1000 - following
        return httpx.Response(200, json={"items": pages[k], cursor: following})

    return handle


def failing_after(pages: list[list[dict[str, Any]]]) -> Any:
    """`pages`, then central unavailable."""
    served = iter(range(len(pages) + 1))

    def handle(_request: httpx.Request) -> httpx.Response:
        k = next(served)
        if k == len(pages):
            return httpx.Response(503, json=error_body("database.unavailable", "no database"))
        return httpx.Response(200, json={"items": pages[k], "next_after": k + 1})

    return handle


def export(cli: CliHarness, *args: str) -> Any:
    return cli("--central", CENTRAL, "export", *args, env=TOKEN)


def catalog(server: FakeServer, *product_pages: list[dict[str, Any]]) -> None:
    server.on("GET", f"{API}/categories", body={"items": [{"id": 1, "name": "Dairy", "version": 1},
              {"id": 2, "name": "Empty shelf", "version": 1}], "next_after": None})  # fmt: skip
    server.on_call("GET", f"{API}/exports/products", paged(list(product_pages)))


def queries(server: FakeServer, path: str) -> list[dict[str, str]]:
    return [dict(r.url.params) for r in server.requests if r.url.path == f"/api/v1{path}"]


def test_products_are_written_as_the_import_reads_them_and_read_back_without_errors(
    cli: CliHarness, server: FakeServer
) -> None:
    catalog(
        server,
        [make_product("BREAD", description="Rye, dark", active=False)],
        [make_product("MILK", name='Milk "whole"', price="0.99")],
    )

    result = export(cli, "products")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "kind,name,sku,price,category,description,active\n"
        "category,Dairy,,,,,\n"
        "category,Empty shelf,,,,,\n"
        'product,Product BREAD,BREAD,1.25,Dairy,"Rye, dark",false\n'
        'product,"Milk ""whole""",MILK,0.99,Dairy,,true\n'
    )
    checked = list(parse_csv(io.StringIO(result.stdout)))
    assert [errors for _, errors in checked] == [[], [], [], []]
    assert checked[3][0] == {"line": 5, "kind": "product", "sku": "MILK",
        "name": 'Milk "whole"', "price": "0.99", "category": "Dairy", "active": True}  # fmt: skip
    assert "exported 4 products rows" in result.stderr


def test_products_as_json_lines_are_one_import_row_a_line(
    cli: CliHarness, server: FakeServer
) -> None:
    catalog(server, [make_product("MILK", name="Crème =1+1 @x", description="Ünïcode")])

    result = export(cli, "products", "--format", "jsonl")

    lines = result.stdout.splitlines()
    assert json.loads(lines[2]) == {"kind": "product", "name": "Crème =1+1 @x", "sku": "MILK",
        "price": "1.25", "category": "Dairy", "description": "Ünïcode", "active": True}  # fmt: skip
    assert "Crème" in lines[2], "text is written as is, not escaped"
    assert [errors for _, errors in parse_jsonl(io.StringIO(result.stdout))] == [[], [], []]


def test_every_page_is_followed_with_its_cursor_at_the_largest_page_size(
    cli: CliHarness, server: FakeServer
) -> None:
    catalog(server, [make_product("A")], [make_product("B")], [make_product("C")])

    result = export(cli, "products", "--format", "jsonl")

    assert len(result.stdout.splitlines()) == 5
    assert queries(server, "/exports/products") == [
        {"limit": "1000"},
        {"limit": "1000", "after": "1"},
        {"limit": "1000", "after": "2"},
    ]


def test_stock_is_written_as_stock_rows(cli: CliHarness, server: FakeServer) -> None:
    server.on_call(
        "GET", f"{API}/products", paged([[make_product("A", quantity=0), make_product("B")]])
    )

    result = export(cli, "stock")

    assert result.stdout == "kind,sku,quantity\nstock,A,0\nstock,B,4\n"
    assert [errors for _, errors in parse_csv(io.StringIO(result.stdout))] == [[], []]


def test_movements_send_since_and_store_and_write_every_field(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on_call(
        "GET",
        f"{API}/movements",
        paged([[make_movement(1, note="=cmd")], [make_movement(2, order_id=None, store_id=None)]]),
    )

    result = export(cli, "movements", "--since", "1d", "--store", "store-042")

    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["id"] for row in rows] == ["1", "2"]
    assert rows[0] == {"id": "1", "at": "2026-11-29T09:00:01+00:00", "sku": "MILK",
        "reason": "order", "delta": "-1", "quantity": "9", "stock_version": "1",
        "order_id": "order-1", "store_id": "store-042", "actor": "store:store-042",
        "note": "=cmd"}  # fmt: skip
    assert (rows[1]["order_id"], rows[1]["store_id"]) == ("", "")
    since = (FIXED_NOW - timedelta(days=1)).isoformat()
    assert queries(server, "/movements") == [
        {"since": since, "store": "store-042", "limit": "1000"},
        {"since": since, "store": "store-042", "after": "1", "limit": "1000"},
    ]


def test_orders_as_csv_have_a_row_per_line_and_follow_next_before(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on_call(
        "GET", f"{API}/orders", paged([[make_order(2, lines=2)], [make_order(1)]], "next_before")
    )

    result = export(cli, "orders", "--since", "2026-11-01", "--store", "store-042")

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(row["order_id"], row["sku"]) for row in rows] == [
        ("order-2", "SKU-0"),
        ("order-2", "SKU-1"),
        ("order-1", "SKU-0"),
    ]
    assert rows[0] == {"order_id": "order-2", "store_id": "store-042", "status": "confirmed",
        "created_at": "2026-11-29T09:00:02+00:00", "created_by": "store:store-042",
        "cancelled_at": "", "total": "2.50", "sku": "SKU-0", "quantity": "2",
        "unit_price": "1.25"}  # fmt: skip
    sent = queries(server, "/orders")
    assert [q.get("before") for q in sent] == [None, "999"]
    assert {(q["store"], q["since"], q["limit"]) for q in sent} == {
        ("store-042", "2026-11-01T00:00:00+00:00", "200")
    }


def test_orders_as_json_lines_are_one_order_a_line(cli: CliHarness, server: FakeServer) -> None:
    orders = [make_order(3, lines=2), make_order(2)]
    server.on_call("GET", f"{API}/orders", paged([orders], "next_before"))

    result = export(cli, "orders", "--format", "jsonl")

    assert [json.loads(line) for line in result.stdout.splitlines()] == orders


def test_out_writes_the_file_and_reports_it(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    catalog(server, [make_product("MILK")])
    target = tmp_path / "catalog.csv"

    result = cli("--central", CENTRAL, "--json", "export", "products", "--out", str(target),
                 env=TOKEN)  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "export": "products",
        "format": "csv",
        "rows": 3,
        "file": str(target),
    }
    assert target.read_text(encoding="utf-8").splitlines()[3].startswith("product,Product MILK,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.csv"]


def test_a_failure_part_way_leaves_the_old_file_and_no_partial_one(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    server.on_call("GET", f"{API}/movements", failing_after([[make_movement(1), make_movement(2)]]))
    target = tmp_path / "ledger.csv"
    target.write_text("yesterday's export\n", encoding="utf-8")

    result = export(cli, "movements", "--out", str(target))

    assert result.exit_code == 5
    assert "the movements export stopped after 2 rows" in result.stderr
    assert "[database.unavailable]" in result.stderr
    assert f"nothing was written to {target}" in result.stderr
    assert target.read_text(encoding="utf-8") == "yesterday's export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.csv"]


def test_a_failure_part_way_to_stdout_says_how_many_rows_are_there(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on_call("GET", f"{API}/movements", failing_after([[make_movement(1)]]))

    result = cli("--central", CENTRAL, "--json", "export", "movements", env=TOKEN)

    assert result.exit_code == 5
    data, error = result.stdout.splitlines()[:2], json.loads(result.stdout.split("\n", 2)[2])
    assert data[0].startswith("id,at,sku,")
    assert error["error"]["details"]["rows_written"] == 1
    assert "stdout holds only those" in error["error"]["message"]


def test_a_cursor_that_does_not_move_on_is_an_error_not_an_endless_export(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{API}/movements", body={"items": [make_movement(1)], "next_after": 0})

    result = cli("--central", CENTRAL, "--json", "export", "movements", "--out", "-", env=TOKEN)

    assert result.exit_code == 1
    assert "next_after" in result.stdout
    assert len(server.requests) == 2


@pytest.mark.parametrize("named", ["missing/stock.csv", "."])
def test_an_out_that_cannot_be_a_file_is_a_usage_error_before_anything_is_fetched(
    cli: CliHarness, server: FakeServer, tmp_path: Path, named: str
) -> None:
    result = export(cli, "stock", "--out", str(tmp_path / named))

    assert result.exit_code == 2
    assert "[usage.out]" in result.stderr
    assert server.requests == []
    assert list(tmp_path.glob(".*.partial")) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("products", "--since", "1d"), "No such option"),
        (("stock", "--store", "store-042"), "No such option"),
        (("movements", "--since", "last tuesday"), "is not a moment"),
        (("orders", "--format", "xml"), "xml"),
    ],
)
def test_options_that_do_not_apply_are_usage_errors(
    cli: CliHarness, server: FakeServer, args: tuple[str, ...], says: str
) -> None:
    result = export(cli, *args)

    assert result.exit_code == 2
    assert says in result.stderr
    assert server.requests == []
