"""`invctl buy` and `invctl orders`: lines parsed locally, the documented requests, exit codes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from invctl.commands.buy import Line, parse_line
from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
ORDER_ID = "5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13"


def make_line(sku: str = "MILK-1L", quantity: int = 2, **overrides: Any) -> dict[str, Any]:
    line = {
        "sku": sku,
        "quantity": quantity,
        "unit_price": "1.25",
        "stock": {"quantity": 38, "stock_version": 8},
    }
    return {**line, **overrides}


def make_order(**overrides: Any) -> dict[str, Any]:
    order = {
        "id": ORDER_ID,
        "store_id": "store-042",
        "status": "confirmed",
        "created_at": "2026-11-29T10:00:00+00:00",
        "created_by": "store:store-042",
        "cancelled_at": None,
        "total": "2.50",
        "lines": [make_line()],
    }
    return {**order, **overrides}


def make_sale(**overrides: Any) -> dict[str, Any]:
    """The store agent's record of a sale (`GET {agent}/orders` items)."""
    sale = {
        "local_ref": "L-0007",
        "status": "queued",
        "order_id": None,
        "lines": [{"sku": "MILK-1L", "quantity": 2}],
        "created_at": "2026-11-29T10:00:00+00:00",
        "reason": None,
    }
    return {**sale, **overrides}


def make_agent_order(**overrides: Any) -> dict[str, Any]:
    """The store agent's 201: central's order, its `local_ref` beside it, `order` for old tills."""
    order = make_order(**overrides)
    return {**order, "local_ref": "L-0007", "order": order}


def central_cli(cli: CliHarness, *args: str) -> Any:
    return cli("--central", CENTRAL, *args, env={"INVCTL_API_KEY": "store-key-1"})


# --- SKU[:QTY] -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("MILK-1L", Line("MILK-1L", 1)),
        ("MILK-1L:3", Line("MILK-1L", 3)),
        ("B.2_X-1:007", Line("B.2_X-1", 7)),
        ("EGGS:10000", Line("EGGS", 10_000)),
    ],
)
def test_sku_and_optional_quantity_parse(text: str, line: Line) -> None:
    assert parse_line(text) == line


@pytest.mark.parametrize(
    "text",
    [
        "milk-1l",
        "MILK 1L",
        ":3",
        "MILK-1L:",
        "MILK-1L:0",
        "MILK-1L:-1",
        "MILK-1L:+1",
        "MILK-1L:2.5",
        "MILK-1L:two",
        "MILK-1L:10001",
        "MILK-1L:2:3",
        "MILK-1L:٣",
    ],
)
def test_bad_buy_argument_is_a_usage_error_before_any_request(
    cli: CliHarness, server: FakeServer, text: str
) -> None:
    result = cli("buy", "BREAD", text)

    assert result.exit_code == 2
    assert repr(text) in result.stderr
    assert "SKU:QTY" in result.stderr
    assert server.requests == []


def test_a_repeated_sku_is_refused_with_the_total_to_give(
    cli: CliHarness, server: FakeServer
) -> None:
    result = cli("buy", "MILK-1L", "BREAD", "MILK-1L:2")

    assert result.exit_code == 2
    assert "repeated: MILK-1L" in result.stderr
    assert "MILK-1L:3" in result.stderr
    assert server.requests == []


def test_more_than_a_hundred_lines_is_refused(cli: CliHarness, server: FakeServer) -> None:
    result = cli("buy", *(f"SKU-{n}" for n in range(101)))

    assert result.exit_code == 2
    assert server.requests == []


def test_buy_needs_at_least_one_product(cli: CliHarness, server: FakeServer) -> None:
    assert cli("buy").exit_code == 2
    assert server.requests == []


# --- buy -------------------------------------------------------------------------------------


def test_buy_goes_to_the_store_agent_by_default(cli: CliHarness, server: FakeServer) -> None:
    confirmed = make_agent_order()
    server.on("POST", f"{AGENT}/orders", 201, confirmed)

    result = cli("buy", "MILK-1L:2", "BREAD")

    assert result.exit_code == 0, result.output
    assert server.sent_json() == {
        "lines": [{"sku": "MILK-1L", "quantity": 2}, {"sku": "BREAD", "quantity": 1}]
    }
    assert "X-API-Key" not in server.requests[-1].headers
    row = next(line for line in result.stdout.splitlines() if "MILK-1L" in line)
    assert row.replace("│", " ").split() == ["MILK-1L", "2", "1.25", "38"]
    assert f"Order {ORDER_ID}: total 2.50 (local reference L-0007)" in result.stdout


