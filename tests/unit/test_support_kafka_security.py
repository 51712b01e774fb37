"""tests/support/kafka_security.KafkaCluster: what central, the agents and test clients are
given for a secure cluster's client.env, and for a plaintext broker."""

import secrets
import stat

import pytest

from central.kafka import client_config
from central.settings import load
from harness.kafka_security import RELAY_USER, KafkaCluster
from invwire.identity import kafka_username


@pytest.fixture
def secure(tmp_path):
    (tmp_path / "admin.password").write_text("admin-secret\n")
    (tmp_path / "admin.password").chmod(0o600)
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "client.env").write_text(
        "# Written by scripts/kafka: how clients reach the sasl_ssl cluster in this dir.\n"
        "INVCTL_KAFKA_SECURITY_PROTOCOL=SASL_SSL\n"
        "INVCTL_KAFKA_SASL_MECHANISM=SCRAM-SHA-512\n"
        f"INVCTL_KAFKA_CA_FILE='{tmp_path / 'ca.pem'}'\n"
        "INVCTL_KAFKA_USERNAME=admin\n"
        f"INVCTL_KAFKA_PASSWORD_FILE={tmp_path / 'admin.password'}\n"
        "INVCTL_KAFKA=127.0.0.1:20092\n"
    )
    return KafkaCluster.from_client_env(tmp_path / "client.env", tmp_path / "clients")


def test_a_secure_clusters_admin_logs_in_over_verified_tls(secure, tmp_path):
    assert secure.bootstrap == "127.0.0.1:20092"
    assert secure.admin_config() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "admin",
        "sasl_plain_password": "admin-secret",
        "ssl_cafile": str(tmp_path / "ca.pem"),
        "ssl_check_hostname": True,
    }


def test_a_store_logs_in_as_its_keys_user_with_the_key(secure):
    login = secure.store_config("north", "ik_key")
    assert (login["sasl_plain_username"], login["sasl_plain_password"]) == (
        kafka_username("north", "ik_key"),
        "ik_key",
    )


def test_central_gets_the_admin_and_a_relay_user_whose_password_only_it_may_read(secure):
    env = secure.central_env()
    settings = load(
        env={
            **env,
            "INVCTL_JWT_SECRET": secrets.token_hex(32),
            "INVCTL_DATABASE_URL": "sqlite:///x",
        }
    )

    assert (settings.kafka_admin_username, settings.kafka_admin_password) == (
        "admin",
        "admin-secret",
    )
    assert client_config(settings)["sasl_plain_username"] == RELAY_USER
    relay_file = secure.relay_password_file()
    assert stat.S_IMODE(relay_file.stat().st_mode) == 0o600
    assert secure.central_env() == env, "the relay keeps its password"


def test_an_agent_gets_the_protocol_and_the_ca_but_no_credential(secure, tmp_path):
    assert secure.agent_env() == {
        "STOREAGENT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STOREAGENT_KAFKA_CA_FILE": str(tmp_path / "ca.pem"),
    }


def test_a_plaintext_broker_is_named_plaintext_everywhere_and_gets_no_users(tmp_path):
    plain = KafkaCluster.plaintext("127.0.0.1:19092", tmp_path)

    assert not plain.secure
    assert plain.admin_config() == {"security_protocol": "PLAINTEXT"}
    assert plain.central_env() == {
        "INVCTL_KAFKA": "127.0.0.1:19092",
        "INVCTL_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    }
    assert plain.agent_env() == {"STOREAGENT_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
    assert plain.identities("t.") is None
    assert plain.provision_store("north", "ik_key", "t.") == kafka_username("north", "ik_key")
