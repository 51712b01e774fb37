"""The fleet's states with real processes (central, agents, invctl, the shared secure Kafka):
an agent stopped with SIGTERM is shown `stale`, then `down`; a store whose key was revoked
while its agent runs is shown `auth-failed`; `invctl sync status --all --check` exits 0 while
every store is ok and 7 naming the others once they are not; central's fleet metrics agree."""

from __future__ import annotations

import re
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from central.services.fleet import DOWN_FLOOR_S
from harness.waiting import eventually
from tests.support.processes import Stack, stack
from tests.support.shop import seed_shop

EVERY_S = 0.5  # live for 2 s; down after the 30 s floor
HEARTBEATS = ["--heartbeat-seconds", str(EVERY_S)]
UNHEALTHY_EXIT = 7


def states(s: Stack) -> dict[str, str]:
    fleet = s.invctl_json("sync", "status", "--all")
    return {item["store_id"]: item["state"] for item in fleet["items"]}


def add_store(s: Stack, admin: dict[str, str], store_id: str) -> dict[str, Any]:
    """The store, its key and the key's id (to revoke it by)."""
    answer = httpx.post(
        f"{s.central_url}/api/v1/stores",
        json={"id": store_id, "name": store_id.title()},
        headers=admin,
        timeout=15,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def state_gauge(s: Stack) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{s.central_url}/metrics", timeout=5).text
    return {
        (sample.labels["store"], sample.labels["state"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "invctl_store_state"
        for sample in family.samples
    }


def test_a_stopped_agent_goes_stale_then_down_and_a_revoked_key_shows_auth_failed(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        shop = seed_shop(s.central_url, {"MILK-1L": 10}, ["north"])
        south = add_store(s, shop.admin, "south")
        north_agent = s.start_agent("north", shop.keys["north"], extra_args=HEARTBEATS)
        s.start_agent("south", south["api_key"], extra_args=HEARTBEATS)
        eventually(lambda: states(s) == {"north": "ok", "south": "ok"}, 60, "both stores ok")
        all_ok = s.invctl("sync", "status", "--all", "--check", check=False)

        north_agent.stop()  # SIGTERM
        s.invctl("store", "revoke-key", "south", str(south["key_id"]))
        seen: list[str] = []

        def north_is(state: str) -> bool:
            seen.append(states(s)["north"])
            return seen[-1] == state

        eventually(lambda: north_is("stale"), 30, "north stale after SIGTERM")
        eventually(lambda: north_is("down"), DOWN_FLOOR_S + 30, "north down")
        eventually(lambda: states(s)["south"] == "auth_failed", 30, "south auth_failed")
        unhealthy = s.invctl("sync", "status", "--all", "--check", check=False)
        s.env["COLUMNS"] = "200"
        table = s.invctl("-o", "table", "sync", "status", "--all").stdout
        gauge = state_gauge(s)

    assert (all_ok.returncode, all_ok.stderr) == (0, ""), all_ok.stderr
    assert "stale" in seen and seen.index("stale") < seen.index("down"), seen
    assert "ok" not in seen[seen.index("stale") :], "once stale, never ok again"
    assert unhealthy.returncode == UNHEALTHY_EXIT, unhealthy.stderr
    assert unhealthy.stderr.strip() == "2 of 2 stores unhealthy: north (down), south (auth-failed)"
    shown = {
        row.split()[0]: re.split(r"\s{2,}", row.strip())[4]
        for row in table.splitlines()
        if row.split() and row.split()[0] in ("north", "south")
    }
    assert shown == {"north": "down", "south": "auth-failed"}, table
    assert gauge[("north", "down")] == 1.0 and gauge[("south", "auth_failed")] == 1.0
    assert gauge[("north", "ok")] == 0.0 and gauge[("south", "ok")] == 0.0
