"""`invctl sync status --all`: the fleet table from central."""

from __future__ import annotations

import json
import re

import httpx

from invctl.commands.sync import with_watch_value
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

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
            "state": "ok",
            "healthy": True,
            "reported": {"ready": True, "offline_queue": 0},
        },
        {
            "store_id": "south",
            "name": "South",
            "lag": 1234,
            "seconds_since_seen": None,
            "last_seen": None,
            "state": "never_seen",
            "healthy": False,
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


def test_resync_with_an_agent_that_empties_its_replica_first_waits_until_ready(
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
            "state": "not_ready",
            "healthy": False,
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
    assert re.split(r"\s{2,}", row.strip())[4:6] == ["not-ready", "2"]  # 2 spaces apart


def test_this_stores_staleness_and_clock_offset_are_shown(
    cli: CliHarness, server: FakeServer
) -> None:
    behind = {**READY, "staleness_s": -2.5, "clock_offset_s": 600.125}
    server.on("GET", f"{AGENT}/sync/status", 200, behind)
    result = cli("--agent", AGENT, "sync", "status", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "-2.5 s (negative: a clock is wrong)" in result.stdout
    assert "+600.125 s" in result.stdout


# --- states, --check and --watch ------------------------------------------------------------

FLEET_URL = f"{CENTRAL}/api/v1/sync/stores"
TOKEN = {"INVCTL_TOKEN": "t"}


def store(store_id: str, state: str, healthy: bool) -> dict[str, object]:
    return {
        "store_id": store_id,
        "name": store_id.title(),
        "lag": 0,
        "seconds_since_seen": 1.0,
        "last_seen": "2026-11-29T09:59:59+00:00",
        "state": state,
        "healthy": healthy,
        "problems": [],
        "instances": [],
        "reported": {},
    }


def fleet_of(*stores: dict[str, object]) -> dict[str, object]:
    return {"kafka": "ok", "items": list(stores)}


MIXED = fleet_of(
    store("east", "ok", True),
    store("north", "down", False),
    store("south", "auth_failed", False),
    store("west", "inactive", True),
)


def test_each_store_shows_its_state_hyphenated_for_people(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", FLEET_URL, 200, MIXED)

    result = cli("--central", CENTRAL, "sync", "status", "--all", env=TOKEN)

    states = {
        row.split()[0]: re.split(r"\s{2,}", row.strip())[4]
        for row in result.stdout.splitlines()
        if row.split() and row.split()[0] in {"east", "north", "south", "west"}
    }
    assert states == {"east": "ok", "north": "down", "south": "auth-failed", "west": "inactive"}


def test_check_exits_7_naming_the_unhealthy_stores_on_stderr(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", FLEET_URL, 200, MIXED)

    result = cli("--central", CENTRAL, "sync", "status", "--all", "--check", env=TOKEN)

    assert result.exit_code == 7, result.output
    assert "east" in result.stdout and "auth-failed" in result.stdout, "the view first"
    summary = result.stderr.strip().splitlines()
    assert summary == ["2 of 4 stores unhealthy: north (down), south (auth-failed)"]


def test_check_exits_0_when_every_store_is_ok_or_deactivated(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on(
        "GET", FLEET_URL, 200, fleet_of(store("east", "ok", True), store("w", "inactive", True))
    )

    result = cli("--central", CENTRAL, "sync", "status", "--all", "--check", env=TOKEN)

    assert (result.exit_code, result.stderr) == (0, "")


def test_check_with_json_keeps_stdout_one_json_object(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", FLEET_URL, 200, MIXED)

    result = cli("--central", CENTRAL, "--json", "sync", "status", "--all", "--check", env=TOKEN)

    assert result.exit_code == 7
    assert json.loads(result.stdout) == MIXED
    assert "north (down)" in result.stderr


def test_check_counts_a_store_central_gave_no_health_for_as_unhealthy(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", FLEET_URL, 200, fleet_of({"store_id": "old", "ready": True}))

    result = cli("--central", CENTRAL, "sync", "status", "--all", "--check", env=TOKEN)

    assert result.exit_code == 7
    assert "old (unknown)" in result.stderr


def test_check_without_all_or_with_watch_is_a_usage_error(
    cli: CliHarness, server: FakeServer
) -> None:
    alone = cli("sync", "status", "--check")
    watching = cli("--central", CENTRAL, "sync", "status", "--all", "--check", "--watch", env=TOKEN)

    assert (alone.exit_code, watching.exit_code) == (2, 2)
    assert "--check takes one look" in alone.stderr and "--check" in watching.stderr
    assert server.requests == []


def stop_on_the_third_fetch(server: FakeServer) -> None:
    answers = [fleet_of(store(f"s{n}", "ok", True)) for n in range(2)]

    def fleet(request: httpx.Request) -> httpx.Response:
        if answers:
            return httpx.Response(200, json=answers.pop(0))
        return httpx.Response(401, json=error_body("auth.invalid", "stop watching"))

    server.on_call("GET", FLEET_URL, fleet)


def test_watch_without_a_value_refreshes_and_json_stays_one_object_per_line(
    cli: CliHarness, server: FakeServer
) -> None:
    stop_on_the_third_fetch(server)

    result = cli("--central", CENTRAL, "--json", "sync", "status", "--all", "--watch", env=TOKEN)

    assert result.exit_code == 6, result.output  # the third fetch was refused: the watch ended
    lines = result.stdout.splitlines()
    assert [json.loads(line)["items"][0]["store_id"] for line in lines[:2]] == ["s0", "s1"]


def test_watch_takes_a_value_or_the_default_before_another_option() -> None:
    assert with_watch_value(["--all", "--watch"]) == ["--all", "--watch=2"]
    assert with_watch_value(["--watch", "--all"]) == ["--watch=2", "--all"]
    assert with_watch_value(["--watch", "5", "--all"]) == ["--watch", "5", "--all"]
    assert with_watch_value(["--watch", "0.5"]) == ["--watch", "0.5"]
    assert with_watch_value(["--watch=7"]) == ["--watch=7"]
    assert with_watch_value(["--", "--watch"]) == ["--", "--watch"]


def test_watch_with_a_value_below_half_a_second_is_refused(cli: CliHarness) -> None:
    result = cli("--central", CENTRAL, "sync", "status", "--all", "--watch", "0.1", env=TOKEN)

    assert result.exit_code == 2


REQUESTED = "2026-12-02T10:00:00.000000+00:00"


def _rebuilt(state: str, message: str = "") -> dict[str, object]:
    rebuild = {"state": state, "started_at": "2026-12-02T10:00:00.250000+00:00"}
    return {**READY, "rebuild": {**rebuild, "applied": 5, "message": message}}


def test_resync_waits_until_the_rebuild_that_answers_the_request_is_in_use(
    cli: CliHarness, server: FakeServer
) -> None:
    answer = {"status": "resync started", "meanwhile": "the live replica goes on serving"}
    server.on("POST", f"{AGENT}/sync/resync", 202, {**answer, "requested_at": REQUESTED})
    server.on("GET", f"{AGENT}/sync/status", 200, _rebuilt("adopted"))

    result = cli("--agent", AGENT, "sync", "resync")

    assert result.exit_code == 0, result.output
    assert "the live replica goes on serving" in result.stderr


def test_resync_says_so_when_the_rebuild_failed(cli: CliHarness, server: FakeServer) -> None:
    answer = {"status": "resync started", "meanwhile": "", "requested_at": REQUESTED}
    server.on("POST", f"{AGENT}/sync/resync", 202, answer)
    server.on("GET", f"{AGENT}/sync/status", 200, _rebuilt("failed", "TopicsMissing: gone"))

    result = cli("--agent", AGENT, "--json", "sync", "resync")

    assert result.exit_code == 1, result.output
    assert '"sync.rebuild_failed"' in result.stdout + result.stderr
    assert "TopicsMissing: gone" in result.stdout + result.stderr