def test_buy_at_central_sends_a_fresh_idempotency_key_and_the_store_key(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("POST", f"{API}/orders", 201, make_order())

    first = central_cli(cli, "buy", "MILK-1L:2")
    central_cli(cli, "buy", "MILK-1L:2")

    assert first.exit_code == 0, first.output
    assert f"Order {ORDER_ID}: total 2.50" in first.stdout
    keys = [request.headers["Idempotency-Key"] for request in server.requests]
    assert [uuid.UUID(key).version for key in keys] == [4, 4]
    assert keys[0] != keys[1]
    assert {request.headers["X-API-Key"] for request in server.requests} == {"store-key-1"}
    assert server.sent_json() == {"lines": [{"sku": "MILK-1L", "quantity": 2}]}


def test_buy_at_central_as_the_logged_in_staff_user(cli: CliHarness, server: FakeServer) -> None:
    server.on("POST", f"{API}/orders", 201, make_order())

    result = cli("--central", CENTRAL, "buy", "MILK-1L", env={"INVCTL_TOKEN": "staff-token"})

    assert result.exit_code == 0, result.output
    assert server.requests[-1].headers["Authorization"] == "Bearer staff-token"


def test_buy_goes_to_central_named_in_the_environment(cli: CliHarness, server: FakeServer) -> None:
    server.on("POST", f"{API}/orders", 201, make_order())

    result = cli("buy", "MILK-1L", env={"INVCTL_AGENT": None, "INVCTL_CENTRAL": CENTRAL})

    assert result.exit_code == 0, result.output
    assert str(server.requests[-1].url) == f"{API}/orders"


def test_a_given_idempotency_key_is_sent_unchanged_on_every_retry(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("POST", f"{API}/orders", 201, make_order())

    for _ in range(2):
        central_cli(cli, "buy", "MILK-1L:2", "--idempotency-key", "till3-sale-0042")

    keys = {request.headers["Idempotency-Key"] for request in server.requests}
    assert keys == {"till3-sale-0042"}


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "caf\u00e9"])
def test_a_bad_idempotency_key_is_a_usage_error(
    cli: CliHarness, server: FakeServer, key: str
) -> None:
    result = central_cli(cli, "buy", "MILK-1L", "--idempotency-key", key)

    assert result.exit_code == 2
    assert "--idempotency-key" in result.stderr
    assert server.requests == []


def test_short_stock_exits_4_and_lists_each_short_line(cli: CliHarness, server: FakeServer) -> None:
    short = [
        {"sku": "BREAD", "requested": 3, "available": 1},
        {"sku": "MILK-1L", "requested": 5, "available": 0},
    ]
    body = error_body("stock.insufficient", "not enough stock", lines=short)
    server.on("POST", f"{API}/orders", 409, body)

    result = central_cli(cli, "buy", "MILK-1L:5", "BREAD:3")

    assert result.exit_code == 4
    assert result.stdout == ""
    assert "error: not enough stock [stock.insufficient]" in result.stderr
    assert "BREAD: requested 3, available 1" in result.stderr
    assert "MILK-1L: requested 5, available 0" in result.stderr
    assert "hint: nothing was sold" in result.stderr


def test_short_stock_in_json_keeps_the_servers_details(cli: CliHarness, server: FakeServer) -> None:
    short = [{"sku": "MILK-1L", "requested": 5, "available": 0}]
    server.on(
        "POST", f"{AGENT}/orders", 409, error_body("stock.insufficient", "short", lines=short)
    )

    result = cli("--json", "buy", "MILK-1L:5")

    assert result.exit_code == 4
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["details"]["lines"]) == ("stock.insufficient", short)


def test_a_sale_queued_offline_exits_0_and_says_so_plainly(
    cli: CliHarness, server: FakeServer
) -> None:
    queued = {"status": "queued", "local_ref": "L-0007", "lines": [make_line()]}
    server.on("POST", f"{AGENT}/orders", 202, queued)

    result = cli("buy", "MILK-1L:2")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "queued offline (central unreachable): local reference L-0007"
        " — it will be sent when central is back"
    )


def test_a_sale_under_the_stores_allowance_exits_0_and_says_it_is_final(
    cli: CliHarness, server: FakeServer
) -> None:
    sold = {"status": "allowance", "local_ref": "L-0008", "lines": [make_line()]}
    server.on("POST", f"{AGENT}/orders", 202, sold)

    result = cli("buy", "MILK-1L:2")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "sold offline under the store's allowance (final; central unreachable): local "
        "reference L-0008 — it will be sent when central is back"
    )


