"""One agent per store, and clocks, with real processes (central, agents, invctl, the shared
secure Kafka): two agents started with one store's id and key are flagged `duplicate_agents`
in `invctl sync status --all` by the first one's next heartbeat; agents whose wall clocks are
10 minutes ahead and behind (libfaketime) report their replica's staleness within 1 s of the
truth, measured on central's clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness.waiting import eventually
from tests.support.processes import Service, Stack, stack
from tests.support.shop import seed_shop
from tests.support.wrong_clock import agent_under_faketime

EVERY_S = 0.5
HEARTBEATS = ["--heartbeat-seconds", str(EVERY_S)]
SKU = "MILK-1L"
TEN_MINUTES = 600.0


def fleet_row(s: Stack, store: str) -> dict[str, Any]:
    fleet = s.invctl_json("sync", "status", "--all")
    return next(item for item in fleet["items"] if item["store_id"] == store)


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_second_agent_for_one_store_is_flagged_by_the_first_ones_next_heartbeat(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        key = seed_shop(s.central_url, {SKU: 10}, ["store-1"]).keys["store-1"]
        s.start_agent("store-1", key, extra_args=HEARTBEATS, name="first")
        alone = eventually(lambda: fleet_row(s, "store-1")["instances"], what="first heartbeat")
        first_id = alone[0]["instance_id"]

        s.start_agent("store-1", key, extra_args=HEARTBEATS, name="second", wait_ready=False)
        views: list[dict[str, Any]] = []

        def flagged() -> dict[str, Any] | None:
            views.append(fleet_row(s, "store-1"))
            return views[-1] if views[-1]["problems"] else None

        row = eventually(flagged, what="duplicate_agents in invctl sync status --all")
        s.env["COLUMNS"] = "400"
        table = s.invctl("sync", "status", "--all").stdout
        metrics = httpx.get(f"{s.central_url}/metrics", timeout=5).text

    second_id = next(i["instance_id"] for i in row["instances"] if i["instance_id"] != first_id)
    assert [(p["code"], sorted(p["instance_ids"])) for p in row["problems"]] == [
        ("duplicate_agents", sorted([first_id, second_id]))
    ]
    assert row["ready"] is False
    assert all(instance["live"] for instance in row["instances"])
    for view in views[:-1]:  # not flagged: the first agent had not heartbeated since
        seen = {i["instance_id"]: i for i in view["instances"]}
        if second_id in seen:
            assert moment(seen[first_id]["last_seen"]) < moment(seen[second_id]["first_seen"])
    assert f"duplicate_agents: {first_id}, {second_id}" in table or (
        f"duplicate_agents: {second_id}, {first_id}" in table
    ), table
    assert duplicate_gauge(metrics) == {"store-1": 1.0}


def duplicate_gauge(text: str) -> dict[str, float]:
    return {
        sample.labels["store"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "invctl_store_duplicate_agents"
        for sample in family.samples
    }


def test_agents_with_their_clocks_ten_minutes_off_report_the_true_staleness(
    tmp_path, kafka_cluster, topic_prefix
):
    offsets = {"ahead": "+10m", "behind": "-10m"}
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        keys = seed_shop(s.central_url, {SKU: 10}, list(offsets)).keys
        agents = {
            store: s.start_agent(
                store, keys[store], extra_args=HEARTBEATS, command=agent_under_faketime(offset)
            )
            for store, offset in offsets.items()
        }
        s.invctl("stock", "set", SKU, "7")  # an event some time after the first
        for store, agent in agents.items():
            eventually(lambda a=agent: calibrated(a), what=f"{store}: offset known, event in")
        measured = {store: measure(agent) for store, agent in agents.items()}
        fleet = {store: fleet_row(s, store) for store in agents}

    for store, sign in (("ahead", -1), ("behind", +1)):
        status, truth, scraped = measured[store]
        wall_clock_off = moment(status["last_applied_at"]) - moment(status["last_event_at"])
        assert abs(wall_clock_off.total_seconds() + sign * TEN_MINUTES) < 30, (
            "the agent's own clock is 10 minutes off"
        )
        assert abs(status["clock_offset_s"] - sign * TEN_MINUTES) < 1.0
        assert truth[0] - 1.0 <= status["staleness_s"] <= truth[1] + 1.0, (status, truth)
        assert truth[0] - 1.0 <= scraped <= truth[1] + 1.0, (scraped, truth)
        reported, row = fleet[store]["reported"], fleet[store]
        at_heartbeat = (
            moment(row["last_seen"]) - moment(reported["last_event_at"])
        ).total_seconds()
        assert abs(reported["staleness_s"] - at_heartbeat) < 1.0, (reported, row["last_seen"])
        assert abs(reported["clock_offset_s"] - sign * TEN_MINUTES) < 1.0


def calibrated(agent: Service) -> bool:
    """Central answered a heartbeat, and the last stock change is in the replica."""
    status = httpx.get(f"{agent.url}/sync/status", timeout=5).json()
    assert status["clock_offset_s"] is not None, "no heartbeat answer yet"
    return httpx.get(f"{agent.url}/stock/{SKU}", timeout=5).json().get("quantity") == 7


def measure(agent: Service) -> tuple[dict[str, Any], tuple[float, float], float]:
    """/sync/status and the staleness gauge, and the true staleness (this machine's clock is
    central's: the same machine, not faked) at the start and at the end of the reads."""
    before = datetime.now(UTC)
    status = httpx.get(f"{agent.url}/sync/status", timeout=5).json()
    scraped = staleness_gauge(httpx.get(f"{agent.url}/metrics", timeout=5).text)
    after = datetime.now(UTC)
    event = moment(status["last_event_at"])
    truth = ((before - event).total_seconds(), (after - event).total_seconds())
    return status, truth, scraped


def staleness_gauge(text: str) -> float:
    return next(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "storeagent_replica_staleness_seconds"
        for sample in family.samples
    )
