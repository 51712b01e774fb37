import secrets

import pytest

from central.settings import load
from invwire.errors.central import ConfigError

SECRET = secrets.token_hex(32)


def write_config(tmp_path, text: str):
    """A config file as an operator should keep it: only its owner may read it."""
    config = tmp_path / "central.toml"
    config.write_text(text)
    config.chmod(0o600)
    return config


def test_no_secret_outside_dev_mode_is_an_error():
    with pytest.raises(ConfigError, match="INVCTL_JWT_SECRET"):
        load(env={"INVCTL_DATABASE_URL": "sqlite:///x.db"})


def test_short_secret_is_refused():
    with pytest.raises(ConfigError, match="at least 32"):
        load(env={"INVCTL_JWT_SECRET": "short", "INVCTL_DATABASE_URL": "sqlite:///x.db"})


def test_flags_beat_environment_beat_file(tmp_path):
    config = write_config(
        tmp_path, '[central]\nkafka = "file:1"\ntopic_prefix = "f."\nport = 7000\n'
    )
    env = {
        "INVCTL_JWT_SECRET": SECRET,
        "INVCTL_KAFKA": "env:1",
        "INVCTL_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",  # no login: this is about precedence
        "INVCTL_DATABASE_URL": "sqlite:///x",
    }
    settings = load({"port": 9000}, config_file=config, env=env)
    assert (settings.kafka, settings.topic_prefix, settings.port) == ("env:1", "f.", 9000)


def test_unknown_setting_in_file_is_named(tmp_path):
    config = write_config(tmp_path, "[central]\nkafak = 'oops'\n")
    with pytest.raises(ConfigError, match="kafak"):
        load(config_file=config, env={"INVCTL_JWT_SECRET": SECRET})


def test_bad_toml_is_a_config_error(tmp_path):
    config = write_config(tmp_path, "[central\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(config_file=config, env={"INVCTL_JWT_SECRET": SECRET})


def test_secret_is_not_in_the_repr():
    settings = load(env={"INVCTL_JWT_SECRET": SECRET, "INVCTL_DATABASE_URL": "sqlite:///x"})
    assert SECRET not in repr(settings)
