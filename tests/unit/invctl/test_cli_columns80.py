"""Every list command, in its default view on an 80-column terminal: each row on one line.

The fake answers every GET with the same three wide items (long names, UUIDs, microsecond
times), holding every field any list shows, so each table has something to squeeze."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import typer
from rich.cells import cell_len

from invctl.main import app
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer

pytestmark = pytest.mark.unit

WIDTH = 80
MOMENT = "2026-11-29T09:58:30.123456+00:00"
AT_CENTRAL = ("--central", CENTRAL)
# (arguments, reads central): every list view, at the agent and at central where both exist.
LIST_COMMANDS: list[tuple[tuple[str, ...], bool]] = [
    (("product", "list"), False),
    (("product", "list"), True),
    (("stock", "list"), False),
    (("stock", "list"), True),
    (("category", "list"), False),
    (("category", "list"), True),
    (("orders", "list"), False),
    (("orders", "list"), True),
    (("stock", "history", "ORGANIC-OAT-MILK-1L"), True),
    (("store", "list"), True),
    (("user", "list"), True),
    (("sync", "status", "--all"), True),
    (("sync", "dead-letters", "list"), False),
    (("store", "keys", "store-north-harbour-042"), True),
    (("allowance", "list"), True),
    (("allowance", "rules"), True),
]


def wide_item(n: int) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=0x5F0C9A1E3B7D4E8A9C210D6F4B2A7E13 + (n << 100))),
        "local_ref": str(uuid.uuid4()),
        "order_id": str(uuid.uuid4()),
        "sku": f"ORGANIC-OAT-MILK-BARISTA-{n}L",
        "name": "Organic oat milk, barista edition, one litre carton with a long name",
        "description": "A description long enough to wrap any column that would show it.",
        "price": "1234.50",
        "category_id": 12,
        "category": "Dairy and plant-based alternatives",
        "active": True,
        "quantity": 123456,
        "stock_version": 9876543,
        "updated_at": MOMENT,
        "store_id": "store-north-harbour-042",
        "status": "confirmed",
        "created_at": MOMENT,
        "created_by": "user:alice.longname@example.net",
        "total": "12345.60",
        "lines": [
            {"sku": "ORGANIC-OAT-MILK-1L", "quantity": 2},
            {"sku": "BREAD-WHITE-SLICED-800G", "quantity": 1},
        ],
        "reason": "stock.insufficient: only 1 left of ORGANIC-OAT-MILK-1L",
        "username": "alice.longname",
        "role": "staff",
        "active_keys": 2,
        "at": MOMENT,
        "actor": "user:alice.longname@example.net",
        "delta": -3,
        "note": "broken bottles found during the morning stock take in aisle 7",
        "lag": 123456,
        "seconds_since_seen": 3.2,
        "last_seen": MOMENT,
        "ready": True,
        "state": "auth_failed",  # the longest state word: auth-failed
        "healthy": False,
        "reported": {"ready": True, "offline_queue": 3, "dead_letters": 1},
        "problems": [
            {
                "code": "duplicate_agents",
                "message": "2 agent processes run for this store at once",
                "instance_ids": [str(uuid.uuid4()), str(uuid.uuid4())],
            }
        ],
        "instances": [{"instance_id": str(uuid.uuid4()), "live": True, "ready": True}],
        "topic": "store-north-harbour-042.inventory-updated",
        "partition": 11,
        "offset": 123456789,
        "code": "envelope.invalid",
        "message": "the value is not UTF-8 JSON: Expecting value: line 1 column 1 (char 0)",
        "prefix": "ik_AbCdEfG",
        "revoked_at": MOMENT,
        "units": 123456,
        "remaining": 123456,
        "expires_at": MOMENT,
        "scope": "category",
        "target": "ORGANIC-OAT-MILK-BARISTA-1L",
        "threshold": 123456,
        "ttl_s": 2592000,
        "share": 0.1234,
        "share_days": 365,
        "updated_by": "user:alice.longname@example.net",
    }


ITEMS = [wide_item(n) for n in range(3)]


def any_get(request: httpx.Request) -> httpx.Response:
    if request.method != "GET":
        return httpx.Response(405)
    return httpx.Response(200, json={"kafka": "ok", "items": ITEMS, "next_before": None})


def table_lines(output: str) -> list[str]:
    """The lines of the (first) table's body: after the rule under its header."""
    lines = output.splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) == {"─"})
    body = lines[rule + 1 :]
    return body[: body.index("")] if "" in body else body