def test_a_sale_queued_beyond_the_allowance_says_why(cli: CliHarness, server: FakeServer) -> None:
    queued = {
        "status": "queued",
        "local_ref": "L-9",
        "lines": [make_line()],
        "reason": "allowance.short",
    }
    server.on("POST", f"{AGENT}/orders", 202, queued)

    result = cli("buy", "MILK-1L:2")

    assert result.exit_code == 0, result.output
    assert "queued offline" in result.stdout
    assert "allowance of a product in it is too small" in result.stdout


def test_agent_that_cannot_queue_exits_5(cli: CliHarness, server: FakeServer) -> None:
    body = error_body("central.unavailable", "central is unreachable")
    server.on("POST", f"{AGENT}/orders", 503, body)

    assert cli("buy", "MILK-1L").exit_code == 5


@pytest.mark.parametrize(
    "answer",
    [
        make_agent_order(),
        {"status": "queued", "local_ref": "L-0007", "lines": [make_line()]},
    ],
    ids=["confirmed", "queued"],
)
def test_buy_json_prints_the_servers_answer(
    cli: CliHarness, server: FakeServer, answer: dict[str, Any]
) -> None:
    server.on("POST", f"{AGENT}/orders", 201, answer)

    result = cli("buy", "MILK-1L:2", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == answer


def test_buy_json_at_central_prints_the_order(cli: CliHarness, server: FakeServer) -> None:
    server.on("POST", f"{API}/orders", 201, make_order())

    result = central_cli(cli, "--json", "buy", "MILK-1L:2")

    assert json.loads(result.stdout) == make_order()


# --- orders list -----------------------------------------------------------------------------


def _pages(pages: dict[str | None, dict[str, Any]]) -> Any:
    """A handler answering `GET /orders` by its `before` parameter."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("before")])

    return answer


def test_orders_list_all_pages_follows_next_before(cli: CliHarness, server: FakeServer) -> None:
    orders = [make_order(id=f"order-{n}") for n in range(5)]
    pages: dict[str | None, dict[str, Any]] = {
        None: {"items": orders[:2], "next_before": 40},
        "40": {"items": orders[2:4], "next_before": 20},
        "20": {"items": orders[4:], "next_before": None},
    }
    server.on_call("GET", f"{API}/orders", _pages(pages))

    result = central_cli(
        cli, "--json", "orders", "list", "--all-pages", "--limit", "2",
        "--status", "confirmed", "--store", "store-042", "--since", "2026-11-01",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == orders
    sent = [dict(request.url.params) for request in server.requests]
    filters = {
        "limit": "2",
        "status": "confirmed",
        "store": "store-042",
        "since": "2026-11-01T00:00:00+00:00",  # local time (TZ=UTC here), with its offset
    }
    assert sent == [filters, {**filters, "before": "40"}, {**filters, "before": "20"}]


def test_orders_list_without_all_pages_reads_one_page_and_says_more_remain(
    cli: CliHarness, server: FakeServer
) -> None:
    pages: dict[str | None, dict[str, Any]] = {None: {"items": [make_order()], "next_before": 9}}
    server.on_call("GET", f"{API}/orders", _pages(pages))

    result = central_cli(cli, "orders", "list")

    assert result.exit_code == 0, result.output
    assert len(server.requests) == 1
    assert ORDER_ID[:8] in result.stdout  # the table shows ids short
    assert "MILK-1L x2" in result.stdout
    assert "--all-pages" in result.stderr


def test_a_cursor_that_does_not_go_down_stops_the_pages(
    cli: CliHarness, server: FakeServer
) -> None:
    pages: dict[str | None, dict[str, Any]] = {
        None: {"items": [make_order()], "next_before": 5},
        "5": {"items": [make_order()], "next_before": 5},
    }
    server.on_call("GET", f"{API}/orders", _pages(pages))

    result = central_cli(cli, "orders", "list", "--all-pages")

    assert result.exit_code == 1
    assert len(server.requests) == 2


def test_orders_list_reads_the_agent_by_default(cli: CliHarness, server: FakeServer) -> None:
    sales = [make_sale(), make_sale(local_ref="L-0006", status="rejected", reason="stock gone")]
    server.on("GET", f"{AGENT}/orders", 200, {"items": sales})

    result = cli("orders", "list", "--status", "queued", "-n", "10")

    assert result.exit_code == 0, result.output
    assert dict(server.requests[-1].url.params) == {"status": "queued", "limit": "10"}
    assert "L-0006" in result.stdout
    assert "stock gone" in result.stdout


@pytest.mark.parametrize("args", [["--store", "store-1"], ["--all-pages"]])
def test_central_only_list_options_are_refused_at_the_agent(
    cli: CliHarness, server: FakeServer, args: list[str]
) -> None:
    result = cli("orders", "list", *args)

    assert result.exit_code == 2
    assert "--central" in result.stderr
    assert server.requests == []


def test_central_has_no_queued_orders(cli: CliHarness, server: FakeServer) -> None:
    result = central_cli(cli, "orders", "list", "--status", "queued")

    assert result.exit_code == 2
    assert server.requests == []


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("20261101", "2026-11-01T00:00:00+00:00"),
        ("2026-11-29T10:00:00Z", "2026-11-29T10:00:00+00:00"),
        ("2026-11-29 10:00+02:00", "2026-11-29T10:00:00+02:00"),
    ],
)
def test_until_is_sent_in_extended_iso_form(
    cli: CliHarness, server: FakeServer, given: str, sent: str
) -> None:
    server.on("GET", f"{API}/orders", 200, {"items": [], "next_before": None})

    result = central_cli(cli, "orders", "list", "--until", given)

    assert result.exit_code == 0, result.output
    assert server.requests[-1].url.params["until"] == sent


def test_a_bad_since_is_a_usage_error(cli: CliHarness, server: FakeServer) -> None:
    result = central_cli(cli, "orders", "list", "--since", "last tuesday")

    assert result.exit_code == 2
    assert server.requests == []


# --- orders show / cancel --------------------------------------------------------------------


def test_orders_show_reads_central_by_id(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/orders/{ORDER_ID}", 200, make_order())

    result = central_cli(cli, "orders", "show", ORDER_ID)

    assert result.exit_code == 0, result.output
    assert "store-042" in result.stdout
    assert "stock after" in result.stdout


def test_orders_show_at_the_agent_asks_the_agent_for_the_reference_given(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{AGENT}/orders/L-0007", 200, make_sale(order_id=ORDER_ID))

    result = cli("--json", "orders", "show", "L-0007")

    assert json.loads(result.stdout) == make_sale(order_id=ORDER_ID)


def test_orders_show_at_the_agent_exits_3_when_unknown(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{AGENT}/orders/L-9999", 404, error_body("order.not_found", "no sale"))

    result = cli("orders", "show", "L-9999")

    assert result.exit_code == 3
    assert "--central" in result.stderr


def test_orders_cancel_posts_to_central(cli: CliHarness, server: FakeServer) -> None:
    cancelled = make_order(status="cancelled", cancelled_at="2026-11-29T11:00:00+00:00")
    server.on("POST", f"{API}/orders/{ORDER_ID}/cancel", 200, cancelled)

    result = central_cli(cli, "orders", "cancel", ORDER_ID)

    assert result.exit_code == 0, result.output
    assert server.requests[-1].headers["X-API-Key"] == "store-key-1"
    assert f"Order {ORDER_ID} is cancelled" in result.stdout


def test_orders_cancel_json_prints_the_order(cli: CliHarness, server: FakeServer) -> None:
    cancelled = make_order(status="cancelled")
    server.on("POST", f"{API}/orders/{ORDER_ID}/cancel", 200, cancelled)

    result = central_cli(cli, "--json", "orders", "cancel", ORDER_ID)

    assert json.loads(result.stdout) == cancelled


def test_orders_cancel_goes_through_the_store_agent_by_default(
    cli: CliHarness, server: FakeServer
) -> None:
    cancelled = {**make_order(status="cancelled"), "local_ref": "L-0007"}
    server.on("POST", f"{AGENT}/orders/{ORDER_ID[:8]}/cancel", 200, cancelled)

    result = cli("orders", "cancel", ORDER_ID[:8])

    assert result.exit_code == 0, result.output
    assert server.sent_json() == {}
    assert "X-API-Key" not in server.requests[-1].headers
    assert "is cancelled; its stock is released" in result.stdout


def test_cancelling_an_unknown_order_exits_3(cli: CliHarness, server: FakeServer) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    body = error_body("order.not_found", "no such order")
    server.on("POST", f"{API}/orders/{unknown}/cancel", 404, body)

    assert central_cli(cli, "orders", "cancel", unknown).exit_code == 3
