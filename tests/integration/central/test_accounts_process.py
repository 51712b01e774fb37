"""`central serve` as a real process (on SQLite and MariaDB): 30 wrong passwords in a row are
answered 401 up to the limit and 429 with Retry-After after it; a disabled user's token and a
revoked one stop working with the very next request; invctl says in one line when to try
again."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import PASSWORD
from tests.support.processes import ADMIN, ADMIN_PASSWORD, BIN, SECRET, free_port, wait_http

API = "/api/v1"


@dataclass
class CentralProcess:
    url: str
    env: dict[str, str]
    log: Path

    def login(self, username: str, password: str) -> httpx.Response:
        form = {"username": username, "password": password}
        return httpx.post(f"{self.url}{API}/auth/token", data=form, timeout=30)

    def bearer(self, username: str, password: str) -> dict[str, str]:
        response = self.login(username, password)
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def call(self, method: str, path: str, headers: dict[str, str], **kw) -> httpx.Response:
        return httpx.request(method, f"{self.url}{API}{path}", headers=headers, timeout=30, **kw)

    def invctl(self, *args: str, input: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "invctl"), "--central", self.url, *args],
            input=input,
            text=True,
            capture_output=True,
            env=self.env,
            timeout=60,
            check=False,
        )


@pytest.fixture
def central(database_url: str, tmp_path: Path) -> Iterator[CentralProcess]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("INVCTL_", "STOREAGENT_"))},
        "INVCTL_JWT_SECRET": SECRET,
        "INVCTL_DATABASE_URL": database_url,
        "INVCTL_CONFIG_DIR": str(tmp_path / "invctl"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    subprocess.run(
        [str(BIN / "central"), "create-admin", ADMIN, "--password-stdin"],
        input=ADMIN_PASSWORD.encode(),
        env=env,
        check=True,
        capture_output=True,
    )
    port, log = free_port(), tmp_path / "central.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(BIN / "central"), "serve", "--port", str(port), "--no-relay"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/readyz", process=process)
        yield CentralProcess(url, env, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def add_user(central: CentralProcess, admin: dict[str, str], username: str) -> dict:
    body = {"username": username, "password": PASSWORD, "role": "ops"}
    response = central.call("POST", "/users", admin, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_thirty_wrong_passwords_in_a_row_are_throttled_after_the_limit(central):
    admin = central.bearer(ADMIN, ADMIN_PASSWORD)
    add_user(central, admin, "mallory-target")

    answers = [central.login("mallory-target", f"guess-{n}") for n in range(30)]
    right = central.login("mallory-target", PASSWORD)

    assert [a.status_code for a in answers] == [401] * 5 + [429] * 25
    for throttled in [*answers[5:], right]:
        assert throttled.json()["error"]["code"] == "auth.throttled"
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    cli = central.invctl("login", "-u", "mallory-target", "--password-stdin", input=PASSWORD)
    assert cli.returncode == 6
    (line,) = cli.stderr.splitlines()
    assert line.startswith("error: too many failed logins; try again in ")
    # when, in the one time style of the CLI (local time to the second)
    assert re.search(r" \(at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\) \[auth\.throttled\]$", line), line


def test_a_disabled_or_revoked_users_token_stops_working_at_once(central):
    admin = central.bearer(ADMIN, ADMIN_PASSWORD)
    disabled, revoked = (add_user(central, admin, name) for name in ("dora", "rex"))
    tokens = {name: central.bearer(name, PASSWORD) for name in ("dora", "rex")}
    for token in tokens.values():
        assert central.call("GET", "/auth/me", token).status_code == 200

    central.call("POST", f"/users/{disabled['id']}/disable", admin).raise_for_status()
    central.call("POST", f"/users/{revoked['id']}/revoke-tokens", admin).raise_for_status()

    for token in tokens.values():
        answer = central.call("GET", "/auth/me", token)
        assert (answer.status_code, answer.json()["error"]["code"]) == (401, "auth.invalid")
    assert central.login("dora", PASSWORD).status_code == 401
    assert central.login("rex", PASSWORD).status_code == 200
