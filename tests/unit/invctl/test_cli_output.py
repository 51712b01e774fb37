"""How data reads: tables on a terminal, tsv in a pipe, JSON when asked; short ids, one
time style, colour only where wanted."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from invctl.style import Style, people_time
from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
ORDER_ID = "5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13"
LOCAL_REF = "0d6f4b2a-7e13-4e8a-9c21-5f0c9a1e3b7d"
PIPED = {"INVCTL_OUTPUT": None}  # the runner's stdout is not a terminal: invctl's default
KOLKATA = {"TZ": "Asia/Kolkata"}  # +05:30 all year: local times are known
TERMINAL_COLOUR = {"FORCE_COLOR": "1"}


def sale(**overrides: Any) -> dict[str, Any]:
    record = {
        "local_ref": LOCAL_REF,
        "status": "confirmed",
        "order_id": ORDER_ID,
        "created_at": "2026-11-29T10:00:00.123456+00:00",
        "lines": [{"sku": "MILK-1L", "quantity": 2}],
        "reason": None,
    }
    return {**record, **overrides}


def product(**overrides: Any) -> dict[str, Any]:
    record = {"sku": "MILK-1L", "name": "Milk", "price": "1.25", "category_id": 3, "active": True}
    return {**record, **overrides}


@pytest.fixture
def sales(server: FakeServer) -> list[dict[str, Any]]:
    items = [sale(), sale(local_ref="L-0006", order_id=None, status="queued")]
    server.on("GET", f"{AGENT}/orders", 200, {"items": items})
    return items


# --- the format -------------------------------------------------------------------------------


def test_a_pipe_gets_tab_separated_lines_with_a_header(
    cli: CliHarness, sales: list[dict[str, Any]]
) -> None:
    result = cli("orders", "list", env={**PIPED, **KOLKATA})

    assert result.exit_code == 0, result.output
    header, first, second = result.stdout.splitlines()
    assert header.split("\t") == [
        "local_ref",
        "status",
        "order_id",
        "created_at",
        "items",
        "reason",
    ]
    assert first.split("\t") == [
        LOCAL_REF,
        "confirmed",
        ORDER_ID,
        "2026-11-29T15:30:00+05:30",
        "MILK-1L x2",
        "",
    ]
    assert second.split("\t")[:3] == ["L-0006", "queued", ""]
    assert "─" not in result.stdout and "│" not in result.stdout


@pytest.mark.parametrize("choice", [["-o", "tsv"], ["--output", "tsv"]], ids=["short", "long"])
def test_tsv_can_be_asked_for_on_a_terminal_too(
    cli: CliHarness, sales: list[dict[str, Any]], choice: list[str]
) -> None:
    result = cli(*choice, "orders", "list")

    assert result.stdout.splitlines()[1].split("\t")[0] == LOCAL_REF


def test_the_environment_chooses_the_format(cli: CliHarness, sales: list[dict[str, Any]]) -> None:
    tsv = cli("orders", "list", env={"INVCTL_OUTPUT": "tsv"})
    table = cli("orders", "list", env={"INVCTL_OUTPUT": "table"})

    assert "\t" in tsv.stdout
    assert "\t" not in table.stdout and "─" in table.stdout


@pytest.mark.parametrize(
    "args",
    [["-o", "json", "orders", "list"], ["--json", "orders", "list"], ["orders", "list", "--json"]],
    ids=["-o json", "root --json", "command --json"],
)
def test_json_is_asked_for_by_o_json_or_json(
    cli: CliHarness, sales: list[dict[str, Any]], args: list[str]
) -> None:
    result = cli(*args, env=PIPED)

    assert json.loads(result.stdout) == sales


def test_json_beats_another_output_choice(cli: CliHarness, sales: list[dict[str, Any]]) -> None:
    result = cli("-o", "tsv", "orders", "list", "--json")

    assert json.loads(result.stdout) == sales


def test_an_unknown_output_format_is_a_usage_error(cli: CliHarness, server: FakeServer) -> None:
    result = cli("-o", "yaml", "orders", "list")

    assert result.exit_code == 2
    assert server.requests == []


def test_tsv_writes_the_data_whole_and_keeps_each_row_on_one_line(
    cli: CliHarness, server: FakeServer
) -> None:
    odd = product(name="Milk\tand\ncream", active=False, category_id=None)
    server.on("GET", f"{API}/products", 200, {"items": [odd]})
    server.on("GET", f"{API}/categories", 200, {"items": []})

    result = cli("--central", CENTRAL, "-o", "tsv", "product", "list", env={"INVCTL_TOKEN": "t"})

    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["name"] == "Milk\\x09and\\x0acream"
    assert row["active"] == "false"
    assert row["sku"] == "MILK-1L"


def test_a_record_in_tsv_is_one_field_per_line(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/products/MILK-1L", 200, product())

    result = cli("--central", CENTRAL, "-o", "tsv", "product", "show", "MILK-1L")

    assert "sku\tMILK-1L" in result.stdout.splitlines()
    assert "active\ttrue" in result.stdout.splitlines()


def test_an_empty_list_in_tsv_is_only_the_header(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{AGENT}/orders", 200, {"items": []})

    result = cli("-o", "tsv", "orders", "list")

    assert result.stdout == "local_ref\tstatus\torder_id\tcreated_at\titems\treason\n"


# --- ids and times ------------------------------------------------------------------------


def test_tables_show_ids_by_their_first_8_characters(
    cli: CliHarness, sales: list[dict[str, Any]]
) -> None:
    result = cli("orders", "list")

    row = next(line for line in result.stdout.splitlines() if "confirmed" in line)
    assert row.split()[0] == LOCAL_REF[:8]
    assert ORDER_ID[:8] in row.split()
    assert ORDER_ID not in result.stdout


def test_one_record_shows_its_id_whole(cli: CliHarness, server: FakeServer) -> None:
    order = {"id": ORDER_ID, "status": "confirmed", "lines": []}
    server.on("GET", f"{API}/orders/{ORDER_ID}", 200, order)

    result = cli("--central", CENTRAL, "orders", "show", ORDER_ID, env={"INVCTL_TOKEN": "t"})

    assert ORDER_ID in result.stdout


def test_times_show_in_local_time_to_the_second(
    cli: CliHarness, sales: list[dict[str, Any]]
) -> None:
    result = cli("orders", "list", env=KOLKATA)

    assert "2026-11-29 15:30:00" in result.stdout
    assert "10:00:00.123456" not in result.stdout
    assert "+00:00" not in result.stdout


@pytest.mark.parametrize("utc", [["--utc"], []], ids=["flag", "env"])
def test_utc_shows_times_in_utc_marked_z(
    cli: CliHarness, sales: list[dict[str, Any]], utc: list[str]
) -> None:
    env = {**KOLKATA, **({} if utc else {"INVCTL_UTC": "1"})}

    table = cli(*utc, "orders", "list", env=env)
    tsv = cli(*utc, "-o", "tsv", "orders", "list", env=env)

    assert "2026-11-29 10:00:00Z" in table.stdout
    assert "2026-11-29T10:00:00Z" in tsv.stdout


def test_a_time_without_a_zone_is_read_as_utc() -> None:
    from invctl.style import styled

    with styled(Style(utc=True)):
        assert people_time("2026-11-29T10:00:00") == "2026-11-29 10:00:00Z"
        assert people_time("not a time") == "not a time"


@pytest.mark.parametrize(
    ("edge", "in_utc"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-01 00:00:00Z"),
        ("9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59-12:00"),  # no year 10000: as sent
    ],
)
def test_a_time_at_the_edge_of_the_calendar_still_shows(
    edge: str, in_utc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from invctl.style import styled

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    with styled(Style(utc=True)):
        assert people_time(edge).startswith(in_utc)
    with styled(Style()):
        assert people_time(edge)[:4] in ("0001", "9999")


def test_record_times_follow_the_same_style(cli: CliHarness, server: FakeServer) -> None:
    stock = {"sku": "MILK-1L", "quantity": 4, "updated_at": "2026-11-29T09:00:00Z"}
    server.on("GET", f"{AGENT}/stock/MILK-1L", 200, stock)

    result = cli("stock", "show", "MILK-1L", env=KOLKATA)

    assert "2026-11-29 14:30:00" in result.stdout


# --- colour -------------------------------------------------------------------------------


def _refused(server: FakeServer) -> None:
    server.on("GET", f"{AGENT}/stock/MILK-1L", 409, error_body("stock.nope", "refused"))


def test_errors_are_coloured_on_a_colour_terminal(cli: CliHarness, server: FakeServer) -> None:
    _refused(server)

    result = cli("stock", "show", "MILK-1L", env=TERMINAL_COLOUR)

    assert "\x1b[31m" in result.stderr


def test_no_color_keeps_errors_and_tables_plain(cli: CliHarness, server: FakeServer) -> None:
    _refused(server)
    server.on("GET", f"{AGENT}/orders", 200, {"items": [sale()]})
    env = {**TERMINAL_COLOUR, "NO_COLOR": "1"}

    error = cli("stock", "show", "MILK-1L", env=env)
    table = cli("orders", "list", env=env)

    assert "error: refused [stock.nope]" in error.stderr
    assert "\x1b[" not in error.stderr
    assert "\x1b[3" not in table.stdout  # no colour (bold headers are not colour)


def test_warnings_are_coloured_only_where_wanted(cli: CliHarness, server: FakeServer) -> None:
    plain_http = "http://central.test:8000"  # --insecure warns about it
    server.on("GET", f"{plain_http}/api/v1/sync/stores", 200, {"kafka": "ok", "items": []})
    args = ("--central", plain_http, "--insecure", "sync", "status", "--all")

    coloured = cli(*args, env={**TERMINAL_COLOUR, "INVCTL_TOKEN": "t"})
    plain = cli(*args, env={**TERMINAL_COLOUR, "NO_COLOR": "1", "INVCTL_TOKEN": "t"})

    assert "\x1b[33mwarning: --insecure" in coloured.stderr
    assert plain.stderr.startswith("warning: --insecure")
    assert "\x1b" not in plain.stderr


# --- streams ------------------------------------------------------------------------------


def test_watch_with_json_prints_one_object_per_line(cli: CliHarness, server: FakeServer) -> None:
    answers = [{"kafka": "ok", "items": [{"store_id": f"s{n}"}]} for n in range(2)]

    def fleet(request: httpx.Request) -> httpx.Response:
        if answers:
            return httpx.Response(200, json=answers.pop(0))
        return httpx.Response(401, json=error_body("auth.invalid", "stop watching"))

    server.on_call("GET", f"{API}/sync/stores", fleet)
    args = ("--central", CENTRAL, "--json", "sync", "status", "--all", "--watch", "0.5")

    result = cli(*args, env={"INVCTL_TOKEN": "t"})

    assert result.exit_code == 6  # the third refresh was refused: the watch ended
    lines = result.stdout.splitlines()
    assert [json.loads(line)["items"][0]["store_id"] for line in lines[:2]] == ["s0", "s1"]


def test_watch_in_a_pipe_prints_each_refresh_as_tsv(cli: CliHarness, server: FakeServer) -> None:
    answers = [{"kafka": "ok", "items": [{"store_id": f"s{n}", "lag": n}]} for n in range(2)]

    def fleet(request: httpx.Request) -> httpx.Response:
        if answers:
            return httpx.Response(200, json=answers.pop(0))
        return httpx.Response(401, json=error_body("auth.invalid", "stop watching"))

    server.on_call("GET", f"{API}/sync/stores", fleet)
    args = ("--central", CENTRAL, "sync", "status", "--all", "--watch", "0.5")

    result = cli(*args, env={**PIPED, "INVCTL_TOKEN": "t"})

    assert result.exit_code == 6
    refreshes = [block.splitlines() for block in result.stdout.strip().split("\n\n")]
    assert [rows[1].split("\t")[:3] for rows in refreshes] == [["s0", "", "0"], ["s1", "", "1"]]


def test_tsv_escapes_text_that_would_act_on_the_terminal(
    cli: CliHarness, server: FakeServer
) -> None:
    hostile = "Milk\x1b]0;owned\x07\x1b[2J\u202e"
    server.on("GET", f"{API}/products/MILK-1L", 200, product(name=hostile))
    server.on("GET", f"{AGENT}/sync/status", 200, {"store_id": hostile, "partitions": []})

    record = cli("--central", CENTRAL, "-o", "tsv", "product", "show", "MILK-1L")
    grid = cli("-o", "tsv", "sync", "status")  # a summary grid the command builds itself

    assert "name\tMilk\\x1b]0;owned\\x07\\x1b[2J\\u202e" in record.stdout.splitlines()
    assert "store\tMilk\\x1b]0;owned\\x07\\x1b[2J\\u202e" in grid.stdout.splitlines()
    assert "\x1b" not in record.stdout + grid.stdout
