"""`invctl sync status --all`: the fleet table from central."""

from __future__ import annotations

import json
import re

from tests.support.invctl_fakes import CliHarness, FakeServer

CENTRAL = "https://central.test:8000"
FLEET = {
    "kafka": "ok",
    "items": [
        {
            "store_id": "north",
            "name": "North",
            "lag": 0,
            "seconds_since_seen": 3.2,
            "last_seen": "2026-11-29T09:00:00+00:00",
            "reported": {"ready": True, "offline_queue": 0},
        },
        {
            "store_id": "south",
            "name": "South",
            "lag": 1234,
            "seconds_since_seen": None,
            "last_seen": None,
            "reported": {},
        },
    ],
}


def test_all_stores_come_from_central(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{CENTRAL}/api/v1/sync/stores", 200, FLEET)
    result = cli("--central", CENTRAL, "sync", "status", "--all", env={"INVCTL_TOKEN": "t"})
    assert result.exit_code == 0, result.output
    assert "north" in result.stdout and "1234" in result.stdout and "never" in result.stdout


def test_all_stores_as_json(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{CENTRAL}/api/v1/sync/stores", 200, FLEET)
    result = cli(
        "--central", CENTRAL, "--json", "sync", "status", "--all", env={"INVCTL_TOKEN": "t"}
    )
    assert json.loads(result.stdout) == FLEET


AGENT = "https://agent.test:8787"
READY = {
    "ready": True,
    "store_id": "s1",
    "partitions": [
        {"topic": "inventory-updated", "partition": 0, "offset": 5, "end_offset": 5, "lag": 0}
    ],
}


def test_resync_says_what_is_unavailable_and_waits_until_ready(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on(
        "POST",
        f"{AGENT}/sync/resync",
        202,
        {"status": "resync started", "unavailable_meanwhile": "stock reads answer 503"},
    )
    server.on("GET", f"{AGENT}/sync/status", 200, READY)
    result = cli("--agent", AGENT, "sync", "resync")
    assert result.exit_code == 0, result.output
    assert "stock reads answer 503" in result.stderr
    assert "s1" in result.stdout


TWO_AGENTS = {
    "kafka": "ok",
    "items": [
        {
            "store_id": "north",
            "name": "North",
            "lag": 0,
            "seconds_since_seen": 0.4,
            "last_seen": "2026-11-29T09:00:00+00:00",
            "ready": False,
            "problems": [
                {
                    "code": "duplicate_agents",
                    "message": "2 agent processes run for this store at once",
                    "instance_ids": ["a1b2c3", "d4e5f6"],
                }
            ],
            "instances": [
                {"instance_id": "a1b2c3", "live": True, "ready": True},
                {"instance_id": "d4e5f6", "live": True, "ready": True},
            ],
            "reported": {"ready": True, "offline_queue": 0},
        }
    ],
}


def test_two_agents_for_one_store_show_as_a_problem_and_not_ready(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{CENTRAL}/api/v1/sync/stores", 200, TWO_AGENTS)
    result = cli(
        "--central", CENTRAL, "sync", "status", "--all", env={"INVCTL_TOKEN": "t", "COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    assert "duplicate_agents: a1b2c3, d4e5f6" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "north" in line)
    assert re.split(r"\s{2,}", row.strip())[4:6] == ["no", "2"]  # columns: 2 spaces apart


def test_this_stores_staleness_and_clock_offset_are_shown(
    cli: CliHarness, server: FakeServer
) -> None:
    behind = {**READY, "staleness_s": -2.5, "clock_offset_s": 600.125}
    server.on("GET", f"{AGENT}/sync/status", 200, behind)
    result = cli("--agent", AGENT, "sync", "status", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "-2.5 s (negative: a clock is wrong)" in result.stdout
    assert "+600.125 s" in result.stdout
