import os
from pathlib import Path

import pytest

from invwire.errors.agent import ConfigError
from invwire.identity import kafka_username
from storeagent.settings import (
    DEFAULT_KAFKA_SECURITY_PROTOCOL,
    AgentSettings,
    default_db_path,
    load_settings,
)

# The agent logs in to Kafka with its store key by default; most tests are about other settings.
WITH_KEY = {"STOREAGENT_API_KEY": "ik_test"}


def load(flags=None, env=None, config: Path | None = None) -> AgentSettings:
    return load_settings({"store_id": "s1", **(flags or {})}, {**WITH_KEY, **(env or {})}, config)


def error_code(flags=None, env=None, config: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(flags or {}, env or {}, config)
    return caught.value.code


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def write_key(tmp_path: Path, key: str, mode: int) -> Path:
    path = tmp_path / "key"
    path.write_text(key + "\n")
    os.chmod(path, mode)
    return path


def test_defaults_listen_on_loopback_8787_with_a_per_store_db():
    settings = load()

    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8787)
    assert settings.db_path == default_db_path("s1")
    assert settings.db_path.name == "storeagent-s1.db"
    assert (settings.kafka, settings.topic_prefix) == ("127.0.0.1:9092", "")
    assert settings.group_id == "storeagent.s1"


def test_flag_beats_env_beats_config_file(tmp_path):
    config = write_config(tmp_path, 'kafka = "file:1"\ncentral = "https://file"\ndb = "/f.db"\n')
    env = {"STOREAGENT_KAFKA": "env:2", "STOREAGENT_CENTRAL": "https://env"}

    settings = load({"kafka": "flag:3"}, env, config)

    assert settings.kafka == "flag:3"
    assert settings.central_url == "https://env"
    assert settings.db_path == Path("/f.db")


def test_agent_kafka_env_falls_back_to_invctl_kafka():
    assert load(env={"INVCTL_KAFKA": "k1:9092"}).kafka == "k1:9092"
    both = {"INVCTL_KAFKA": "k1:9092", "STOREAGENT_KAFKA": "k2:9092"}
    assert load(env=both).kafka == "k2:9092"


def test_topic_prefix_comes_from_invctl_topic_prefix():
    assert load(env={"INVCTL_TOPIC_PREFIX": "t1."}).topic_prefix == "t1."


def test_store_id_may_come_from_the_config_file(tmp_path):
    config = write_config(tmp_path, 'store_id = "north-7"\n')

    assert load_settings({}, WITH_KEY, config).store_id == "north-7"


def test_missing_store_id_is_config_missing():
    assert error_code() == "config.missing"


@pytest.mark.parametrize("store_id", ["Store1", "-s", "a_b", "s" * 65, "s 1"])
def test_malformed_store_id_is_config_invalid(store_id):
    assert error_code({"store_id": store_id}) == "config.invalid"


def test_non_loopback_listen_is_refused_without_allow_remote():
    assert error_code({"store_id": "s1", "listen": "0.0.0.0:8787"}) == "config.listen_not_loopback"


def test_allow_remote_never_lets_the_store_api_off_loopback(tmp_path):
    flags = {"store_id": "s1", "listen": "0.0.0.0:9000", "allow_remote": True}
    assert error_code(flags, WITH_KEY) == "config.listen_not_loopback"
    config = write_config(tmp_path, 'listen = "10.1.2.3:80"\nallow_remote = true\n')
    assert error_code({"store_id": "s1"}, WITH_KEY, config) == "config.listen_not_loopback"


@pytest.mark.parametrize("listen", ["localhost:1", "[::1]:8787", "127.0.0.2:8000"])
def test_loopback_names_and_addresses_are_accepted(listen):
    assert load({"listen": listen}).listen_port in (1, 8787, 8000)


@pytest.mark.parametrize("listen", ["8787", "127.0.0.1", "127.0.0.1:99999", "a:b:c"])
def test_malformed_listen_is_config_invalid(listen):
    assert error_code({"store_id": "s1", "listen": listen}) == "config.invalid"


