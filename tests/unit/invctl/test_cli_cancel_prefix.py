"""`invctl orders cancel` takes an order id or a unique prefix of it, as `orders show` does:
central's latest orders resolve it before anything is cancelled; the store agent resolves it
among all its sales. Ambiguous: exit 2 naming the candidates; none: exit 3."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
FIRST = "5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13"
TWIN = "5f0c9a1e-9999-4e8a-9c21-0d6f4b2a7e13"
OTHER = "a1b2c3d4-3b7d-4e8a-9c21-0d6f4b2a7e13"
REF = "0d6f4b2a-7e13-4e8a-9c21-5f0c9a1e3b7d"


def order(order_id: str, status: str = "confirmed") -> dict[str, Any]:
    return {"id": order_id, "status": status, "lines": []}


def at_central(cli: CliHarness, *args: str):
    return cli("--central", CENTRAL, *args, env={"INVCTL_TOKEN": "t"})


def latest(server: FakeServer, *ids: str) -> None:
    server.on("GET", f"{API}/orders", 200, {"items": [order(i) for i in ids]})


def posts(server: FakeServer) -> list[str]:
    return [str(r.url) for r in server.requests if r.method == "POST"]


def test_central_cancels_the_one_order_a_prefix_names(cli: CliHarness, server: FakeServer):
    latest(server, FIRST, OTHER)
    server.on("POST", f"{API}/orders/{OTHER}/cancel", 200, order(OTHER, "cancelled"))

    result = at_central(cli, "--json", "orders", "cancel", OTHER[:8])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == OTHER
    assert posts(server) == [f"{API}/orders/{OTHER}/cancel"]


def test_an_ambiguous_prefix_at_central_exits_2_naming_both_and_cancels_nothing(
    cli: CliHarness, server: FakeServer
):
    latest(server, FIRST, TWIN, OTHER)

    result = at_central(cli, "orders", "cancel", "5f0c9a1e")

    assert result.exit_code == 2
    assert FIRST in result.stderr and TWIN in result.stderr
    assert "[usage.ambiguous_id]" in result.stderr
    assert posts(server) == []


def test_a_prefix_of_nothing_at_central_exits_3_and_cancels_nothing(
    cli: CliHarness, server: FakeServer
):
    latest(server, FIRST)

    result = at_central(cli, "orders", "cancel", "ffffffff")

    assert result.exit_code == 3
    assert "give the whole order id" in result.stderr
    assert posts(server) == []


def test_the_agent_is_asked_to_cancel_the_prefix_as_given(cli: CliHarness, server: FakeServer):
    cancelled = {**order(FIRST, "cancelled"), "local_ref": REF}
    server.on("POST", f"{AGENT}/orders/{REF[:8]}/cancel", 200, cancelled)

    result = cli("--json", "orders", "cancel", REF[:8])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == cancelled


def test_an_ambiguous_prefix_at_the_agent_exits_2_naming_the_candidates(
    cli: CliHarness, server: FakeServer
):
    body = error_body(
        "order.ambiguous", "2 sales start with '5f0c'; give more of it", matches=[REF, "L-2"]
    )
    server.on("POST", f"{AGENT}/orders/5f0c/cancel", 409, body)

    result = cli("orders", "cancel", "5f0c")

    assert result.exit_code == 2
    assert REF in result.stderr and "L-2" in result.stderr


def test_a_prefix_of_nothing_at_the_agent_exits_3(cli: CliHarness, server: FakeServer):
    server.on("POST", f"{AGENT}/orders/ffff/cancel", 404, error_body("order.not_found", "none"))

    result = cli("orders", "cancel", "ffff")

    assert result.exit_code == 3
    assert "--central" in result.stderr
