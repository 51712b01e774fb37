"""invctl sends passwords, tokens and keys only over TLS or to this machine: plain http:// to
another host is refused (exit 2) unless --insecure, which warns; --ca-file names a private CA;
its own files are written 0600 and a credentials file others may read is refused."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from invctl.config import CredentialStore
from tests.support.invctl_fakes import CliHarness, FakeServer

pytestmark = pytest.mark.unit

PLAIN_CENTRAL = "http://central.test:8000"
CATEGORIES = f"{PLAIN_CENTRAL}/api/v1/categories"
TOKEN = {"INVCTL_TOKEN": "t0ken"}


def test_plain_http_to_another_central_is_refused_before_anything_is_sent(
    cli: CliHarness, server: FakeServer
) -> None:
    result = cli("--central", PLAIN_CENTRAL, "category", "list", env=TOKEN)

    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"error: refusing plain HTTP to the central at {PLAIN_CENTRAL}: passwords, tokens and "
        "keys would cross the network in clear [config.insecure_transport]"
    )
    assert "--insecure" in result.stderr and "Traceback" not in result.output
    assert server.requests == []


def test_the_refusal_in_json_has_its_stable_code(cli: CliHarness, server: FakeServer) -> None:
    result = cli("--central", PLAIN_CENTRAL, "--json", "category", "list", env=TOKEN)

    error = json.loads(result.stdout)["error"]
    assert (result.exit_code, error["code"], error["exit_code"]) == (
        2,
        "config.insecure_transport",
        2,
    )


def test_login_over_plain_http_never_sends_the_password(
    cli: CliHarness, server: FakeServer
) -> None:
    result = cli(
        "--central", PLAIN_CENTRAL, "login", "-u", "alice", "--password-stdin", input="hunter2\n"
    )

    assert result.exit_code == 2
    assert server.requests == []


def test_plain_http_to_a_remote_agent_is_refused_too(cli: CliHarness, server: FakeServer) -> None:
    result = cli("--agent", "http://till-3.store.lan:8787", "stock", "show", "MILK")

    assert result.exit_code == 2
    assert "[config.insecure_transport]" in result.stderr
    assert server.requests == []


@pytest.mark.parametrize(
    "agent",
    [
        "http://127.0.0.1:8787",
        "http://127.9.9.9:8787",
        "http://localhost:8787",
        "http://[::1]:8787",
    ],
)
def test_plain_http_on_loopback_is_allowed_without_a_warning(
    cli: CliHarness, server: FakeServer, agent: str
) -> None:
    server.on("GET", f"{agent}/stock/MILK", 200, {"sku": "MILK", "quantity": 3})

    result = cli("--agent", agent, "--json", "stock", "show", "MILK")

    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_insecure_allows_plain_http_and_warns_once(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", CATEGORIES, 200, {"items": []})

    result = cli("--insecure", "--central", PLAIN_CENTRAL, "--json", "category", "list", env=TOKEN)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: --insecure: talking to the central at {PLAIN_CENTRAL} without TLS; "
        "passwords, tokens and keys sent to it can be read on the network"
    ]
    assert server.requests[0].headers["Authorization"] == "Bearer t0ken"


def test_insecure_from_the_environment(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", CATEGORIES, 200, {"items": []})

    result = cli(
        "--central",
        PLAIN_CENTRAL,
        "--json",
        "category",
        "list",
        env={**TOKEN, "INVCTL_INSECURE": "1"},
    )

    assert result.exit_code == 0, result.output


def test_a_ca_file_that_is_missing_is_one_config_error(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.pem"

    result = cli("--ca-file", str(missing), "--agent", "https://agent.test:8787", "sync", "status")

    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith(f"error: cannot use the CA file {missing}: ")
    assert "[config.ca_file]" in result.stderr
    assert server.requests == []


def test_a_ca_file_that_holds_no_certificate_is_one_config_error(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")

    result = cli(
        "--agent",
        "https://agent.test:8787",
        "--json",
        "sync",
        "status",
        env={"INVCTL_CA_FILE": str(junk)},
    )

    assert (result.exit_code, json.loads(result.stdout)["error"]["code"]) == (2, "config.ca_file")


def test_config_and_credentials_files_are_written_0600(cli: CliHarness) -> None:
    assert cli("config", "set", "central", "https://hq.test:8000").exit_code == 0
    CredentialStore(cli.config_dir / "credentials.json").save("https://hq.test:8000", "t", None)

    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in cli.config_dir.iterdir()}
    assert modes == {"config.toml": 0o600, "credentials.json": 0o600}


def test_a_credentials_file_others_may_read_is_refused_with_the_fix(
    cli: CliHarness, server: FakeServer
) -> None:
    central = "https://central.test:8000"
    store = CredentialStore(cli.config_dir / "credentials.json")
    store.save(central, "saved-token", None)
    store.path.chmod(0o644)

    result = cli("--central", central, "category", "list")

    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"error: {store.path} holds login tokens and is accessible to other users (mode 644) "
        "[config.file_insecure]"
    )
    assert f"chmod 600 {store.path}" in result.stderr
    assert server.requests == []