@pytest.mark.parametrize(
    "flags",
    [{"central": "ftp://x"}, {"kafka": "no-port"}, {"topic_prefix": "bad prefix"}],
    ids=str,
)
def test_malformed_values_are_config_invalid(flags):
    assert error_code({"store_id": "s1", **flags}) == "config.invalid"


def test_api_key_is_read_from_a_private_file_and_never_shown(tmp_path):
    key_file = write_key(tmp_path, "sk-secret", 0o600)

    settings = load({"api_key_file": key_file})

    assert settings.api_key == "sk-secret"
    assert "sk-secret" not in repr(settings)
    assert "sk-secret" not in str(settings.summary())


def test_world_readable_key_file_is_refused(tmp_path):
    key_file = write_key(tmp_path, "sk-secret", 0o644)

    assert error_code({"store_id": "s1", "api_key_file": key_file}) == "config.key_file_insecure"


def test_api_key_file_flag_beats_the_env_key(tmp_path):
    key_file = write_key(tmp_path, "from-file", 0o600)

    settings = load({"api_key_file": key_file}, {"STOREAGENT_API_KEY": "from-env"})

    assert settings.api_key == "from-file"
    assert load(env={"STOREAGENT_API_KEY": "from-env"}).api_key == "from-env"


def test_missing_or_empty_key_file_is_config_invalid(tmp_path):
    assert error_code({"store_id": "s1", "api_key_file": tmp_path / "nope"}) == "config.invalid"
    empty = write_key(tmp_path, "", 0o600)
    assert error_code({"store_id": "s1", "api_key_file": empty}) == "config.invalid"


@pytest.mark.parametrize(
    "text",
    ["store_id = ", 'unknown_key = "x"', "listen = 8787", 'allow_remote = "yes"'],
    ids=["syntax", "unknown-key", "wrong-type", "bool-as-text"],
)
def test_bad_config_file_is_config_file_invalid(tmp_path, text):
    config = write_config(tmp_path, text + "\n")

    assert error_code({"store_id": "s1"}, config=config) == "config.file_invalid"


def test_unreadable_config_file_is_config_file_invalid(tmp_path):
    assert error_code({"store_id": "s1"}, config=tmp_path / "missing.toml") == "config.file_invalid"


# --- the offline policy ----------------------------------------------------------------------


def test_offline_mode_is_off_by_default_with_20_units_a_sale_and_200_in_all():
    policy = load().offline

    assert (policy.enabled, policy.max_units_per_order, policy.max_queued_units) == (False, 20, 200)
    assert policy.max_age_s == 3600
    assert load().summary()["offline"] == "off"


def test_offline_policy_comes_from_flags_then_env_then_the_config_file(tmp_path):
    config = write_config(
        tmp_path, "offline = true\noffline_max_units_per_order = 4\noffline_max_queued_units = 40\n"
    )
    env = {"STOREAGENT_OFFLINE_MAX_QUEUED_UNITS": "30", "STOREAGENT_OFFLINE_MAX_AGE": "600"}

    policy = load({"offline_max_units_per_order": 5}, env, config).offline

    assert (policy.enabled, policy.max_units_per_order, policy.max_queued_units) == (True, 5, 30)
    assert policy.max_age_s == 600
    assert load({"offline": "on"}).offline.enabled
    assert not load({"offline": "off"}, {"STOREAGENT_OFFLINE": "on"}).offline.enabled
    assert load(env={"STOREAGENT_OFFLINE": "on"}).offline.enabled


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({"offline": "maybe"}, "offline"),
        ({"offline_max_units_per_order": 0}, "offline_max_units_per_order"),
        ({"offline_max_units_per_order": "-3"}, "offline_max_units_per_order"),
        ({"offline_max_queued_units": "lots"}, "offline_max_queued_units"),
        ({"offline_max_age": 0}, "offline_max_age"),
    ],
    ids=str,
)
def test_malformed_offline_settings_are_config_invalid_naming_the_setting(flags, field):
    with pytest.raises(ConfigError) as caught:
        load(flags)

    assert (caught.value.code, caught.value.details["field"]) == ("config.invalid", field)


