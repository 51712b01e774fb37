"""Kafka security settings: how central's clients authenticate, where passwords come from,
and that they never show up where settings are printed."""

from __future__ import annotations

import os
import secrets

import pytest

from central.app import build_identities, relay_access
from central.domain.kafka_access import Grant, Operation, Resource
from central.kafka import client_config
from central.settings import load
from invwire.errors.central import ConfigError
from tests.support.kafka_identities_fake import FakeKafkaIdentities

SECRET = secrets.token_hex(32)


def secret_file(tmp_path, name: str, text: str, mode: int = 0o600):
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


@pytest.fixture
def secure_env(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    return {
        "INVCTL_JWT_SECRET": SECRET,
        "INVCTL_DATABASE_URL": "sqlite:///x.db",
        "INVCTL_KAFKA": "broker:9093",
        "INVCTL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "INVCTL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "INVCTL_KAFKA_CA_FILE": str(ca),
        "INVCTL_KAFKA_USERNAME": "central-relay",
        "INVCTL_KAFKA_PASSWORD_FILE": str(secret_file(tmp_path, "relay.pw", "relay-secret")),
        "INVCTL_KAFKA_ADMIN_USERNAME": "admin",
        "INVCTL_KAFKA_ADMIN_PASSWORD_FILE": str(secret_file(tmp_path, "admin.pw", "admin-secret")),
    }


def test_sasl_ssl_is_the_default_and_needs_no_login_while_kafka_is_not_configured():
    settings = load(env={"INVCTL_JWT_SECRET": SECRET, "INVCTL_DATABASE_URL": "sqlite:///x"})
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert build_identities(settings) is None


def test_kafka_without_a_login_is_refused_naming_the_settings_and_the_plaintext_way_out():
    env = {"INVCTL_JWT_SECRET": SECRET, "INVCTL_DATABASE_URL": "sqlite:///x"}
    with pytest.raises(ConfigError) as refused:
        load(env={**env, "INVCTL_KAFKA": "broker:9093"})
    message = str(refused.value)
    assert "SASL_SSL (the default)" in message
    assert "set INVCTL_KAFKA_USERNAME and INVCTL_KAFKA_PASSWORD_FILE" in message
    assert "INVCTL_KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in message


def test_plaintext_only_when_asked_for_and_then_sends_no_credentials():
    env = {"INVCTL_JWT_SECRET": SECRET, "INVCTL_DATABASE_URL": "sqlite:///x"}
    settings = load(
        env={**env, "INVCTL_KAFKA": "broker:9092", "INVCTL_KAFKA_SECURITY_PROTOCOL": "plaintext"}
    )
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert client_config(settings) == {"security_protocol": "PLAINTEXT"}
    assert build_identities(settings) is None


def test_sasl_ssl_clients_verify_the_broker_and_log_in_with_the_password_files(secure_env):
    settings = load(env=secure_env)
    assert client_config(settings) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "central-relay",
        "sasl_plain_password": "relay-secret",
        "ssl_cafile": secure_env["INVCTL_KAFKA_CA_FILE"],
        "ssl_check_hostname": True,
    }
    admin = client_config(settings, admin=True)
    assert (admin["sasl_plain_username"], admin["sasl_plain_password"]) == ("admin", "admin-secret")
    assert build_identities(settings) is not None


def test_without_an_admin_credential_admin_work_uses_centrals_own(secure_env):
    del secure_env["INVCTL_KAFKA_ADMIN_USERNAME"], secure_env["INVCTL_KAFKA_ADMIN_PASSWORD_FILE"]
    settings = load(env=secure_env)
    assert client_config(settings, admin=True) == client_config(settings)
    assert build_identities(settings) is None


def test_the_password_may_come_from_the_environment(secure_env):
    del secure_env["INVCTL_KAFKA_PASSWORD_FILE"]
    secure_env["INVCTL_KAFKA_PASSWORD"] = "from-env"
    assert client_config(load(env=secure_env))["sasl_plain_password"] == "from-env"


