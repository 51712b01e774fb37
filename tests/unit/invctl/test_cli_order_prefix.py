"""`invctl orders show` takes an order id, or a unique prefix of it (what a table shows)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
FIRST = "5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13"
TWIN = "5f0c9a1e-9999-4e8a-9c21-0d6f4b2a7e13"
OTHER = "a1b2c3d4-3b7d-4e8a-9c21-0d6f4b2a7e13"
REF = "0d6f4b2a-7e13-4e8a-9c21-5f0c9a1e3b7d"


def sale(order_id: str | None, local_ref: str) -> dict[str, Any]:
    return {"local_ref": local_ref, "order_id": order_id, "status": "confirmed", "lines": []}


def order(order_id: str) -> dict[str, Any]:
    return {"id": order_id, "status": "confirmed", "lines": []}


@pytest.mark.parametrize("given", ["0d6f4b2a", "5f0c9a1e-9", "L-3", FIRST])
def test_the_agent_is_asked_for_the_id_or_prefix_as_given(
    cli: CliHarness, server: FakeServer, given: str
) -> None:
    """The store agent resolves a prefix among all its sales (GET /orders/{ref})."""
    server.on("GET", f"{AGENT}/orders/{given}", 200, sale(FIRST, REF))

    result = cli("--json", "orders", "show", given)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == sale(FIRST, REF)


def test_a_prefix_of_two_orders_exits_2_and_names_both(cli: CliHarness, server: FakeServer) -> None:
    body = {
        "error": {
            "code": "order.ambiguous",
            "message": "2 sales start with '5f0c9a1e'; give more of it",
            "details": {"ref": "5f0c9a1e", "matches": [REF, "L-2"]},
        }
    }
    server.on("GET", f"{AGENT}/orders/5f0c9a1e", 409, body)

    result = cli("orders", "show", "5f0c9a1e")

    assert result.exit_code == 2
    assert REF in result.stderr and "L-2" in result.stderr
    assert "[order.ambiguous]" in result.stderr


def test_a_prefix_of_nothing_exits_3(cli: CliHarness, server: FakeServer) -> None:
    body = {"error": {"code": "order.not_found", "message": "no sale", "details": {}}}
    server.on("GET", f"{AGENT}/orders/ffff", 404, body)

    result = cli("orders", "show", "ffff")

    assert result.exit_code == 3
    assert "--central" in result.stderr


def test_central_resolves_a_prefix_among_its_latest_orders(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{API}/orders", 200, {"items": [order(FIRST), order(OTHER)]})
    server.on("GET", f"{API}/orders/{OTHER}", 200, order(OTHER))

    result = cli(
        "--central", CENTRAL, "--json", "orders", "show", "a1b2", env={"INVCTL_TOKEN": "t"}
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == OTHER
    assert server.requests[0].url.params["limit"] == "200"


def test_central_is_asked_directly_for_a_whole_id(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/orders/{FIRST}", 200, order(FIRST))

    result = cli("--central", CENTRAL, "orders", "show", FIRST, env={"INVCTL_TOKEN": "t"})

    assert result.exit_code == 0, result.output
    assert [str(r.url) for r in server.requests] == [f"{API}/orders/{FIRST}"]


def test_an_unknown_prefix_at_central_exits_3(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/orders", 200, {"items": [order(FIRST)]})

    result = cli("--central", CENTRAL, "orders", "show", "ffff", env={"INVCTL_TOKEN": "t"})

    assert result.exit_code == 3
    assert "give the whole order id" in result.stderr