def test_a_total_below_the_per_sale_limit_is_config_invalid():
    with pytest.raises(ConfigError) as caught:
        load({"offline_max_units_per_order": 50, "offline_max_queued_units": 10})

    assert caught.value.message == (
        "offline_max_queued_units (10) must be at least offline_max_units_per_order (50)"
    )


@pytest.mark.parametrize(
    "text", ["offline = 1", 'offline = "sometimes"', "offline_max_queued_units = 2.5"]
)
def test_offline_keys_of_the_wrong_kind_in_the_config_file_are_config_invalid(tmp_path, text):
    config = write_config(tmp_path, text + "\n")

    assert error_code({"store_id": "s1"}, config=config) == "config.invalid"


# --- Kafka security ----------------------------------------------------------------------------


def test_kafka_is_tls_with_the_stores_own_login_by_default():
    settings = load()

    assert settings.kafka_security_protocol == DEFAULT_KAFKA_SECURITY_PROTOCOL == "SASL_SSL"
    assert settings.kafka_user == kafka_username("s1", "ik_test")


def test_without_a_key_the_default_tls_login_is_a_config_error_naming_the_way_out():
    with pytest.raises(ConfigError) as caught:
        load_settings({"store_id": "s1"}, {})

    assert caught.value.code == "config.missing"
    assert "STOREAGENT_KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in caught.value.message


def test_plaintext_needs_no_login_when_asked_for():
    settings = load_settings(
        {"store_id": "s1"}, {"STOREAGENT_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
    )

    assert (settings.kafka_ca_file, settings.kafka_user) == (None, None)


def test_sasl_ssl_logs_in_as_the_stores_own_kafka_user(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "STOREAGENT_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "STOREAGENT_KAFKA_CA_FILE": str(ca),
        "STOREAGENT_API_KEY": "sk-secret",
    }

    settings = load(env=env)

    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_ca_file == ca
    assert settings.kafka_user == kafka_username("s1", "sk-secret")
    assert settings.summary()["kafka_user"] == settings.kafka_user
    assert "sk-secret" not in str(settings.summary())


def test_kafka_security_env_falls_back_to_the_invctl_names(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    invctl = {
        "INVCTL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "INVCTL_KAFKA_CA_FILE": str(ca),
        "STOREAGENT_API_KEY": "k",
    }

    settings = load(env=invctl)

    assert (settings.kafka_security_protocol, settings.kafka_ca_file) == ("SASL_SSL", ca)
    agent_wins = invctl | {"STOREAGENT_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
    assert load(env=agent_wins).kafka_security_protocol == "PLAINTEXT"


def test_kafka_security_from_the_config_file_and_flags(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    key_file = write_key(tmp_path, "sk-1", 0o600)
    config = write_config(
        tmp_path,
        f'kafka_security_protocol = "SASL_SSL"\nkafka_ca_file = "{ca}"\n'
        f'api_key_file = "{key_file}"\n',
    )

    assert load(config=config).kafka_security_protocol == "SASL_SSL"
    assert load({"kafka_security_protocol": "PLAINTEXT"}, config=config).kafka_ca_file is None


def test_sasl_ssl_without_an_api_key_is_a_clear_config_error():
    with pytest.raises(ConfigError) as caught:
        load_settings({"store_id": "s1"}, {"INVCTL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})

    assert caught.value.code == "config.missing"
    assert "API key" in caught.value.message and "--api-key-file" in caught.value.message


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"STOREAGENT_KAFKA_SECURITY_PROTOCOL": "SSL"}, "kafka_security_protocol"),
        ({"STOREAGENT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "kafka_security_protocol"),
        (
            {"STOREAGENT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "STOREAGENT_KAFKA_CA_FILE": "/nope"},
            "kafka_ca_file",
        ),
    ],
    ids=["ssl-only", "sasl-without-tls", "missing-ca"],
)
def test_unsupported_kafka_security_is_config_invalid(env, field):
    with pytest.raises(ConfigError) as caught:
        load(env={"STOREAGENT_API_KEY": "k", **env})

    assert (caught.value.code, caught.value.details["field"]) == ("config.invalid", field)