def test_passwords_are_not_in_the_repr(secure_env):
    text = repr(load(env=secure_env))
    assert "relay-secret" not in text and "admin-secret" not in text


@pytest.mark.parametrize(
    "variable", ["INVCTL_KAFKA_PASSWORD_FILE", "INVCTL_KAFKA_ADMIN_PASSWORD_FILE"]
)
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_password_file_others_may_read_is_refused_with_the_fix(secure_env, variable, mode):
    os.chmod(secure_env[variable], mode)
    with pytest.raises(ConfigError, match=f"{variable} .* other users.*chmod 600"):
        load(env=secure_env)


def test_a_missing_password_file_is_named(secure_env, tmp_path):
    secure_env["INVCTL_KAFKA_PASSWORD_FILE"] = str(tmp_path / "nope")
    with pytest.raises(ConfigError, match="cannot read INVCTL_KAFKA_PASSWORD_FILE"):
        load(env=secure_env)


def test_sasl_ssl_without_centrals_username_is_refused_naming_it(secure_env):
    del secure_env["INVCTL_KAFKA_USERNAME"]
    with pytest.raises(ConfigError, match="own Kafka login: set INVCTL_KAFKA_USERNAME;"):
        load(env=secure_env)


def test_sasl_ssl_without_centrals_password_is_refused_naming_it(secure_env):
    del secure_env["INVCTL_KAFKA_PASSWORD_FILE"]
    with pytest.raises(
        ConfigError, match=r"set INVCTL_KAFKA_PASSWORD_FILE \(or INVCTL_KAFKA_PASSWORD\);"
    ):
        load(env=secure_env)


def test_a_missing_ca_file_is_named(secure_env, tmp_path):
    secure_env["INVCTL_KAFKA_CA_FILE"] = str(tmp_path / "no-ca.pem")
    with pytest.raises(ConfigError, match=r"INVCTL_KAFKA_CA_FILE .*no-ca\.pem is not a file"):
        load(env=secure_env)


def test_an_admin_username_without_its_password_is_refused(secure_env):
    del secure_env["INVCTL_KAFKA_ADMIN_PASSWORD_FILE"]
    with pytest.raises(ConfigError, match="go together"):
        load(env=secure_env)


def test_both_a_password_and_a_password_file_is_refused(secure_env):
    secure_env["INVCTL_KAFKA_PASSWORD"] = "also"
    with pytest.raises(ConfigError, match="not both"):
        load(env=secure_env)


def test_credentials_with_plaintext_are_refused(secure_env):
    secure_env["INVCTL_KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"
    with pytest.raises(ConfigError, match="PLAINTEXT"):
        load(env=secure_env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("INVCTL_KAFKA_SECURITY_PROTOCOL", "SSL"), ("INVCTL_KAFKA_SASL_MECHANISM", "PLAIN")],
)
def test_an_unsupported_protocol_or_mechanism_is_refused(secure_env, variable, value):
    secure_env[variable] = value
    with pytest.raises(ConfigError, match=variable):
        load(env=secure_env)


def test_the_relay_user_is_granted_write_and_describe_on_the_wire_topics_only(secure_env):
    secure_env["INVCTL_TOPIC_PREFIX"] = "t."
    settings = load(env=secure_env)
    kafka = FakeKafkaIdentities("t.")
    grant = relay_access(settings, kafka)
    assert grant is not None
    grant()
    topics = ["t.new-category", "t.new-product", "t.inventory-updated", "t.order-updated"]
    ops = (Operation.WRITE, Operation.DESCRIBE)
    assert kafka.passwords == {"central-relay": "relay-secret"}
    assert kafka.acls == {
        "central-relay": {Grant(Resource.TOPIC, t, o) for t in topics for o in ops}
    }


def test_a_relay_running_as_the_admin_is_granted_nothing(secure_env):
    secure_env["INVCTL_KAFKA_USERNAME"] = "admin"
    settings = load(env=secure_env)
    assert relay_access(settings, FakeKafkaIdentities()) is None
