"""`invctl sync status --all`: the fleet table from central."""

from __future__ import annotations

import json

from tests.support.invctl_fakes import CliHarness, FakeServer

CENTRAL = "http://central.test:8000"
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


AGENT = "http://agent.test:8787"
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
