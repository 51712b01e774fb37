"""`invctl config show --origin`, and the one rule for where reads go: central when it is
named more explicitly than the agent (flag > environment > config file > default)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer

pytestmark = pytest.mark.unit

STOCK = {"sku": "MILK-1L", "quantity": 40}
NO_AGENT_ENV = {"INVCTL_AGENT": None}  # the fixture names the agent in the environment


def origins(cli: CliHarness, *args: str, env: dict[str, str | None] | None = None) -> Any:
    result = cli(*args, "--json", "config", "show", "--origin", env=env)
    assert result.exit_code == 0, result.output
    return {row["setting"]: row for row in json.loads(result.stdout)}


def read_target(cli: CliHarness, server: FakeServer, *args: str, env: Any = None) -> str:
    server.on("GET", f"{AGENT}/stock/MILK-1L", 200, STOCK)
    server.on("GET", f"{CENTRAL}/api/v1/stock/MILK-1L", 200, STOCK)
    result = cli(*args, "stock", "show", "MILK-1L", env={"INVCTL_TOKEN": "t", **(env or {})})
    assert result.exit_code == 0, result.output
    return "central" if str(server.requests[-1].url).startswith(CENTRAL) else "agent"


def test_each_setting_says_where_it_came_from(cli: CliHarness) -> None:
    cli("config", "set", "central", CENTRAL)

    shown = origins(cli, "--timeout", "3", env={"INVCTL_UTC": "1"})

    assert (shown["agent"]["value"], shown["agent"]["origin"]) == (AGENT, "env")
    assert shown["agent"]["source"] == "INVCTL_AGENT"
    assert (shown["central"]["value"], shown["central"]["origin"]) == (CENTRAL, "config file")
    assert shown["central"]["source"].endswith("config.toml")
    assert (shown["timeout"]["value"], shown["timeout"]["origin"]) == (3.0, "flag")
    assert shown["timeout"]["source"] == "--timeout"
    assert (shown["utc"]["value"], shown["utc"]["origin"]) == (True, "env")
    assert (shown["agent_token_file"]["origin"], shown["agent_token_file"]["source"]) == (
        "default",
        None,
    )
    assert shown["config_file"]["source"] == "INVCTL_CONFIG_DIR"


def test_an_unset_central_says_so(cli: CliHarness) -> None:
    shown = origins(cli, env=NO_AGENT_ENV)

    assert (shown["central"]["value"], shown["central"]["origin"]) == (None, "unset")
    assert (shown["agent"]["origin"], shown["reads"]["value"]) == ("default", "agent")
    assert shown["reads"]["source"] == "no central is configured"


def test_json_output_is_reported_as_the_flag_that_chose_it(cli: CliHarness) -> None:
    assert origins(cli)["output"] == {
        "setting": "output",
        "value": "json",
        "origin": "flag",
        "source": "--json",
    }


def test_the_table_shows_each_setting_on_a_line(cli: CliHarness) -> None:
    result = cli("config", "show", "--origin", env={"COLUMNS": "80"})

    assert result.exit_code == 0, result.output
    agent_row = next(line for line in result.stdout.splitlines() if line.startswith("agent "))
    assert agent_row.split() == ["agent", AGENT, "env", "INVCTL_AGENT"]


@pytest.mark.parametrize(
    ("args", "env", "config", "reads"),
    [
        ((), {"INVCTL_CENTRAL": CENTRAL, **NO_AGENT_ENV}, {}, "central"),
        ((), NO_AGENT_ENV, {"central": CENTRAL}, "central"),
        ((), NO_AGENT_ENV, {"central": CENTRAL, "agent": AGENT}, "agent"),
        ((), {"INVCTL_CENTRAL": CENTRAL}, {}, "agent"),
        ((), {}, {"central": CENTRAL}, "agent"),
        (("--central", CENTRAL), {}, {}, "central"),
        (("--central", CENTRAL, "--agent", AGENT), {}, {}, "agent"),
        ((), {"INVCTL_CENTRAL": CENTRAL, **NO_AGENT_ENV}, {"agent": AGENT}, "central"),
    ],
    ids=[
        "env central alone",
        "config central alone",
        "both in config",
        "both in env",
        "env agent over config central",
        "flag central",
        "both flags",
        "env central over config agent",
    ],
)
def test_reads_follow_one_rule_for_flags_environment_and_config_file(
    cli: CliHarness,
    server: FakeServer,
    args: tuple[str, ...],
    env: dict[str, str | None],
    config: dict[str, str],
    reads: str,
) -> None:
    for key, value in config.items():
        cli("config", "set", key, value)

    assert read_target(cli, server, *args, env=env) == reads
    assert origins(cli, *args, env=env)["reads"]["value"] == reads


def test_the_reads_line_says_why(cli: CliHarness) -> None:
    cli("config", "set", "central", CENTRAL)

    why = origins(cli, env=NO_AGENT_ENV)["reads"]["source"]

    assert why == "central (config file) is named more explicitly than the agent (default)"


def test_plain_config_show_says_where_reads_go(cli: CliHarness) -> None:
    cli("config", "set", "central", CENTRAL)

    result = cli("--json", "config", "show", env=NO_AGENT_ENV)

    assert json.loads(result.stdout)["reads"] == "central"
