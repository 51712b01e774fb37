"""Allowance sales with real processes: an admin grants a store units of a SKU, the agent
fetches the grant, central stops, a sale within the grant is answered `allowance` (final),
one beyond it takes today's offline path, central comes back, the replay is accepted, and
central's stock and the grant's remaining agree with what was sold.

It needs central's side of the contract (lines naming `grant_id`, booked against the grant):
a central without it refuses the replayed allowance sale (422 `request.invalid`)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from harness.waiting import eventually
from tests.support.offline_chaos import offline_flags, restart_central
from tests.support.processes import ADMIN, ADMIN_PASSWORD, Stack, stack

MILK, BREAD = "MILK-1L", "BREAD"


def admin_headers(s: Stack) -> dict[str, str]:
    form = {"username": ADMIN, "password": ADMIN_PASSWORD}
    answer = httpx.post(f"{s.central_url}/api/v1/auth/token", data=form, timeout=10)
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def allowances_at(agent_url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{agent_url}/sync/status", timeout=5).json()["allowances"])


def confirmed_at(agent_url: str) -> list[dict[str, Any]]:
    sales = httpx.get(f"{agent_url}/orders", timeout=5).json()["items"]
    return [sale for sale in sales if sale["status"] == "confirmed"]


def sell(s: Stack, agent_url: str, sku: str, quantity: int) -> httpx.Response:
    body = {"lines": [{"sku": sku, "quantity": quantity}]}
    return httpx.post(f"{agent_url}/orders", json=body, headers=s.agent_headers(), timeout=15)


def seed(s: Stack) -> str:
    """A store, 8 MILK (5 of them to be held in the store's grant) and 10 BREAD; its key."""
    s.login_admin()
    store = s.invctl_json("store", "add", "store-1", "--name", "One")
    category = s.invctl_json("category", "add", "Food")
    for sku in (MILK, BREAD):
        s.invctl(
            "product", "add", sku, "--name", sku, "--price", "1.25",
            "--category", str(category["id"]),
        )  # fmt: skip
    s.invctl("stock", "set", MILK, "8")
    s.invctl("stock", "set", BREAD, "10")
    return str(store["api_key"])


def test_a_sale_within_a_grant_is_final_offline_and_its_replay_is_booked_against_it(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        central = s.start_central()
        key = seed(s)
        granted = httpx.post(
            f"{s.central_url}/api/v1/allowances",
            json={"store": "store-1", "sku": MILK, "units": 5, "ttl_s": 3600},
            headers=admin_headers(s),
            timeout=10,
        )
        assert granted.status_code == 201, granted.text
        grant_id = granted.json()["id"]
        agent = s.start_agent("store-1", key, extra_args=offline_flags(5, 20))
        eventually(lambda: allowances_at(agent.url)["units_held"] == 5, what="grant fetched")
        eventually(lambda: s.stock_at_agent(agent.url) == {MILK: 3, BREAD: 10}, what="synced")

        assert central.stop() == 0
        under = s.invctl("--agent", agent.url, "--json", "buy", f"{MILK}:4")
        beyond = sell(s, agent.url, MILK, 2)
        other = sell(s, agent.url, BREAD, 1)
        offline_state = allowances_at(agent.url)

        restart_central(s)
        eventually(lambda: allowances_at(agent.url)["units_waiting_replay"] == 0, what="replayed")
        # the allowance sale and the two queued ones replay on their own turns: wait for all
        eventually(lambda: len(confirmed_at(agent.url)) == 3, what="every sale confirmed")
        sales = httpx.get(f"{agent.url}/orders", timeout=5).json()["items"]
        headers = admin_headers(s)
        grant = httpx.get(
            f"{s.central_url}/api/v1/allowances",
            params={"store": "store-1"},
            headers=headers,
            timeout=10,
        ).json()["items"][0]
        milk = httpx.get(f"{s.central_url}/api/v1/stock/{MILK}", headers=headers, timeout=10)
        fetched = allowances_at
        eventually(
            lambda: (fetched(agent.url)["units_held"], fetched(agent.url)["units_left"]) == (1, 1),
            what="the grant fetched again after the replays",
        )
        agent.stop()

    assert json.loads(under.stdout)["status"] == "allowance"
    assert (beyond.status_code, beyond.json()["status"]) == (202, "queued"), "today's path"
    assert beyond.json()["reason"] == "allowance.short"
    assert (other.status_code, other.json()["status"]) == (202, "queued")
    assert other.json()["reason"] == "allowance.none"
    assert (offline_state["units_left"], offline_state["units_waiting_replay"]) == (1, 4)
    assert [sale["status"] for sale in sales] == ["confirmed"] * 3
    # 8 MILK, 6 sold: the allowance sale's 4 from the grant (1 left held), the queued 2 from
    # what any store may take (1 left)
    assert (grant["id"], grant["remaining"]) == (grant_id, 1)
    assert milk.json()["quantity"] == 1
