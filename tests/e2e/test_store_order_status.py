"""Orders at the store, with real processes (central, agents, invctl, the shared Kafka):
a sale cancelled at central shows `cancelled` at its store within seconds (and at no other
store's replica), the store cancels through its agent, the status filters agree with what
the lists show, and `buy` / `orders` exit as docs/wire.md documents."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import httpx

from harness.waiting import eventually
from tests.support.processes import Service, Stack, stack


def seed(s: Stack, *stores: str) -> dict[str, Any]:
    """Central with its admin logged in, MILK-1L at 40, and the stores; their `store add`."""
    s.start_central()
    s.login_admin()
    added = {store: s.invctl_json("store", "add", store, "--name", store) for store in stores}
    category = s.invctl_json("category", "add", "Dairy")
    s.invctl(
        "product", "add", "MILK-1L", "--name", "Milk 1 L", "--price", "1.25",
        "--category", str(category["id"]),
    )  # fmt: skip
    s.invctl("stock", "set", "MILK-1L", "40")
    return added


def at_agent(s: Stack, agent: Service, *args: str, check: bool = True) -> Any:
    result = s.invctl("--agent", agent.url, "--json", *args, check=check)
    return json.loads(result.stdout) if check else result


def replicated(s: Stack, agent: Service, quantity: int = 40) -> None:
    def shown() -> bool:
        stock = at_agent(s, agent, "stock", "show", "MILK-1L", check=False)
        return stock.returncode == 0 and json.loads(stock.stdout)["quantity"] == quantity

    eventually(shown, timeout=60, what=f"MILK-1L at {quantity} in the replica")


def statuses(s: Stack, agent: Service, *filters: str) -> dict[str, str]:
    """order id (or local reference) -> status, as `invctl orders list` shows them."""
    items = at_agent(s, agent, "orders", "list", *filters)
    return {item["order_id"] or item["local_ref"]: item["status"] for item in items}


def order_topic_caught_up(agent: Service) -> bool:
    """The agent has read every record of order-updated there is (its lag there is 0)."""
    status = httpx.get(f"{agent.url}/sync/status", timeout=5).json()
    parts = [p for p in status["partitions"] if p["topic"].endswith("order-updated")]
    return sum(p["end_offset"] or 0 for p in parts) >= 2 and all(p["lag"] == 0 for p in parts)


def test_a_cancellation_reaches_its_store_only_and_the_store_cancels_through_its_agent(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        stores = seed(s, "store-1", "store-2")
        agent = s.start_agent("store-1", stores["store-1"]["api_key"])
        neighbour = s.start_agent("store-2", stores["store-2"]["api_key"])
        replicated(s, agent)
        first = at_agent(s, agent, "buy", "MILK-1L:2")
        second = at_agent(s, agent, "buy", "MILK-1L:3")

        s.invctl("--central", s.central_url, "orders", "cancel", first["id"])
        eventually(
            lambda: statuses(s, agent)[first["id"]] == "cancelled",
            timeout=15,
            what="the cancellation at central shown at the store",
        )
        only_cancelled = statuses(s, agent, "--status", "cancelled")
        only_confirmed = statuses(s, agent, "--status", "confirmed")
        shown = at_agent(s, agent, "orders", "show", first["local_ref"])

        cancelled = at_agent(s, agent, "orders", "cancel", second["local_ref"][:8])
        right_after = statuses(s, agent, "--status", "cancelled")
        at_central = s.invctl_json("--central", s.central_url, "orders", "show", second["id"])
        replicated(s, agent, 40)
        eventually(lambda: order_topic_caught_up(neighbour), timeout=30, what="store-2 caught up")
        with sqlite3.connect(tmp_path / "replica-store-2.db") as db:
            kept_by_neighbour = db.execute("SELECT COUNT(*) FROM order_status").fetchone()[0]
        today = statuses(s, agent, "--since", "today")

    assert only_cancelled == {first["id"]: "cancelled"}
    assert only_confirmed == {second["id"]: "confirmed"}
    assert (shown["status"], shown["order_id"]) == ("cancelled", first["id"])
    assert shown["cancelled_at"] is not None
    assert (cancelled["id"], cancelled["status"]) == (second["id"], "cancelled")
    assert cancelled["local_ref"] == second["local_ref"]
    assert right_after == {first["id"]: "cancelled", second["id"]: "cancelled"}
    assert at_central["status"] == "cancelled"
    assert kept_by_neighbour == 0, "a store keeps only its own orders' statuses"
    assert set(today) == {first["id"], second["id"]}


def test_buy_and_orders_exit_as_documented(tmp_path, kafka_cluster, topic_prefix):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        store = seed(s, "store-1")["store-1"]
        agent = s.start_agent("store-1", store["api_key"])
        replicated(s, agent)
        sold = at_agent(s, agent, "buy", "MILK-1L")
        unknown = s.invctl("--agent", agent.url, "buy", "NOPE-1", check=False)

        s.invctl("store", "revoke-key", "store-1", str(store["key_id"]))
        revoked = s.invctl("--agent", agent.url, "buy", "MILK-1L", check=False)
        revoked_cancel = s.invctl(
            "--agent", agent.url, "orders", "cancel", sold["local_ref"], check=False
        )

        central = next(service for service in s.services if service.name == "central")
        central.stop()
        down = s.invctl("--agent", agent.url, "buy", "MILK-1L", check=False)
        failed = statuses(s, agent, "--status", "failed")
        everything = statuses(s, agent)

    assert unknown.returncode == 3, unknown.stderr
    assert "[order.sku_unknown]" in unknown.stderr
    assert revoked.returncode == 6, revoked.stderr
    assert "[central.auth_failed]" in revoked.stderr
    assert "API key (store store-1)" in revoked.stderr
    assert "invctl store rotate-key store-1" in revoked.stderr
    assert revoked_cancel.returncode == 6, revoked_cancel.stderr
    assert down.returncode == 5, down.stderr
    assert "central is unreachable from the store agent" in down.stderr
    assert "offline selling is off" in down.stderr
    assert "not ready" not in down.stderr
    assert len(failed) == 2 and set(failed.values()) == {"failed"}
    assert {status for status in everything.values()} == {"confirmed", "failed"}
    assert set(failed) <= set(everything)
