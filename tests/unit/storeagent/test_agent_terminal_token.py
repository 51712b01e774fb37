"""The terminal token file (made private when missing, refused when others may read it) and
the settings of the store API's edge: where the token lives, the metrics listener, and
--allow-remote applying to that listener only."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from invwire.errors.agent import ConfigError
from storeagent.app import bootstrap
from storeagent.http.token import load_or_create_token, read_token
from storeagent.settings import AgentSettings, load_settings

WITH_KEY = {"STOREAGENT_API_KEY": "ik_test"}
OPERATOR_TOKEN = "an-operator-chosen-token-0123456789abcdef"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_token(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def code_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_or_create_token(path)
    return caught.value.code


def test_a_missing_token_file_is_made_private_with_32_random_bytes(tmp_path):
    path = tmp_path / "state" / "terminal.token"

    token, created = load_or_create_token(path)

    assert created
    assert mode_of(path) == 0o600
    assert len(token) == 43  # 32 bytes, URL-safe base64 without padding
    assert path.read_text() == token + "\n"
    assert list(path.parent.iterdir()) == [path], "no temporary file is left behind"


def test_the_token_is_kept_across_starts_and_differs_between_files(tmp_path):
    first, _ = load_or_create_token(tmp_path / "a" / "terminal.token")

    again, created = load_or_create_token(tmp_path / "a" / "terminal.token")
    other, _ = load_or_create_token(tmp_path / "b" / "terminal.token")

    assert (again, created) == (first, False)
    assert other != first


def test_an_operators_own_token_is_used_as_written(tmp_path):
    path = write_token(tmp_path / "t", f"  {OPERATOR_TOKEN}\n", 0o600)
    assert load_or_create_token(path) == (OPERATOR_TOKEN, False)
    assert read_token(write_token(tmp_path / "ro", OPERATOR_TOKEN, 0o400)) == OPERATOR_TOKEN


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o660, 0o644, 0o666])
def test_a_token_file_others_may_read_or_write_stops_the_agent(tmp_path, mode):
    path = write_token(tmp_path / "terminal.token", OPERATOR_TOKEN, mode)
    assert code_of(path) == "config.terminal_token_insecure"


@pytest.mark.parametrize(
    "text", ["", "\n", "short-token", "a" * 31, "has a space in it, 0123456789abcdef", "é" * 40]
)
def test_a_token_file_without_a_usable_token_is_refused(tmp_path, text):
    path = write_token(tmp_path / "terminal.token", text, 0o600)
    assert code_of(path) == "config.terminal_token_invalid"


def test_a_symlink_or_a_directory_is_not_a_token_file(tmp_path):
    target = write_token(tmp_path / "real", OPERATOR_TOKEN, 0o600)
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "dir").mkdir(mode=0o700)

    assert code_of(tmp_path / "link") == "config.terminal_token_invalid"
    assert code_of(tmp_path / "dir") == "config.terminal_token_invalid"


def test_agents_starting_together_agree_on_one_token(tmp_path):
    path = tmp_path / "terminal.token"
    start = threading.Barrier(8)
    tokens: list[str] = []

    def start_agent() -> None:
        start.wait()
        tokens.append(load_or_create_token(path)[0])

    threads = [threading.Thread(target=start_agent) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(tokens) == 8 and len(set(tokens)) == 1
    assert tokens[0] == read_token(path)


def test_an_insecure_token_file_stops_the_agent_before_it_opens_the_replica(tmp_path):
    write_token(tmp_path / "terminal.token", OPERATOR_TOKEN, 0o644)
    settings = AgentSettings(store_id="s1", db_path=tmp_path / "replica.db")

    with pytest.raises(ConfigError) as caught:
        bootstrap(settings)

    assert caught.value.code == "config.terminal_token_insecure"
    assert "chmod 600" in caught.value.message
    assert not (tmp_path / "replica.db").exists()


# --- settings ----------------------------------------------------------------------------------


def load(flags=None, env=None, config: Path | None = None) -> AgentSettings:
    return load_settings({"store_id": "s1", **(flags or {})}, {**WITH_KEY, **(env or {})}, config)


def config_code(flags=None, env=None, config: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(flags, env, config)
    return caught.value.code


def test_the_token_file_defaults_to_terminal_token_beside_the_replica(tmp_path):
    settings = load({"db": tmp_path / "data" / "replica.db"})
    assert settings.terminal_token_path == tmp_path / "data" / "terminal.token"
    assert settings.summary()["terminal_token_file"] == str(tmp_path / "data" / "terminal.token")


def test_the_token_file_may_be_named_by_flag_env_or_config(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(f'terminal_token_file = "{tmp_path / "toml.token"}"\n')
    env = {"STOREAGENT_TERMINAL_TOKEN_FILE": str(tmp_path / "env.token")}

    assert load(config=config).terminal_token_path == tmp_path / "toml.token"
    assert load(env=env, config=config).terminal_token_path == tmp_path / "env.token"
    flags = {"terminal_token_file": tmp_path / "flag.token"}
    assert load(flags, env, config).terminal_token_path == tmp_path / "flag.token"


def test_there_is_no_metrics_listener_unless_asked_for():
    settings = load()
    assert settings.metrics_port is None
    assert settings.summary()["metrics_listen"] is None


def test_the_metrics_listener_shares_the_loopback_address_without_allow_remote(tmp_path):
    settings = load(env={"STOREAGENT_METRICS_PORT": "9787"})
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9787)
    config = tmp_path / "agent.toml"
    config.write_text('listen = "[::1]:8787"\nmetrics_port = 9787\n')
    assert load(config=config).summary()["metrics_listen"] == "[::1]:9787"


def test_allow_remote_opens_the_metrics_listener_only(tmp_path):
    settings = load({"metrics_port": 9787, "allow_remote": True})

    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9787)
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8787)
    flags = {"listen": "0.0.0.0:8787", "allow_remote": True, "metrics_port": 9787}
    assert config_code(flags) == "config.listen_not_loopback"


@pytest.mark.parametrize("port", ["8787", "65536", "-1", "nine", 8787, True])
def test_a_metrics_port_out_of_range_or_the_apis_own_is_refused(port):
    assert config_code({"metrics_port": port}) == "config.invalid"