@pytest.mark.parametrize(
    ("args", "at_central"),
    LIST_COMMANDS,
    ids=[f"{' '.join(a)}{' (central)' if c else ''}" for a, c in LIST_COMMANDS],
)
def test_every_row_of_a_list_fits_one_line_of_80_columns(
    cli: CliHarness, server: FakeServer, args: tuple[str, ...], at_central: bool
) -> None:
    server.fallback = any_get
    target = AT_CENTRAL if at_central else ()
    env = {"COLUMNS": str(WIDTH), "INVCTL_TOKEN": "t", "TZ": "Europe/Paris"}

    result = cli(*target, *args, env=env)

    assert result.exit_code == 0, result.output
    too_wide = [line for line in result.stdout.splitlines() if cell_len(line) > WIDTH]
    assert too_wide == []
    rows = table_lines(result.stdout)
    assert len(rows) == len(ITEMS), "\n".join(rows)  # a wrapped cell adds a line
    assert all(not row.startswith(" ") for row in rows)


def test_the_fleets_state_column_is_never_cut_at_80_columns(
    cli: CliHarness, server: FakeServer
) -> None:
    server.fallback = any_get
    env = {"COLUMNS": str(WIDTH), "INVCTL_TOKEN": "t"}

    result = cli(*AT_CENTRAL, "sync", "status", "--all", env=env)

    rows = table_lines(result.stdout)
    assert len(rows) == len(ITEMS)
    assert all(" auth-failed " in row for row in rows), "\n".join(rows)


def test_every_list_command_is_checked_at_80_columns() -> None:
    def leaves(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        subs = getattr(command, "commands", {})
        if not subs:
            return [path]
        return [leaf for name, sub in subs.items() for leaf in leaves(sub, (*path, name))]

    lists = {path for path in leaves(typer.main.get_command(app)) if path[-1] == "list"}
    checked = {args for args, _ in LIST_COMMANDS}

    assert lists <= checked


def test_a_table_wider_than_the_terminal_is_cut_not_wrapped(
    cli: CliHarness, server: FakeServer
) -> None:
    server.fallback = any_get

    wide = cli("--central", CENTRAL, "orders", "list", env={"COLUMNS": "250", "INVCTL_TOKEN": "t"})
    narrow = cli("--central", CENTRAL, "orders", "list", env={"COLUMNS": "80", "INVCTL_TOKEN": "t"})

    assert "BREAD-WHITE-SLICED-800G x1" in wide.stdout
    assert "BREAD-WHITE-SLICED-800G x1" not in narrow.stdout
    assert all(row.rstrip().endswith("…") for row in table_lines(narrow.stdout))


WIDE_KEYS = {
    "day": "2026-11-29",
    "sku": "ORGANIC-OAT-MILK-BARISTA-EDITION-WITH-A-VERY-LONG-NAME-1L-CARTON",  # 64, the most
    "store": "store-north-harbour-042-with-the-longest-id-a-store-may-have-x64",
}


def wide_sales(by: str) -> dict[str, Any]:
    figures = {"orders": 123456789, "units": 1234567890, "revenue": "9999999999999.99"}
    rows = [{**figures, "key": f"{WIDE_KEYS[by][:-1]}{n}", "revenue": f"{n + 1}000.00"}
            for n in range(len(ITEMS))]  # fmt: skip
    return {
        "by": by,
        "since": MOMENT,
        "until": MOMENT,
        "store": WIDE_KEYS["store"],
        "rows": rows,
        "truncated": False,
        "keys": len(rows),
        "totals": figures,
        "cancelled": figures,
    }


@pytest.mark.parametrize("by", sorted(WIDE_KEYS))
def test_a_sales_report_and_its_bars_fit_80_columns(
    cli: CliHarness, server: FakeServer, by: str
) -> None:
    server.on("GET", f"{CENTRAL}/api/v1/reports/sales", body=wide_sales(by))
    env = {"COLUMNS": str(WIDTH), "INVCTL_TOKEN": "t", "TZ": "Europe/Paris"}

    result = cli(*AT_CENTRAL, "report", "sales", "--by", by, env=env)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line for line in lines if cell_len(line) > WIDTH] == []
    rows = [line for line in lines if "█" in line]
    assert len(rows) == len(ITEMS), "\n".join(lines)  # one line each, every bar drawn
    assert all(row.rstrip()[-1] in "█▉▊▋▌▍▎▏" for row in rows), "\n".join(lines)


def test_a_stock_history_chart_fits_80_columns(cli: CliHarness, server: FakeServer) -> None:
    server.fallback = any_get
    env = {"COLUMNS": str(WIDTH), "INVCTL_TOKEN": "t", "TZ": "Europe/Paris"}

    result = cli(*AT_CENTRAL, "stock", "history", "ORGANIC-OAT-MILK-1L", "--chart", env=env)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line for line in lines if cell_len(line) > WIDTH] == []
    assert len(table_lines(result.stdout)) == len(ITEMS)
    assert all(row.rstrip().endswith("█") for row in table_lines(result.stdout))
