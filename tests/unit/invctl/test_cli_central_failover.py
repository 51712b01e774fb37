"""invctl with several central URLs (--central, INVCTL_CENTRAL, `central` in the config file):
a request that cannot connect to one goes to the next, said once on stderr; each URL is
checked (exit 2 with a stable code); `sync status` names the central an agent uses now."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer

pytestmark = pytest.mark.unit

DEAD = "https://dead.test:8000"
TOKEN = {"INVCTL_TOKEN": "t0ken"}
CATEGORIES = [{"id": 1, "name": "Dairy", "products": 3}]


def test_a_command_reaches_the_second_central_when_the_first_refuses(
    cli: CliHarness, server: FakeServer
) -> None:
    server.refuse(DEAD)
    server.on("GET", f"{CENTRAL}/api/v1/categories", 200, {"items": CATEGORIES})

    result = cli("--central", f"{DEAD},{CENTRAL}", "--json", "category", "list", env=TOKEN)

    assert result.exit_code == 0, result.output
    assert [c["name"] for c in json.loads(result.stdout)] == ["Dairy"]
    assert [str(r.url.copy_with(query=None)) for r in server.requests] == [
        f"{CENTRAL}/api/v1/categories"
    ]
    assert server.requests[0].headers["Authorization"] == "Bearer t0ken"
    assert f"{DEAD} could not be reached; using {CENTRAL}" in result.stderr


def test_the_list_comes_from_the_environment_and_the_config_file_too(
    cli: CliHarness, server: FakeServer
) -> None:
    server.refuse(DEAD)
    server.on("GET", f"{CENTRAL}/api/v1/categories", 200, {"items": []})

    env = {**TOKEN, "INVCTL_AGENT": None}  # central alone: reads go there
    from_env = cli("category", "list", env={**env, "INVCTL_CENTRAL": f"{DEAD}, {CENTRAL}/"})
    saved = cli("config", "set", "central", f"{DEAD}/api/v1 , {CENTRAL}")
    from_file = cli("--json", "category", "list", env=env)

    assert (from_env.exit_code, from_file.exit_code) == (0, 0), from_env.output + from_file.output
    assert f"Saved central = {DEAD},{CENTRAL} in" in saved.stdout
    assert len(server.requests) == 2


def test_config_show_shows_the_whole_list(cli: CliHarness) -> None:
    result = cli("--central", f"{CENTRAL},{DEAD}", "--json", "config", "show")

    assert json.loads(result.stdout)["central"] == f"{CENTRAL},{DEAD}"


def test_every_central_refusing_exits_5_naming_them_all(
    cli: CliHarness, server: FakeServer
) -> None:
    other = "https://other.test:8000"
    server.refuse(DEAD)
    server.refuse(other)

    result = cli("--central", f"{DEAD},{other}", "category", "list", env=TOKEN)

    assert result.exit_code == 5
    assert f"cannot reach the central at {DEAD} or {other}: connection refused" in result.stderr
    assert server.requests == []


def test_a_read_timeout_is_not_sent_to_the_next_central(
    cli: CliHarness, server: FakeServer
) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    server.on_call("POST", f"{CENTRAL}/api/v1/categories", slow)
    other = "https://other.test:8000"
    server.on("POST", f"{other}/api/v1/categories", 201, {"id": 2, "name": "Bakery"})

    result = cli("--central", f"{CENTRAL},{other}", "category", "add", "Bakery", env=TOKEN)

    assert result.exit_code == 5
    assert [r.url.host for r in server.requests] == ["central.test"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (f"{CENTRAL},,{DEAD}", "the central URL list has an empty element"),
        (f"{CENTRAL},", "the central URL list has an empty element"),
        (f"{CENTRAL},ftp://dead.test", "not an http(s) URL: 'ftp://dead.test'"),
        (f"{CENTRAL},{DEAD}/?x=1", f"the central URL '{DEAD}/?x=1' has a query or fragment"),
        (f"{CENTRAL},{DEAD}#here", "has a query or fragment"),
        (f"{CENTRAL},{CENTRAL}/api/v1", "names a URL twice"),
    ],
)
def test_a_bad_element_exits_2_with_its_code_and_sends_nothing(
    cli: CliHarness, server: FakeServer, value: str, says: str
) -> None:
    result = cli("--central", value, "--json", "category", "list", env=TOKEN)

    error = json.loads(result.stdout)["error"]
    assert (result.exit_code, error["code"]) == (2, "config.url")
    assert says in error["message"]
    assert server.requests == []


def test_credentials_in_a_url_are_refused_and_never_echoed(
    cli: CliHarness, server: FakeServer
) -> None:
    result = cli("--central", f"{CENTRAL},https://ops:hunter2@dead.test", "category", "list")

    assert result.exit_code == 2
    assert "[config.url]" in result.stderr
    assert "hunter2" not in result.output
    assert server.requests == []


def test_config_set_refuses_a_bad_list_and_saves_nothing(cli: CliHarness) -> None:
    result = cli("config", "set", "central", f"{CENTRAL},,{DEAD}")
    shown = cli("--json", "config", "show", env={"INVCTL_CENTRAL": None})

    assert result.exit_code == 2
    assert json.loads(shown.stdout)["central"] is None


def test_plain_http_to_another_machine_is_refused_for_any_url_of_the_list(
    cli: CliHarness, server: FakeServer
) -> None:
    result = cli("--central", f"{CENTRAL},http://dead.test:8000", "category", "list", env=TOKEN)

    assert result.exit_code == 2
    assert "refusing plain HTTP to the central at http://dead.test:8000" in result.stderr
    assert server.requests == []


def test_insecure_warns_once_for_each_plain_url(cli: CliHarness, server: FakeServer) -> None:
    plain_a, plain_b = "http://a.test:8000", "http://b.test:8000"
    server.on("GET", f"{plain_a}/api/v1/categories", 200, {"items": []})

    result = cli("--insecure", "--central", f"{plain_a},{plain_b}", "category", "list", env=TOKEN)

    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert [plain_a in warned[0], plain_b in warned[1], len(warned)] == [True, True, 2]


def test_a_saved_login_belongs_to_the_list_it_was_made_with(
    cli: CliHarness, server: FakeServer
) -> None:
    both = f"{DEAD},{CENTRAL}"
    server.refuse(DEAD)
    server.on("POST", f"{CENTRAL}/api/v1/auth/token", 200, {"access_token": "jwt-1"})
    server.on("GET", f"{CENTRAL}/api/v1/categories", 200, {"items": []})

    login = cli("--central", both, "login", "-u", "alice", "--password-stdin", input="pw\n")
    with_list = cli("--central", both, "category", "list")
    with_one = cli("--central", CENTRAL, "category", "list")

    assert (login.exit_code, with_list.exit_code) == (0, 0), login.output
    assert f"Logged in to {both} as alice" in login.stdout
    assert server.requests[1].headers["Authorization"] == "Bearer jwt-1"
    assert with_one.exit_code == 0
    assert "Authorization" not in server.requests[2].headers  # no token for another setting


SYNC = {
    "store_id": "store-042",
    "ready": True,
    "events_applied": 1,
    "dead_letters": 0,
    "partitions": [],
}


def test_sync_status_names_the_central_the_agent_uses_of_several(
    cli: CliHarness, server: FakeServer
) -> None:
    report = {**SYNC, "central_url": CENTRAL, "central_urls": [DEAD, CENTRAL]}
    server.on("GET", f"{AGENT}/sync/status", 200, report)

    result = cli("sync", "status")

    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if line.startswith("central")]
    assert row.split(maxsplit=1)[1] == f"{CENTRAL} (of {DEAD}, {CENTRAL})"


def test_sync_status_has_no_central_row_for_an_agent_with_one(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{AGENT}/sync/status", 200, SYNC)

    result = cli("sync", "status")

    assert not [line for line in result.stdout.splitlines() if line.startswith("central")]
