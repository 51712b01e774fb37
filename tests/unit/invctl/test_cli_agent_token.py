"""invctl sends the store agent's terminal token with what may change something (a sale, a
resync), never with reads and never to central; it finds the token where the agent makes it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from invctl.config import default_agent_token_file
from storeagent.settings import default_db_path
from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

TOKEN = "agent-terminal-token-0123456789abcdefghijkl"
ORDER = {"id": "o-1", "total": "1.25", "lines": [], "local_ref": "L-1", "status": "confirmed"}
READY = {"ready": True, "store_id": "s1", "partitions": []}


def write_token(path: Path, token: str = TOKEN, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    os.chmod(path, mode)
    return path


@pytest.fixture
def default_token(tmp_path: Path) -> Path:
    """The default token file under the harness's XDG_DATA_HOME."""
    return write_token(tmp_path / "data" / "invctl" / "terminal.token")


def authorization(server: FakeServer, index: int = -1) -> str | None:
    return server.requests[index].headers.get("Authorization")


def test_invctls_default_is_where_an_agent_with_its_default_replica_makes_the_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_agent_token_file() == default_db_path("s1").parent / "terminal.token"


def test_buy_sends_the_token_from_the_default_file(
    cli: CliHarness, server: FakeServer, default_token: Path
) -> None:
    server.on("POST", f"{AGENT}/orders", 201, ORDER)

    result = cli("buy", "MILK-1L")

    assert result.exit_code == 0, result.output
    assert authorization(server) == f"Bearer {TOKEN}"
    assert server.requests[-1].headers["Idempotency-Key"]


def test_resync_sends_the_token_and_a_json_body(
    cli: CliHarness, server: FakeServer, default_token: Path
) -> None:
    server.on("POST", f"{AGENT}/sync/resync", 202, {"status": "resync started"})
    server.on("GET", f"{AGENT}/sync/status", 200, READY)

    result = cli("sync", "resync")

    assert result.exit_code == 0, result.output
    resync = server.requests[0]
    assert resync.headers["Authorization"] == f"Bearer {TOKEN}"
    assert resync.headers["Content-Type"] == "application/json"
    assert json.loads(resync.content) == {}
    assert authorization(server) is None, "the status reads after it carry no token"


@pytest.mark.parametrize(
    ("args", "url", "body"),
    [
        (["stock", "show", "MILK-1L"], "/stock/MILK-1L", {"sku": "MILK-1L", "quantity": 1}),
        (["orders", "list"], "/orders", {"items": []}),
        (["sync", "status"], "/sync/status", READY),
    ],
)
def test_reads_never_send_the_token(
    cli: CliHarness, server: FakeServer, default_token: Path, args: list[str], url: str, body: dict
) -> None:
    server.on("GET", f"{AGENT}{url}", 200, body)

    assert cli(*args).exit_code == 0
    assert authorization(server) is None


def test_a_buy_at_central_never_sends_the_agent_token(
    cli: CliHarness, server: FakeServer, default_token: Path
) -> None:
    server.on("POST", f"{CENTRAL}/api/v1/orders", 201, ORDER)

    result = cli("--central", CENTRAL, "buy", "MILK-1L", env={"INVCTL_TOKEN": "staff-token"})

    assert result.exit_code == 0, result.output
    assert authorization(server) == "Bearer staff-token"


def test_the_flag_beats_the_environment_beats_the_config_file(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    server.on("POST", f"{AGENT}/orders", 201, ORDER)
    in_config = write_token(tmp_path / "config.token", "from-config-0123456789abcdefghij")
    in_env = write_token(tmp_path / "env.token", "from-env-0123456789abcdefghijklmn")
    by_flag = write_token(tmp_path / "flag.token", "from-flag-0123456789abcdefghijklm")
    assert cli("config", "set", "agent_token_file", str(in_config)).exit_code == 0

    cli("buy", "MILK-1L")
    cli("buy", "MILK-1L", env={"INVCTL_AGENT_TOKEN_FILE": str(in_env)})
    cli("--agent-token-file", str(by_flag), "buy", "MILK-1L")

    sent = [authorization(server, i) for i in range(3)]
    assert sent == [
        "Bearer from-config-0123456789abcdefghij",
        "Bearer from-env-0123456789abcdefghijklmn",
        "Bearer from-flag-0123456789abcdefghijklm",
    ]


def test_config_show_names_the_token_file_and_set_saves_an_absolute_path(
    cli: CliHarness, tmp_path: Path
) -> None:
    assert cli("config", "set", "agent_token_file", "relative/terminal.token").exit_code == 0

    shown = json.loads(cli("--json", "config", "show").stdout)

    assert shown["agent_token_file"] == str(Path.cwd() / "relative" / "terminal.token")


def test_without_a_token_file_the_agents_401_says_where_invctl_looked(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    refused = error_body("agent.token_required", "this request needs the agent's token")
    server.on("POST", f"{AGENT}/orders", 401, refused)

    result = cli("buy", "MILK-1L")

    assert result.exit_code == 6
    assert authorization(server) is None
    expected = tmp_path / "data" / "invctl" / "terminal.token"
    assert f"{expected} (there is no such file)" in result.stderr
    assert "--agent-token-file" in result.stderr


def test_a_token_file_others_may_read_is_refused_before_any_request(
    cli: CliHarness, server: FakeServer, default_token: Path
) -> None:
    default_token.chmod(0o644)

    result = cli("--json", "buy", "MILK-1L")

    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "config.agent_token_insecure"
    assert TOKEN not in result.output
    assert server.requests == []


def test_a_token_file_without_a_token_is_refused(
    cli: CliHarness, server: FakeServer, default_token: Path
) -> None:
    write_token(default_token, "has spaces in it")

    result = cli("--json", "buy", "MILK-1L")

    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "config.agent_token"
    assert server.requests == []


def test_an_agent_refusing_the_host_hints_at_a_loopback_url(
    cli: CliHarness, server: FakeServer, default_token: Path
) -> None:
    refused = error_body("request.host_refused", "Host 'agent.test:8787' is not loopback")
    server.on("GET", f"{AGENT}/stock/MILK-1L", 421, refused)

    result = cli("stock", "show", "MILK-1L")

    assert result.exit_code == 1
    assert "[request.host_refused]" in result.stderr
    assert "http://127.0.0.1:PORT" in result.stderr
