"""Logins are saved per central URL in a 0600 file, and tokens are never printed."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from invctl.config import CredentialStore, atomic_write
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import FIXED_NOW, CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

TOKEN = "eyJhbGciOi.SECRET-JWT-PAYLOAD.signature"
TOKEN_URL = f"{CENTRAL}/api/v1/auth/token"
ME_URL = f"{CENTRAL}/api/v1/auth/me"


def _login(cli: CliHarness, server: FakeServer, *extra: str) -> None:
    answer = {"access_token": TOKEN, "token_type": "bearer", "expires_in": 3600}
    server.on("POST", TOKEN_URL, 200, answer)
    result = cli(
        "--central", CENTRAL, *extra, "login", "-u", "alice", "--password-stdin", input="pw\n"
    )
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output


def test_login_posts_the_password_form(cli: CliHarness, server: FakeServer) -> None:
    _login(cli, server)

    request = server.requests[-1]
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.content == b"username=alice&password=pw"


def test_credentials_file_is_private(cli: CliHarness, server: FakeServer) -> None:
    _login(cli, server)

    path = cli.config_dir / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(cli.config_dir.glob(".*.tmp")) == []


def test_login_saves_token_and_expiry_keyed_by_central(cli: CliHarness, server: FakeServer) -> None:
    _login(cli, server)

    saved = CredentialStore(cli.config_dir / "credentials.json").get(CENTRAL)
    assert saved is not None
    assert saved.token == TOKEN
    assert saved.expires_at == FIXED_NOW + timedelta(hours=1)


def test_saved_token_is_sent_but_never_printed(cli: CliHarness, server: FakeServer) -> None:
    _login(cli, server)
    server.on("GET", ME_URL, 200, {"subject": "alice", "role": "admin", "store_id": None})

    for args in (
        ("whoami",),
        ("--json", "whoami"),
        ("config", "show"),
        ("--json", "config", "show"),
    ):
        result = cli("--central", CENTRAL, *args)
        assert result.exit_code == 0, result.output
        assert TOKEN not in result.output
    assert server.requests[1].headers["Authorization"] == f"Bearer {TOKEN}"


def test_token_is_not_printed_when_central_rejects_it(cli: CliHarness, server: FakeServer) -> None:
    _login(cli, server)
    server.on("GET", ME_URL, 401, error_body("auth.invalid", "token rejected"))

    result = cli("--central", CENTRAL, "whoami", env={"INVCTL_DEBUG": None})

    assert result.exit_code == 6
    assert TOKEN not in result.output


def test_env_token_overrides_saved_login(cli: CliHarness, server: FakeServer) -> None:
    _login(cli, server)
    server.on("GET", ME_URL, 200, {"subject": "bot", "role": "ops", "store_id": None})

    result = cli("--central", CENTRAL, "--json", "whoami", env={"INVCTL_TOKEN": "env-token"})

    assert server.requests[-1].headers["Authorization"] == "Bearer env-token"
    assert json.loads(result.stdout)["credentials"] == "INVCTL_TOKEN"


def test_store_api_key_is_sent_as_header(cli: CliHarness, server: FakeServer) -> None:
    server.on(
        "GET", ME_URL, 200, {"subject": "store-042", "role": "store", "store_id": "store-042"}
    )

    result = cli("--central", CENTRAL, "whoami", env={"INVCTL_API_KEY": "sk_key"})

    assert result.exit_code == 0
    assert server.requests[-1].headers["X-API-Key"] == "sk_key"
    assert "Authorization" not in server.requests[-1].headers
    assert "sk_key" not in result.output


def test_expired_login_is_not_sent_and_hints_to_log_in_again(
    cli: CliHarness, server: FakeServer
) -> None:
    _login(cli, server)
    cli.now = FIXED_NOW + timedelta(hours=2)
    server.on("GET", ME_URL, 401, error_body("auth.required", "log in first"))

    result = cli("--central", CENTRAL, "whoami")

    assert "Authorization" not in server.requests[-1].headers
    assert result.exit_code == 6
    assert "expired" in result.stderr


def test_wrong_password_exits_6_with_a_hint(cli: CliHarness, server: FakeServer) -> None:
    server.on("POST", TOKEN_URL, 401, error_body("auth.invalid", "wrong username or password"))

    result = cli("--central", CENTRAL, "login", "-u", "alice", "--password-stdin", input="x\n")

    assert result.exit_code == 6
    assert "hint: check the username and password" in result.stderr
    assert not (cli.config_dir / "credentials.json").exists()


def test_login_prompts_without_echoing_the_password(cli: CliHarness, server: FakeServer) -> None:
    server.on("POST", TOKEN_URL, 200, {"access_token": TOKEN, "expires_in": 60})

    result = cli("--central", CENTRAL, "login", input="alice\nhunter2\n")

    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    assert server.requests[-1].content == b"username=alice&password=hunter2"


def test_logout_forgets_only_that_central(cli: CliHarness, server: FakeServer) -> None:
    store = CredentialStore(cli.config_dir / "credentials.json")
    store.save("http://other.test", "other-token", None)
    _login(cli, server)

    result = cli("--central", CENTRAL, "logout")

    assert result.exit_code == 0
    assert store.get(CENTRAL) is None
    assert store.get("http://other.test") is not None


def test_empty_password_is_a_usage_error(cli: CliHarness, server: FakeServer) -> None:
    result = cli("--central", CENTRAL, "login", "-u", "a", "--password-stdin", input="\n")

    assert result.exit_code == 2
    assert server.requests == []


def test_atomic_write_replaces_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "secret.json"
    atomic_write(path, b"one")
    atomic_write(path, b"two")

    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret.json"]


def test_config_set_and_show(cli: CliHarness) -> None:
    assert cli("config", "set", "central", "http://hq.test:8000/api/v1/").exit_code == 0

    result = cli("--json", "config", "show")

    shown = json.loads(result.stdout)
    assert shown["central"] == "http://hq.test:8000"
    assert shown["logged_in"] is False
    assert 'central = "http://hq.test:8000"' in (cli.config_dir / "config.toml").read_text()


def test_config_file_central_is_used_for_admin_commands(
    cli: CliHarness, server: FakeServer
) -> None:
    cli("config", "set", "central", CENTRAL)
    server.on("POST", f"{CENTRAL}/api/v1/categories", 201, {"id": 1, "name": "Dairy"})

    assert cli("category", "add", "Dairy").exit_code == 0


def test_config_set_rejects_a_non_url(cli: CliHarness) -> None:
    result = cli("config", "set", "agent", "localhost")

    assert result.exit_code == 2
    assert not (cli.config_dir / "config.toml").exists()


def test_broken_config_file_is_reported(cli: CliHarness) -> None:
    cli.config_dir.mkdir(parents=True)
    (cli.config_dir / "config.toml").write_text("central = [unclosed\n")

    result = cli("category", "list")

    assert result.exit_code == 2
    assert "config.toml" in result.stderr


@pytest.mark.parametrize("name", ["INVCTL_TOKEN", "INVCTL_API_KEY"])
def test_malformed_secret_is_refused_without_echoing_it(
    cli: CliHarness, server: FakeServer, name: str
) -> None:
    result = cli("--central", CENTRAL, "whoami", env={name: "abc\ndef SECRET-ü"})

    assert result.exit_code == 2
    assert name in result.stderr
    assert "SECRET" not in result.output
    assert server.requests == []
