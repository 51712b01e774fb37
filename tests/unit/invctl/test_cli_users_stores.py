"""`invctl user ...`, `invctl store deactivate|activate` and `invctl passwd` send the
documented requests; a throttled login says in one line when to try again."""

from __future__ import annotations

import json

import httpx
import pytest

from invctl.config import CredentialStore
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
BOB = {"id": 7, "username": "bob", "role": "staff", "store_id": "s1", "active": True}
USERS = {"items": [{"id": 1, "username": "root", "role": "admin", "store_id": None}, BOB]}


def central(cli: CliHarness, *args: str, input: str | None = None):
    return cli("--central", CENTRAL, *args, input=input)


@pytest.fixture
def users(server: FakeServer) -> FakeServer:
    server.on("GET", f"{API}/users", 200, USERS)
    return server


def test_user_list_shows_who_is_active(cli: CliHarness, users: FakeServer) -> None:
    table = central(cli, "user", "list")
    as_json = central(cli, "--json", "user", "list")

    assert table.exit_code == 0, table.output
    assert "active" in table.stdout and "bob" in table.stdout
    assert json.loads(as_json.stdout) == USERS["items"]


@pytest.mark.parametrize(
    ("verb", "action"),
    [("disable", "disable"), ("enable", "enable"), ("revoke-tokens", "revoke-tokens")],
)
def test_user_verbs_address_the_user_by_its_id(
    cli: CliHarness, users: FakeServer, verb: str, action: str
) -> None:
    users.on("POST", f"{API}/users/7/{action}", 200, BOB)

    result = central(cli, "--json", "user", verb, "bob")

    assert result.exit_code == 0, result.output
    assert users.requests[-1].url.path == f"/api/v1/users/7/{action}"
    assert json.loads(result.stdout) == BOB


def test_an_unknown_username_is_not_found_and_nothing_is_changed(
    cli: CliHarness, users: FakeServer
) -> None:
    result = central(cli, "user", "disable", "nobody")

    assert result.exit_code == 3
    assert "user.not_found" in result.stderr
    assert [r.method for r in users.requests] == ["GET"]


def test_set_role_sends_the_role_and_the_store(cli: CliHarness, users: FakeServer) -> None:
    users.on("POST", f"{API}/users/7/role", 200, {**BOB, "role": "ops", "store_id": None})

    staff = central(cli, "user", "set-role", "bob", "--role", "staff", "--store", "s2")
    ops = central(cli, "user", "set-role", "bob", "--role", "ops")

    assert staff.exit_code == ops.exit_code == 0, staff.output
    assert json.loads(users.requests[-3].content) == {"role": "staff", "store_id": "s2"}
    assert json.loads(users.requests[-1].content) == {"role": "ops", "store_id": None}
    assert "revoked" in ops.stderr


def test_the_last_admin_refusal_is_shown_with_its_code(cli: CliHarness, users: FakeServer) -> None:
    refusal = error_body("user.last_admin", "The last active admin cannot be disabled")
    users.on("POST", f"{API}/users/1/disable", 409, refusal)

    result = central(cli, "user", "disable", "root")

    assert result.exit_code == 4
    assert "[user.last_admin]" in result.stderr


def test_reset_password_reads_stdin_and_never_echoes_it(cli: CliHarness, users: FakeServer) -> None:
    users.on("POST", f"{API}/users/7/password", 200, BOB)

    result = central(cli, "user", "reset-password", "bob", "--password-stdin", input="n3w-pass\n")

    assert result.exit_code == 0, result.output
    assert json.loads(users.requests[-1].content) == {"password": "n3w-pass"}
    assert "n3w-pass" not in result.output


def test_store_deactivate_says_how_many_keys_were_revoked(
    cli: CliHarness, server: FakeServer
) -> None:
    answer = {"id": "s1", "name": "One", "active": False, "active_keys": 0, "revoked_keys": 2}
    server.on("POST", f"{API}/stores/s1/deactivate", 200, answer)

    result = central(cli, "store", "deactivate", "s1")

    assert result.exit_code == 0, result.output
    assert "Deactivated store s1; revoked 2 API key(s)." in result.stdout


