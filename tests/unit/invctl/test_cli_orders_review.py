"""`invctl orders list | show` at central for sales a restored central could not take again
(status `unrecovered`): the filter is accepted and the review's code is shown."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
ORDER_ID = "5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13"
REVIEW = {
    "code": "stock.insufficient",
    "message": "Not enough stock for some lines; nothing was reserved.",
    "details": {"lines": [{"sku": "MILK-1L", "requested": 2, "available": 0}]},
}


def make_order(**overrides: Any) -> dict[str, Any]:
    order = {
        "id": ORDER_ID,
        "store_id": "store-042",
        "status": "unrecovered",
        "created_at": "2026-11-29T10:00:00+00:00",
        "created_by": "store:store-042",
        "cancelled_at": None,
        "recovered_at": None,
        "review": REVIEW,
        "total": "2.50",
        "lines": [{"sku": "MILK-1L", "quantity": 2, "unit_price": "1.25"}],
    }
    return {**order, **overrides}


def central_cli(cli: CliHarness, *args: str) -> Any:
    return cli("--central", CENTRAL, *args, env={"INVCTL_API_KEY": "store-key-1"})


def test_orders_list_at_central_filters_unrecovered_and_shows_the_review_code(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{API}/orders", 200, {"items": [make_order()], "next_before": None})

    result = central_cli(cli, "orders", "list", "--status", "unrecovered")

    assert result.exit_code == 0, result.output
    assert server.requests[-1].url.params["status"] == "unrecovered"
    assert "review" in result.stdout and "stock.insufficient" in result.stdout


def test_orders_list_json_keeps_central_review_whole(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/orders", 200, {"items": [make_order()], "next_before": None})

    result = central_cli(cli, "--json", "orders", "list", "--status", "unrecovered")

    assert json.loads(result.stdout) == [make_order()]


def test_orders_list_shows_no_review_column_when_no_order_has_one(
    cli: CliHarness, server: FakeServer
) -> None:
    confirmed = make_order(status="confirmed", review=None)
    server.on("GET", f"{API}/orders", 200, {"items": [confirmed], "next_before": None})

    result = central_cli(cli, "orders", "list")

    assert result.exit_code == 0, result.output
    assert "review" not in result.stdout


def test_orders_show_names_the_review_with_its_message(cli: CliHarness, server: FakeServer):
    server.on("GET", f"{API}/orders/{ORDER_ID}", 200, make_order())

    result = central_cli(cli, "orders", "show", ORDER_ID)

    assert result.exit_code == 0, result.output
    assert "stock.insufficient: Not enough stock" in result.stdout


def test_an_admin_closing_an_unrecovered_order_is_told_no_stock_moved(
    cli: CliHarness, server: FakeServer
) -> None:
    closed = make_order(status="cancelled", cancelled_at="2026-11-29T11:00:00+00:00")
    server.on("POST", f"{API}/orders/{ORDER_ID}/cancel", 200, closed)

    result = central_cli(cli, "orders", "cancel", ORDER_ID)

    assert result.exit_code == 0, result.output
    assert "it took no stock" in result.stdout
