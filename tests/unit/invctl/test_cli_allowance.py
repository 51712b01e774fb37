"""`invctl allowance`: grants, the list a page at a time, one allowance, returns and the rules
that top stores up, each to central's route, with its table, JSON and exit codes."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
GRANT_ID = "5f0c9a1e-7b7d-4c55-9d8e-2f4b8c1d0a11"


def allowance(n: int = 1, **overrides):
    return {
        "id": f"5f0c9a1e-7b7d-4c55-9d8e-2f4b8c1d0a{n:02d}",
        "store_id": "store-042",
        "sku": "MILK-1L",
        "units": 6,
        "remaining": 4,
        "expires_at": "2026-12-02T10:00:00+00:00",
        "state": "live",
        "created_at": "2026-12-01T10:00:00+00:00",
        "updated_at": "2026-12-01T10:00:00+00:00",
        "version": 1,
        **overrides,
    }


RULE = {
    "id": 1,
    "scope": "sku",
    "target": "MILK-1L",
    "units": 6,
    "threshold": 2,
    "ttl_s": 86400,
    "share": None,
    "share_days": None,
    "updated_at": "2026-12-01T10:00:00+00:00",
    "updated_by": "user:root",
}


def central(cli: CliHarness, *args: str):
    return cli("--central", CENTRAL, *args, env={"INVCTL_TOKEN": "t"})


def test_grant_sends_store_sku_units_and_ttl(cli: CliHarness, server: FakeServer) -> None:
    server.on("POST", f"{API}/allowances", 201, allowance(11))

    result = central(
        cli,
        "--json",
        "allowance",
        "grant",
        "store-042",
        "MILK-1L",
        "--units",
        "6",
        "--ttl",
        "86400",
    )

    assert result.exit_code == 0, result.output
    assert server.sent_json() == {
        "store": "store-042",
        "sku": "MILK-1L",
        "units": 6,
        "ttl_s": 86400,
    }
    assert json.loads(result.stdout)["id"] == GRANT_ID


def test_a_grant_beyond_the_stock_exits_4(cli: CliHarness, server: FakeServer) -> None:
    refused = error_body("stock.insufficient", "Not enough stock.")
    server.on("POST", f"{API}/allowances", 409, refused)

    result = central(
        cli, "allowance", "grant", "store-042", "MILK-1L", "--units", "6", "--ttl", "600"
    )

    assert result.exit_code == 4
    assert "Traceback" not in result.output


def test_a_ttl_under_a_minute_is_a_usage_error(cli: CliHarness, server: FakeServer) -> None:
    result = central(
        cli, "allowance", "grant", "store-042", "MILK-1L", "--units", "1", "--ttl", "5"
    )

    assert result.exit_code == 2
    assert server.requests == []


def test_list_filters_and_says_when_it_was_cut(cli: CliHarness, server: FakeServer) -> None:
    pages = {
        None: {"items": [allowance(1), allowance(2)], "next_before": 7},
        "7": {"items": [allowance(3)], "next_before": 5},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("before")])

    server.on_call("GET", f"{API}/allowances", answer)

    result = central(cli, "allowance", "list", "--store", "store-042", "--state", "live", "-n", "3")

    assert result.exit_code == 0, result.output
    params = [dict(r.url.params) for r in server.requests]
    assert params == [
        {"store": "store-042", "state": "live", "limit": "3"},
        {"store": "store-042", "state": "live", "before": "7", "limit": "1"},
    ]
    header, *lines = result.stdout.splitlines()
    assert header.split()[:4] == ["id", "store", "sku", "units"]
    assert len([line for line in lines if "MILK-1L" in line]) == 3
    assert "there are more" in result.stderr


def test_list_refuses_an_unknown_state(cli: CliHarness, server: FakeServer) -> None:
    result = central(cli, "allowance", "list", "--state", "open")

    assert result.exit_code == 2
    assert "--state is one of live, settling, closed" in result.output
    assert server.requests == []


def test_show_finds_the_allowance_in_the_list(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/allowances", 200, {"items": [allowance(11)], "next_before": None})

    result = central(cli, "--json", "allowance", "show", GRANT_ID)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == allowance(11)


def test_show_of_an_unknown_id_exits_3(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/allowances", 200, {"items": [allowance(1)], "next_before": None})

    result = central(cli, "allowance", "show", GRANT_ID)

    assert result.exit_code == 3
    assert f"no allowance {GRANT_ID}" in result.output


def test_return_closes_it_and_a_second_return_exits_4(cli: CliHarness, server: FakeServer) -> None:
    url = f"{API}/allowances/{GRANT_ID}/return"
    server.on("POST", url, 200, allowance(11, state="closed", remaining=0))
    assert central(cli, "allowance", "return", GRANT_ID).exit_code == 0

    server.on("POST", url, 409, error_body("allowance.closed", "The allowance is no longer live."))
    assert central(cli, "allowance", "return", GRANT_ID).exit_code == 4


def test_set_puts_a_skus_rule(cli: CliHarness, server: FakeServer) -> None:
    server.on("PUT", f"{API}/allowance-rules/sku/MILK-1L", 200, RULE)

    result = central(
        cli, "allowance", "set", "MILK-1L", "--units", "6", "--threshold", "2", "--ttl", "86400"
    )

    assert result.exit_code == 0, result.output
    assert server.sent_json() == {"units": 6, "threshold": 2, "ttl_s": 86400}


def test_set_with_category_puts_the_categorys_rule(cli: CliHarness, server: FakeServer) -> None:
    server.on("PUT", f"{API}/allowance-rules/category/7", 200, {**RULE, "scope": "category"})

    args = ["--units", "6", "--threshold", "2", "--ttl", "600"]
    result = central(cli, "allowance", "set", "7", "--category", *args)

    assert result.exit_code == 0, result.output
    assert central(cli, "allowance", "set", "Dairy", "--category", *args).exit_code == 2


def test_a_threshold_over_the_units_is_refused_by_central(
    cli: CliHarness, server: FakeServer
) -> None:
    refused = error_body("request.invalid", "threshold is a whole number from 1 to units")
    server.on("PUT", f"{API}/allowance-rules/sku/MILK-1L", 422, refused)

    result = central(
        cli, "allowance", "set", "MILK-1L", "--units", "2", "--threshold", "3", "--ttl", "600"
    )

    assert result.exit_code != 0
    assert "threshold" in result.output
    assert "Traceback" not in result.output


def test_rules_lists_them_and_says_when_cut(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/allowance-rules", 200, {"items": [RULE], "next_after": 1})

    result = central(cli, "allowance", "rules", "-n", "1")

    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split()[:4] == ["scope", "target", "units", "threshold"]
    (row,) = [line for line in lines if line.startswith("sku")]
    assert row.split()[:5] == ["sku", "MILK-1L", "6", "2", "86400"]
    assert "there are more" in result.stderr


def test_unset_deletes_the_rule_and_a_missing_one_exits_3(
    cli: CliHarness, server: FakeServer
) -> None:
    url = f"{API}/allowance-rules/sku/MILK-1L"
    server.on("DELETE", url, 204)
    assert central(cli, "allowance", "unset", "MILK-1L").exit_code == 0

    server.on("DELETE", url, 404, error_body("allowance_rule.not_found", "No allowance rule."))
    assert central(cli, "allowance", "unset", "MILK-1L").exit_code == 3


def test_set_sends_a_share_with_its_days(cli: CliHarness, server: FakeServer) -> None:
    server.on("PUT", f"{API}/allowance-rules/sku/MILK-1L", 200, {**RULE, "share": 0.5})
    args = ["--units", "6", "--threshold", "2", "--ttl", "600"]

    result = central(cli, "allowance", "set", "MILK-1L", *args, "--share", "0.5", "--days", "14")

    assert result.exit_code == 0, result.output
    assert server.sent_json() == {
        "units": 6,
        "threshold": 2,
        "ttl_s": 600,
        "share": 0.5,
        "share_days": 14,
    }
    assert central(cli, "allowance", "set", "MILK-1L", *args, "--days", "14").exit_code == 2
    assert central(cli, "allowance", "set", "MILK-1L", *args, "--share", "2").exit_code == 2