def test_store_activate_points_at_issuing_a_new_key(cli: CliHarness, server: FakeServer) -> None:
    answer = {"id": "s1", "name": "One", "active": True, "active_keys": 0}
    server.on("POST", f"{API}/stores/s1/activate", 200, answer)

    result = central(cli, "--json", "store", "activate", "s1")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == answer
    assert "invctl store rotate-key s1" in result.stderr


THROTTLED = error_body(
    "auth.throttled", "too many failed logins; try again in 240 seconds", retry_after=240
)


def test_a_throttled_login_says_when_to_try_again_in_one_line(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("POST", f"{API}/auth/token", 429, THROTTLED)

    result = central(cli, "login", "-u", "alice", "--password-stdin", input="pw\n")

    assert result.exit_code == 6
    assert result.stderr.splitlines() == [
        "error: too many failed logins; try again in 4 min 0 s (at 2026-11-29 10:04:00)"
        " [auth.throttled]"  # the fixture's TZ is UTC: local time is UTC
    ]


def test_a_throttled_login_in_json_carries_the_seconds_and_the_moment(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("POST", f"{API}/auth/token", 429, THROTTLED)

    result = central(cli, "--json", "login", "-u", "alice", "--password-stdin", input="pw\n")

    error = json.loads(result.stdout)["error"]
    assert error["code"] == "auth.throttled"
    assert error["details"] == {"retry_after": 240, "retry_at": "2026-11-29T10:04:00+00:00"}


def test_passwd_sends_both_passwords_and_saves_the_fresh_token(
    cli: CliHarness, server: FakeServer
) -> None:
    fresh = {"access_token": "fresh.jwt.token", "token_type": "bearer", "expires_in": 600}
    server.on("POST", f"{API}/auth/password", 200, fresh)

    result = central(cli, "passwd", "--password-stdin", input="old-pass\nnew-pass-1\n")

    assert result.exit_code == 0, result.output
    assert json.loads(server.requests[-1].content) == {
        "current_password": "old-pass",
        "new_password": "new-pass-1",
    }
    saved = CredentialStore(cli.config_dir / "credentials.json").get(CENTRAL)
    assert saved is not None and saved.token == "fresh.jwt.token"
    assert "old-pass" not in result.output and "fresh.jwt.token" not in result.output


def test_passwd_prompts_for_the_current_and_twice_for_the_new_password(
    cli: CliHarness, server: FakeServer
) -> None:
    fresh = {"access_token": "fresh.jwt.token", "token_type": "bearer", "expires_in": 600}
    server.on("POST", f"{API}/auth/password", 200, fresh)

    result = central(cli, "passwd", input="old-pass\nnew-pass-1\nnew-pass-1\n")

    assert result.exit_code == 0, result.output
    assert "Current password" in result.output and "New password" in result.output
    assert json.loads(server.requests[-1].content)["new_password"] == "new-pass-1"


def test_passwd_with_a_wrong_current_password_keeps_the_saved_login(
    cli: CliHarness, server: FakeServer
) -> None:
    CredentialStore(cli.config_dir / "credentials.json").save(CENTRAL, "old.jwt.token", None)
    server.on_call(
        "POST",
        f"{API}/auth/password",
        lambda _: httpx.Response(422, json=error_body("password.wrong", "wrong password")),
    )

    result = central(cli, "passwd", "--password-stdin", input="bad-pass\nnew-pass-1\n")

    assert result.exit_code == 1
    assert "[password.wrong]" in result.stderr and "current password" in result.stderr
    saved = CredentialStore(cli.config_dir / "credentials.json").get(CENTRAL)
    assert saved is not None and saved.token == "old.jwt.token"
