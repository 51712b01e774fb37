"""The agent's central URL: https://, or http:// to this machine; plain http:// to another
machine only when told --insecure (STOREAGENT_INSECURE, `insecure` in the TOML file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from invwire.errors.agent import ConfigError, InsecureTransport
from storeagent.settings import AgentSettings, load_settings

WITH_KEY = {"STOREAGENT_API_KEY": "ik_test"}


def load(flags=None, env=None, config: Path | None = None) -> AgentSettings:
    return load_settings({"store_id": "s1", **(flags or {})}, {**WITH_KEY, **(env or {})}, config)


@pytest.mark.parametrize(
    "url", ["http://central:8000", "http://10.0.0.5:8000", "http://[2001:db8::1]:8000"]
)
def test_plain_http_to_another_machine_is_refused_naming_the_way_out(url: str) -> None:
    with pytest.raises(InsecureTransport) as caught:
        load({"central": url})

    assert caught.value.code == "config.insecure_transport"
    assert url in caught.value.message
    assert "https://" in caught.value.message and "--insecure" in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://127.3.2.1:8000",
        "http://localhost:8000",
        "http://[::1]:8000",
        "https://central.example.net",
    ],
)
def test_https_anywhere_and_http_on_loopback_are_accepted(url: str) -> None:
    assert load({"central": url}).central_url == url


def test_the_flag_allows_plain_http_to_another_machine() -> None:
    settings = load({"central": "http://central:8000", "insecure": True})

    assert (settings.central_url, settings.insecure) == ("http://central:8000", True)


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "TRUE"])
def test_the_environment_allows_it(value: str) -> None:
    settings = load(env={"STOREAGENT_CENTRAL": "http://central:8000", "STOREAGENT_INSECURE": value})

    assert settings.insecure is True


def test_the_environment_saying_no_still_refuses() -> None:
    env = {"STOREAGENT_CENTRAL": "http://central:8000", "STOREAGENT_INSECURE": "0"}

    with pytest.raises(InsecureTransport):
        load(env=env)


def test_the_config_file_allows_it_with_a_boolean(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('central = "http://central:8000"\ninsecure = true\n')

    assert load(config=config).insecure is True


def test_a_string_for_insecure_in_the_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('insecure = "yes"\n')

    with pytest.raises(ConfigError, match="insecure must be a bool"):
        load(config=config)


def test_an_unreadable_insecure_value_is_refused() -> None:
    with pytest.raises(ConfigError, match="insecure 'maybe' must be true or false"):
        load(env={"STOREAGENT_INSECURE": "maybe"})


@pytest.mark.parametrize("url", ["http://central:abc", "https://central:99999", "http://:80"])
def test_a_central_url_with_a_bad_port_or_no_host_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({"central": url})

    assert caught.value.code == "config.invalid"
    assert caught.value.details == {"field": "central"}
