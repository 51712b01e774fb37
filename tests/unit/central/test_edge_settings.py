"""The HTTP edge's settings: defaults, environment names, and a bad value stops central."""

from __future__ import annotations

import secrets

import pytest

from central.settings import load
from invwire.errors.central import ConfigError

pytestmark = pytest.mark.unit

BASE_ENV = {"INVCTL_JWT_SECRET": secrets.token_hex(32), "INVCTL_DATABASE_URL": "sqlite:///x"}


def test_the_defaults():
    settings = load(env=BASE_ENV)
    assert (
        settings.max_body_bytes,
        settings.max_import_bytes,
        settings.limit_concurrency,
        settings.backlog,
        settings.max_header_bytes,
        settings.api_docs,
    ) == (1024 * 1024, 16 * 1024 * 1024, 512, 2048, 16 * 1024, True)


def test_each_is_read_from_its_environment_variable():
    env = {
        **BASE_ENV,
        "INVCTL_MAX_BODY_BYTES": "65536",
        "INVCTL_MAX_IMPORT_BYTES": "1048576",
        "INVCTL_LIMIT_CONCURRENCY": "100",
        "INVCTL_BACKLOG": "128",
        "INVCTL_MAX_HEADER_BYTES": "8192",
        "INVCTL_API_DOCS": "false",
    }
    settings = load(env=env)
    assert (
        settings.max_body_bytes,
        settings.max_import_bytes,
        settings.limit_concurrency,
        settings.backlog,
        settings.max_header_bytes,
        settings.api_docs,
    ) == (65536, 1048576, 100, 128, 8192, False)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INVCTL_MAX_BODY_BYTES", "0"),
        ("INVCTL_MAX_BODY_BYTES", "-1"),
        ("INVCTL_MAX_BODY_BYTES", "1MB"),
        ("INVCTL_MAX_BODY_BYTES", str(2 * 1024**3)),
        ("INVCTL_MAX_IMPORT_BYTES", "0"),
        ("INVCTL_MAX_IMPORT_BYTES", "1.5"),
        ("INVCTL_LIMIT_CONCURRENCY", "0"),
        ("INVCTL_LIMIT_CONCURRENCY", "many"),
        ("INVCTL_BACKLOG", "-5"),
        ("INVCTL_BACKLOG", "70000"),
        ("INVCTL_MAX_HEADER_BYTES", "100"),
    ],
)
def test_a_value_that_is_not_a_whole_number_in_range_is_a_config_error(name, value):
    with pytest.raises(ConfigError) as refused:
        load(env={**BASE_ENV, name: value})
    assert refused.value.code.startswith("config.")
    assert value in refused.value.message


def test_the_message_names_the_variable_and_the_range():
    with pytest.raises(ConfigError, match=r"INVCTL_MAX_BODY_BYTES .* from 1 to 1073741824, got 0"):
        load(env={**BASE_ENV, "INVCTL_MAX_BODY_BYTES": "0"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("relay_failing_after_seconds", 0),
        ("relay_failing_after_seconds", -3),
        ("relay_audit_seconds", 1),
        ("relay_audit_seconds", 10**9),
    ],
)
def test_a_relay_timing_out_of_range_is_a_config_error(tmp_path, name, value):
    config = tmp_path / "central.toml"
    config.write_text(f"{name} = {value}\n")
    config.chmod(0o600)

    with pytest.raises(ConfigError, match=f"setting {name} must be"):
        load(config_file=config, env=BASE_ENV)


def test_the_relay_timings_in_range_are_taken(tmp_path):
    config = tmp_path / "central.toml"
    config.write_text("relay_failing_after_seconds = 5\nrelay_audit_seconds = 60\n")
    config.chmod(0o600)

    settings = load(config_file=config, env=BASE_ENV)

    assert (settings.relay_failing_after_seconds, settings.relay_audit_seconds) == (5, 60)
