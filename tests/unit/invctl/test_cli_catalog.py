"""Catalog reads at the agent or central (`product list`, `stock list`, `category list`): they
page, say when they were cut, filter by category name or id; catalog changes at central
(`product update`, `category rename`) send only what was given."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
CATEGORIES = [{"id": 3, "name": "Dairy", "version": 1}, {"id": 7, "name": "Bakery", "version": 1}]


def product(number: int, **fields: Any) -> dict[str, Any]:
    return {
        "sku": f"P-{number:05d}",
        "name": f"Product {number}",
        "price": "1.25",
        "category_id": 3,
        "description": "",
        "active": True,
        "version": 1,
        "quantity": number % 7,
        "stock_version": 1,
    } | fields


def paged(total: int) -> Any:
    """A products route over `total` products that pages as central and the agent do."""
    everything = [product(i) for i in range(total)]

    def answer(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after", "")
        limit = int(request.url.params["limit"])
        rest = [p for p in everything if p["sku"] > after]
        page = rest[:limit]
        following = page[-1]["sku"] if len(rest) > limit else None
        return httpx.Response(200, json={"items": page, "next_after": following})

    return answer


def serve_catalog(server: FakeServer, root: str, total: int) -> None:
    server.on_call("GET", f"{root}/products", paged(total))
    server.on("GET", f"{root}/categories", 200, {"items": CATEGORIES, "next_after": None})


def test_a_cut_list_says_how_many_it_shows_and_how_to_see_all(
    cli: CliHarness, server: FakeServer
) -> None:
    serve_catalog(server, AGENT, 1_200)

    result = cli("--json", "product", "list")

    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 100
    assert "showing the first 100 products; there are more" in result.stderr
    assert "--all" in result.stderr


def test_all_follows_every_page(cli: CliHarness, server: FakeServer) -> None:
    serve_catalog(server, AGENT, 2_345)

    result = cli("--json", "product", "list", "--all")

    shown = json.loads(result.stdout)
    assert [p["sku"] for p in shown] == [f"P-{i:05d}" for i in range(2_345)]
    assert result.stderr == ""
    pages = [r.url.params for r in server.requests if r.url.path.endswith("/products")]
    assert [(p["limit"], p.get("after")) for p in pages] == [
        ("1000", None),
        ("1000", "P-00999"),
        ("1000", "P-01999"),
    ]


def test_a_limit_beyond_one_page_takes_several(cli: CliHarness, server: FakeServer) -> None:
    serve_catalog(server, AGENT, 1_600)

    result = cli("--json", "product", "list", "--limit", "1500")

    assert len(json.loads(result.stdout)) == 1_500
    limits = [r.url.params["limit"] for r in server.requests if r.url.path.endswith("/products")]
    assert limits == ["1000", "500"]
    assert "showing the first 1,500 products" in result.stderr


def test_a_list_that_fits_has_no_warning(cli: CliHarness, server: FakeServer) -> None:
    serve_catalog(server, AGENT, 100)

    result = cli("product", "list")

    assert result.exit_code == 0
    assert result.stderr == ""


def test_a_cursor_that_does_not_move_on_is_a_server_error(
    cli: CliHarness, server: FakeServer
) -> None:
    page = {"items": [product(1)], "next_after": "P-00001"}
    server.on("GET", f"{AGENT}/products", 200, page)

    result = cli("--json", "product", "list", "--all", env={"INVCTL_DEBUG": None})

    assert result.exit_code == 1
    assert "next_after" in result.stdout


@pytest.mark.parametrize("given", ["Dairy", "dairy", "3"])
def test_category_by_name_or_id_filters_at_the_server(
    cli: CliHarness, server: FakeServer, given: str
) -> None:
    serve_catalog(server, AGENT, 3)

    result = cli("--json", "product", "list", "--category", given, "--search", "milk",
                 "--low-stock", "4")  # fmt: skip

    assert result.exit_code == 0, result.output
    query = server.requests[-1].url.params
    assert (query["category"], query["search"], query["low_stock"]) == ("3", "milk", "4")


def test_an_unknown_category_is_not_found(cli: CliHarness, server: FakeServer) -> None:
    serve_catalog(server, AGENT, 3)

    result = cli("product", "list", "--category", "Fish")

    assert result.exit_code == 3
    assert "[category.not_found]" in result.stderr
    assert "invctl category list" in result.stderr


def test_product_and_stock_lists_read_the_agent_or_central_alike(
    cli: CliHarness, server: FakeServer
) -> None:
    serve_catalog(server, AGENT, 2)
    serve_catalog(server, API, 2)

    outputs = {
        (command, where): cli(*args, command, "list").stdout
        for command in ("product", "stock")
        for where, args in (("agent", ()), ("central", ("--central", CENTRAL)))
    }

    assert outputs["product", "agent"] == outputs["product", "central"]
    assert outputs["stock", "agent"] == outputs["stock", "central"]
    assert "Dairy" in outputs["product", "agent"], "categories by name"
    assert "version" in outputs["stock", "agent"]
    hosts = {r.url.host for r in server.requests}
    assert hosts == {"agent.test", "central.test"}


def test_category_list_pages_too(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{AGENT}/categories", 200, {"items": CATEGORIES, "next_after": 7})

    result = cli("category", "list", "--limit", "2")

    assert result.exit_code == 0
    assert "showing the first 2 categories" in result.stderr


def test_product_update_sends_only_the_fields_given(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/categories", 200, {"items": CATEGORIES, "next_after": None})
    server.on("PATCH", f"{API}/products/MILK-1L", 200, product(1, sku="MILK-1L"))

    result = cli("--central", CENTRAL, "product", "update", "MILK-1L", "--price", "1.3",
                 "--inactive", "--category", "Bakery")  # fmt: skip

    assert result.exit_code == 0, result.output
    assert server.sent_json() == {"price": "1.30", "active": False, "category_id": 7}


def test_product_update_without_a_change_is_a_usage_error(
    cli: CliHarness, server: FakeServer
) -> None:
    result = cli("--central", CENTRAL, "product", "update", "MILK-1L")

    assert result.exit_code == 2
    assert server.requests == []


def test_product_add_takes_a_category_name(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/categories", 200, {"items": CATEGORIES, "next_after": None})
    server.on("POST", f"{API}/products", 201, product(1))

    result = cli("--central", CENTRAL, "product", "add", "MILK-1L", "--name", "Milk",
                 "--price", "1", "--category", "Bakery")  # fmt: skip

    assert result.exit_code == 0, result.output
    assert server.sent_json()["category_id"] == 7


def test_category_rename_finds_the_old_name_and_patches_it(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{API}/categories", 200, {"items": CATEGORIES, "next_after": None})
    renamed = {"id": 3, "name": "Milk & cheese", "version": 2}
    server.on("PATCH", f"{API}/categories/3", 200, renamed)

    result = cli("--central", CENTRAL, "--json", "category", "rename", "Dairy", "Milk & cheese")

    assert result.exit_code == 0, result.output
    assert server.sent_json() == {"name": "Milk & cheese"}
    assert json.loads(result.stdout) == renamed
