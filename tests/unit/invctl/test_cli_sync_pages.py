"""`invctl sync status --all` at a thousand stores: a count per state, then the 50 worst
stores; --limit and --page choose others; --json and pipes still get every store."""

from __future__ import annotations

import json
import re

from tests.support.invctl_fakes import CliHarness, FakeServer

CENTRAL = "https://central.test:8000"
FLEET_URL = f"{CENTRAL}/api/v1/sync/stores"
ENV = {"INVCTL_TOKEN": "t", "COLUMNS": "200"}


def store(n: int) -> dict[str, object]:
    down = n % 100 == 7  # ten stores down
    return {
        "store_id": f"s{n:04d}",
        "name": f"Store {n}",
        "lag": n,
        "seconds_since_seen": 90.0 if down else 2.0,
        "last_seen": "2026-11-29T09:59:58+00:00",
        "state": "down" if down else "ok",
        "healthy": not down,
        "problems": [],
        "instances": [],
        "reported": {},
    }


THOUSAND = {
    "kafka": "ok",
    "lag_as_of": "2026-11-29T09:59:59+00:00",
    "items": [store(n) for n in range(1000)],
}


def listed(stdout: str) -> list[str]:
    return [m.group(1) for line in stdout.splitlines() if (m := re.match(r"\s*(s\d{4})\s", line))]


def test_the_table_counts_every_state_and_lists_the_50_worst(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", FLEET_URL, 200, THOUSAND)

    result = cli("--central", CENTRAL, "sync", "status", "--all", env=ENV)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("1000 stores: 10 down, 990 ok; lags read ")
    shown = listed(result.stdout)
    assert shown[:10] == [f"s{n:04d}" for n in range(907, -1, -100)], "the down stores first"
    assert shown[10:12] == ["s0999", "s0998"] and len(shown) == 50, "then the most lag"
    assert "stores 1-50 of 1000, worst first; --page 2 for the next 50" in result.stdout


def test_limit_and_page_choose_which_worst_stores(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", FLEET_URL, 200, THOUSAND)

    result = cli(
        "--central", CENTRAL, "sync", "status", "--all", "-n", "20", "--page", "2", env=ENV
    )

    assert result.exit_code == 0, result.output
    # page 1: the ten down stores, then s0999-s0990
    assert listed(result.stdout) == [f"s{n:04d}" for n in range(989, 969, -1)]


def test_limit_0_lists_every_store(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", FLEET_URL, 200, THOUSAND)

    result = cli("--central", CENTRAL, "sync", "status", "--all", "--limit", "0", env=ENV)

    assert len(listed(result.stdout)) == 1000
    assert "worst first;" not in result.stdout


def test_json_gets_every_store_as_central_gave_them_whatever_the_limit(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", FLEET_URL, 200, THOUSAND)

    result = cli("--central", CENTRAL, "--json", "sync", "status", "--all", "-n", "5", env=ENV)

    assert json.loads(result.stdout) == THOUSAND


def test_check_still_exits_7_naming_every_unhealthy_store(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", FLEET_URL, 200, THOUSAND)

    result = cli("--central", CENTRAL, "sync", "status", "--all", "--check", "-n", "3", env=ENV)

    assert result.exit_code == 7
    assert result.stderr.startswith("10 of 1000 stores unhealthy: s0007 (down), s0107 (down)")


def test_limit_or_page_without_all_is_a_usage_error(cli: CliHarness, server: FakeServer) -> None:
    result = cli("sync", "status", "--page", "2")

    assert result.exit_code == 2
    assert "use them with --all" in result.stderr
    assert server.requests == []
