"""`invctl report sales` and `invctl stock history --chart`: bars scaled to the largest row
for people, the numbers alone for tsv and JSON, and the totals as central counted them."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest

from invctl.charts import EIGHTHS, FULL, MAX_BAR, bar, cents
from tests.support.invctl_fakes import FAKE_CENTRAL, CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

API = f"{FAKE_CENTRAL}/api/v1"
CENTRAL = ("--central", FAKE_CENTRAL)
TOKEN = {"INVCTL_TOKEN": "t"}
BLOCKS = set(FULL + "".join(EIGHTHS))


def sales_report(**overrides: Any) -> dict[str, Any]:
    report = {
        "by": "sku",
        "since": None,
        "until": None,
        "store": None,
        "rows": [
            {"key": "MILK-1L", "orders": 4, "units": 8, "revenue": "80.00"},
            {"key": "BREAD", "orders": 2, "units": 2, "revenue": "20.00"},
            {"key": "GUM", "orders": 1, "units": 1, "revenue": "0.29"},
        ],
        "truncated": False,
        "keys": 3,
        "totals": {"orders": 6, "units": 11, "revenue": "100.29"},
        "cancelled": {"orders": 1, "units": 5, "revenue": "5.50"},
    }
    return {**report, **overrides}


def movements(*levels: int) -> list[dict[str, Any]]:
    """Movements newest first (as central lists them) leaving these levels, oldest first."""
    made = [
        {
            "id": n,
            "at": f"2026-11-29T09:{n:02d}:00+00:00",
            "actor": "user:alice",
            "reason": "adjust",
            "delta": level - (levels[n - 2] if n > 1 else 0),
            "quantity": level,
            "stock_version": n,
            "order_id": None,
            "note": "",
        }
        for n, level in enumerate(levels, 1)
    ]
    return list(reversed(made))


def bar_of(line: str) -> str:
    return "".join(char for char in line if char in BLOCKS)


def eighths_of(drawn: str) -> int:
    return sum(8 if char == FULL else EIGHTHS.index(char) for char in drawn)


def line_of(output: str, start: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(start))


def sent(server: FakeServer) -> dict[str, list[str]]:
    return parse_qs(server.requests[-1].url.query.decode())


def test_bars_scale_to_the_row_with_the_most_revenue(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/reports/sales", body=sales_report())

    result = cli(*CENTRAL, "report", "sales", "--by", "sku", env={"COLUMNS": "80", **TOKEN})

    assert result.exit_code == 0, result.output
    milk, bread, gum = (bar_of(line_of(result.stdout, sku)) for sku in ("MILK-1L", "BREAD", "GUM"))
    assert len(milk) == MAX_BAR and set(milk) == {FULL}
    assert bread == FULL * 10  # a quarter of the largest
    assert gum == EIGHTHS[1]  # above zero: never invisible
    assert "Total: 6 orders, 11 units, revenue 100.29" in result.stdout
    assert "Cancelled since, not counted: 1 order, 5 units, revenue 5.50" in result.stdout
    assert "Sales by SKU, every store, from the first order to now" in result.stdout


def test_the_window_and_grouping_are_sent_as_central_takes_them(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{API}/reports/sales", body=sales_report(by="day", rows=[]))

    result = cli(
        *CENTRAL, "report", "sales", "--by", "day", "--since", "today", "--until",
        "2026-11-30", "--store", "north", "-n", "7", env=TOKEN,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert sent(server) == {
        "by": ["day"],
        "since": ["2026-11-29T00:00:00+00:00"],
        "until": ["2026-11-30T00:00:00+00:00"],
        "store": ["north"],
        "limit": ["7"],
    }
    assert "(none)" in result.stdout
    assert "Cancelled since" in result.stdout


def test_the_default_is_by_day_and_a_hundred_rows(cli: CliHarness, server: FakeServer) -> None:
    report = sales_report(by="day", cancelled={"orders": 0, "units": 0, "revenue": "0.00"})
    report["rows"] = [{"key": "2026-11-29", "orders": 6, "units": 11, "revenue": "100.29"}]
    server.on("GET", f"{API}/reports/sales", body=report)

    result = cli(*CENTRAL, "report", "sales", env=TOKEN)

    assert result.exit_code == 0, result.output
    assert sent(server) == {"by": ["day"], "limit": ["100"]}
    assert "Sales by UTC day" in result.stdout
    assert line_of(result.stdout, "UTC day").split()[:3] == ["UTC", "day", "orders"]
    assert "Cancelled since" not in result.stdout  # none were


def test_tsv_and_json_carry_the_numbers_without_bars(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/reports/sales", body=sales_report())

    tsv = cli(*CENTRAL, "-o", "tsv", "report", "sales", "--by", "sku", env=TOKEN)
    shown = cli(*CENTRAL, "report", "sales", "--by", "sku", "--json", env=TOKEN)

    assert tsv.exit_code == 0, tsv.output
    assert not BLOCKS & set(tsv.stdout)
    assert tsv.stdout == (
        "sku\torders\tunits\trevenue\n"
        "MILK-1L\t4\t8\t80.00\n"
        "BREAD\t2\t2\t20.00\n"
        "GUM\t1\t1\t0.29\n"
        "\n"
        "status\torders\tunits\trevenue\n"
        "confirmed\t6\t11\t100.29\n"
        "cancelled\t1\t5\t5.50\n"
    )
    assert json.loads(shown.stdout) == sales_report()


def test_a_cut_report_warns_on_stderr_and_keeps_centrals_totals(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{API}/reports/sales", body=sales_report(truncated=True, keys=250))

    result = cli(*CENTRAL, "report", "sales", "--by", "sku", "--json", env=TOKEN)

    assert json.loads(result.stdout)["totals"]["revenue"] == "100.29"
    assert "showing the top 3 of 250 SKUs; the totals count them all" in result.stderr


@pytest.mark.parametrize("args", [("--by", "week"), ("--limit", "0"), ("--limit", "1001")])
def test_bad_options_are_usage_errors_before_any_request(
    cli: CliHarness, server: FakeServer, args: tuple[str, ...]
) -> None:
    result = cli(*CENTRAL, "report", "sales", *args, env=TOKEN)

    assert result.exit_code == 2, result.output
    assert server.requests == []


def test_a_moment_that_is_none_is_a_usage_error(cli: CliHarness, server: FakeServer) -> None:
    result = cli(*CENTRAL, "report", "sales", "--since", "last tuesday", env=TOKEN)

    assert result.exit_code == 2
    assert "usage.moment" in result.output
    assert server.requests == []


def test_another_stores_sales_are_refused_with_the_auth_exit(
    cli: CliHarness, server: FakeServer
) -> None:
    refused = error_body("auth.forbidden", "a store sees only its own sales")
    server.on("GET", f"{API}/reports/sales", status=403, body=refused)

    result = cli(*CENTRAL, "report", "sales", "--store", "north", env=TOKEN)

    assert result.exit_code == 6
    assert "a store sees only its own sales" in result.output


def test_stock_history_chart_draws_the_level_after_each_movement_oldest_first(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{API}/stock/MILK-1L/movements", body={"items": movements(40, 10, 20)})

    result = cli(*CENTRAL, "stock", "history", "MILK-1L", "--chart", env={"COLUMNS": "80", **TOKEN})

    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("2026-11-29")]
    assert [row.split()[2:5] for row in rows] == [
        ["adjust", "+40", "40"],
        ["adjust", "-30", "10"],
        ["adjust", "+10", "20"],
    ]
    lengths = [eighths_of(bar_of(row)) for row in rows]
    assert lengths[1] * 4 == lengths[0] == lengths[2] * 2 > 8 * 10


def test_stock_history_without_a_table_is_the_ledger_chart_or_not(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{API}/stock/MILK-1L/movements", body={"items": movements(40, 10)})

    plain = cli(*CENTRAL, "-o", "tsv", "stock", "history", "MILK-1L", env=TOKEN)
    charted = cli(*CENTRAL, "-o", "tsv", "stock", "history", "MILK-1L", "--chart", env=TOKEN)
    as_json = cli(*CENTRAL, "stock", "history", "MILK-1L", "--chart", "--json", env=TOKEN)

    assert charted.stdout == plain.stdout
    assert plain.stdout.splitlines()[0].startswith("at\tactor\treason\tdelta\tquantity")
    assert json.loads(as_json.stdout) == movements(40, 10)


@pytest.mark.parametrize(
    ("value", "largest", "width", "drawn"),
    [
        (100, 100, 10, FULL * 10),
        (50, 100, 10, FULL * 5),
        (1, 8, 1, EIGHTHS[1]),
        (12, 16, 2, FULL + EIGHTHS[4]),
        (1, 10**18, 40, EIGHTHS[1]),
        (0, 100, 10, ""),
        (-5, 100, 10, ""),
        (7, 0, 10, ""),
        (200, 100, 10, FULL * 10),
    ],
)
def test_a_bar_is_drawn_to_an_eighth_of_a_cell(
    value: int, largest: int, width: int, drawn: str
) -> None:
    assert bar(value, largest, width) == drawn


@pytest.mark.parametrize(
    ("amount", "whole_cents"),
    [("12.50", 1250), ("0.29", 29), ("999999999.99", 99999999999), (None, 0), ("x", 0)],
)
def test_amounts_become_whole_cents_without_floats(amount: object, whole_cents: int) -> None:
    assert cents(amount) == whole_cents
