"""`central` and `storeagent run` as real processes: a bad configuration is one line on stderr
and exit 2, never a traceback; a bug is logged and is one line and exit 1; central serves
HTTPS with its files checked at start, invctl talks to it with a CA file, and the database
files it makes are this user's only."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import ssl
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.waiting import eventually
from tests.support.processes import BIN, free_port
from tests.support.tls import ServerTls, make_server_tls

ADMIN, ADMIN_PASSWORD = "alice", "alice-password-1"


@dataclass(frozen=True)
class Run:
    code: int
    stderr: list[str]
    stdout: str


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment without this shell's INVCTL_/STOREAGENT_ settings, a strong secret,
    and data and config directories of this test's own."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("INVCTL_", "STOREAGENT_"))}
    return {
        **clean,
        "HOME": str(tmp_path / "home"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "INVCTL_JWT_SECRET": secrets.token_hex(32),
        "INVCTL_DATABASE_URL": f"sqlite:///{tmp_path / 'central.db'}",
    }


def run(program: str, *args: str, env: dict[str, str], stdin: str = "") -> Run:
    done = subprocess.run(
        [str(BIN / program), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return Run(done.returncode, done.stderr.splitlines(), done.stdout)


def assert_one_config_line(result: Run, program: str = "central") -> str:
    assert result.code == 2, result.stderr
    assert len(result.stderr) == 1, result.stderr
    assert "Traceback" not in result.stderr[0]
    line = result.stderr[0]
    if program == "central":
        assert line.startswith("central: ") and line.endswith("]"), line
        assert "[config." in line, line
    return line


def write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


# --- central: every bad configuration is one line and exit 2 ------------------------------


def bad_configurations(tmp_path: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """name -> (extra args, extra env, a piece of the expected line)."""
    loose_config = write(tmp_path / "loose.toml", "[central]\nport = 7000\n", 0o644)
    loose_key = write(tmp_path / "loose.key", "key\n", 0o644)
    cert = write(tmp_path / "cert.pem", "cert\n", 0o644)
    return {
        "unreachable mysql": (
            [],
            {"INVCTL_DATABASE_URL": "mysql://u:hunter2@127.0.0.1:1/inventory"},
            "cannot use the database 127.0.0.1:1/inventory",
        ),
        "port not a number": (
            [],
            {"INVCTL_DATABASE_URL": "mysql://u:hunter2@db:abc/inventory"},
            "the port in INVCTL_DATABASE_URL",
        ),
        "not a sqlite file": (
            [],
            {"INVCTL_DATABASE_URL": "sqlite:////etc/passwd"},
            "/etc/passwd exists and is not a SQLite database",
        ),
        "a directory": (
            [],
            {"INVCTL_DATABASE_URL": "sqlite:////tmp"},
            "/tmp is a directory",
        ),
        "unknown log level": ([], {"INVCTL_LOG_LEVEL": "LOUD"}, "INVCTL_LOG_LEVEL"),
        "32 spaces": ([], {"INVCTL_JWT_SECRET": " " * 32}, "INVCTL_JWT_SECRET is guessable"),
        "32 letters": ([], {"INVCTL_JWT_SECRET": "a" * 32}, "INVCTL_JWT_SECRET is guessable"),
        "token ttl": ([], {"INVCTL_TOKEN_TTL": "999999999999"}, "INVCTL_TOKEN_TTL"),
        "config others may read": (
            ["--config", str(loose_config)],
            {},
            f"run: chmod 600 {loose_config}",
        ),
        "config missing": (
            ["--config", str(tmp_path / "missing.toml")],
            {},
            "cannot read config file",
        ),
        "certificate without key": ([], {"INVCTL_SSL_CERTFILE": str(cert)}, "go together"),
        "tls key others may read": (
            [],
            {"INVCTL_SSL_CERTFILE": str(cert), "INVCTL_SSL_KEYFILE": str(loose_key)},
            f"run: chmod 600 {loose_key}",
        ),
    }


CASES = [
    "unreachable mysql",
    "port not a number",
    "not a sqlite file",
    "a directory",
    "unknown log level",
    "32 spaces",
    "32 letters",
    "token ttl",
    "config others may read",
    "config missing",
    "certificate without key",
    "tls key others may read",
]


@pytest.mark.parametrize("case", CASES)
def test_serve_with_a_bad_configuration_exits_2_with_one_line(
    case: str, env: dict[str, str], tmp_path: Path
) -> None:
    args, extra, expected = bad_configurations(tmp_path)[case]

    result = run("central", "serve", "--port", str(free_port()), *args, env={**env, **extra})

    assert expected in assert_one_config_line(result)
    assert "hunter2" not in result.stderr[0]


@pytest.mark.parametrize(
    "command", [["migrate"], ["relay"], ["create-admin", ADMIN, "--password-stdin"]]
)
@pytest.mark.parametrize("case", ["unreachable mysql", "not a sqlite file", "32 letters"])
def test_every_command_reports_a_bad_configuration_in_one_line(
    command: list[str], case: str, env: dict[str, str], tmp_path: Path
) -> None:
    args, extra, expected = bad_configurations(tmp_path)[case]
    extra = {"INVCTL_KAFKA": "127.0.0.1:1", "INVCTL_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", **extra}

    result = run("central", *command, *args, env={**env, **extra}, stdin=ADMIN_PASSWORD + "\n")

    assert expected in assert_one_config_line(result)


def test_relay_without_kafka_is_a_config_error(env: dict[str, str]) -> None:
    line = assert_one_config_line(run("central", "relay", env=env))

    assert line == (
        "central: INVCTL_KAFKA is not set: the relay has nowhere to publish [config.invalid]"
    )


def test_a_bug_is_logged_with_its_traceback_then_one_line_and_exit_1(
    env: dict[str, str], tmp_path: Path
) -> None:
    with sqlite3.connect(tmp_path / "central.db") as db:  # a schema no central wrote
        db.execute("CREATE TABLE schema_migrations (something_else INTEGER)")
    (tmp_path / "central.db").chmod(0o600)

    result = run("central", "migrate", env=env)

    assert result.code == 1
    logged, said = result.stderr
    record = json.loads(logged)
    assert (record["event"], record["level"]) == ("central.crashed", "error")
    assert "Traceback" in record["exc"]
    assert said.startswith("central: internal error: OperationalError: ")
    assert said.endswith("(traceback logged) [internal]")


def test_a_database_others_may_read_is_made_private_with_one_warning(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "central.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)

    result = run("central", "migrate", env=env)

    assert (result.code, result.stdout) == (0, "schema is up to date\n")
    [line] = result.stderr
    assert json.loads(line)["event"] == "database.mode_tightened"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- central over HTTPS, and invctl with a CA file -----------------------------------------


@pytest.fixture
def tls(tmp_path: Path) -> ServerTls:
    directory = tmp_path / "tls"
    directory.mkdir()
    return make_server_tls(directory)


@pytest.fixture
def https_central(env: dict[str, str], tls: ServerTls, tmp_path: Path) -> Iterator[str]:
    created = run(
        "central", "create-admin", ADMIN, "--password-stdin", env=env, stdin=ADMIN_PASSWORD
    )
    assert created.code == 0, created.stderr
    port = free_port()
    log = (tmp_path / "central.log").open("w")
    process = subprocess.Popen(
        [
            str(BIN / "central"),
            "serve",
            "--port",
            str(port),
            "--ssl-certfile",
            str(tls.cert),
            "--ssl-keyfile",
            str(tls.key),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=tls.ca_cert)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"central exited: {(tmp_path / 'central.log').read_text()}")
        return httpx.get(f"{url}/readyz", verify=trusted, timeout=1).status_code == 200

    try:
        eventually(ready, 30, "central serving HTTPS", ignoring=(httpx.HTTPError,))
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def test_invctl_logs_in_to_central_over_https_with_a_ca_file(
    https_central: str, env: dict[str, str], tls: ServerTls, tmp_path: Path
) -> None:
    cli_env = {
        **env,
        "INVCTL_CONFIG_DIR": str(tmp_path / "invctl"),
        "INVCTL_CA_FILE": str(tls.ca_cert),
    }

    login = run(
        "invctl", "--central", https_central, "login", "-u", ADMIN, "--password-stdin",
        env=cli_env, stdin=ADMIN_PASSWORD + "\n",
    )  # fmt: skip
    whoami = run("invctl", "--central", https_central, "--json", "whoami", env=cli_env)

    assert login.code == 0, login.stderr
    assert whoami.code == 0, whoami.stderr
    assert json.loads(whoami.stdout)["subject"] == ADMIN


def test_invctl_without_the_ca_refuses_the_certificate_and_says_how(
    https_central: str, env: dict[str, str], tmp_path: Path
) -> None:
    cli_env = {**env, "INVCTL_CONFIG_DIR": str(tmp_path / "invctl"), "INVCTL_TOKEN": "t"}

    result = run("invctl", "--central", https_central, "category", "list", env=cli_env)

    assert result.code == 5
    assert "[tls.verify_failed]" in result.stderr[0]
    assert any("--ca-file" in line for line in result.stderr)


def test_the_database_and_its_wal_and_shm_are_the_owners_only(
    https_central: str, tmp_path: Path
) -> None:
    files = [tmp_path / name for name in ("central.db", "central.db-wal", "central.db-shm")]

    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == dict.fromkeys(
        (p.name for p in files), 0o600
    )


# --- storeagent run: the same rule --------------------------------------------------------


def agent_run(tmp_path: Path, env: dict[str, str], *args: str, **extra_env: str) -> Run:
    key = write(tmp_path / "agent.key", "ik_test\n", 0o600)
    base = ["run", "--store-id", "s1", "--listen", "127.0.0.1:0", "--api-key-file", str(key)]
    if "--db" not in args:
        base += ["--db", str(tmp_path / "agent" / "replica.db")]
    return run("storeagent", *base, *args, env={**env, **extra_env})


def agent_error(result: Run) -> dict[str, str]:
    assert result.code == 2, result.stderr
    [line] = result.stderr
    return json.loads(line)


def test_agent_refuses_plain_http_to_a_remote_central(env: dict[str, str], tmp_path: Path) -> None:
    error = agent_error(agent_run(tmp_path, env, "--central", "http://central.example:8000"))

    assert (error["event"], error["code"]) == ("agent.config_invalid", "config.insecure_transport")
    assert "--insecure" in error["message"]


def test_agent_refuses_a_replica_that_is_a_directory(env: dict[str, str], tmp_path: Path) -> None:
    directory = tmp_path / "somewhere"
    directory.mkdir()

    error = agent_error(agent_run(tmp_path, env, "--db", str(directory)))

    assert error["code"] == "config.invalid"
    assert "is a directory" in error["message"]


def test_agent_refuses_a_replica_that_is_not_sqlite(env: dict[str, str], tmp_path: Path) -> None:
    notes = write(tmp_path / "notes.txt", "not a database\n", 0o600)

    error = agent_error(agent_run(tmp_path, env, "--db", str(notes)))

    assert "exists and is not a SQLite database" in error["message"]
    assert notes.read_text() == "not a database\n"


def test_agent_refuses_a_key_file_its_group_may_read(env: dict[str, str], tmp_path: Path) -> None:
    key = write(tmp_path / "group.key", "ik_test\n", 0o640)

    error = agent_error(
        run("storeagent", "run", "--store-id", "s1", "--api-key-file", str(key), env=env)
    )

    assert error["code"] == "config.key_file_insecure"
    assert f"chmod 600 {key}" in error["message"]


def test_agent_refuses_an_unreadable_config_file(env: dict[str, str], tmp_path: Path) -> None:
    error = agent_error(agent_run(tmp_path, env, "--config", str(tmp_path / "missing.toml")))

    assert error["code"] == "config.file_invalid"
