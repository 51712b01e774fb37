"""The agent's Kafka login (its own SCRAM user, the API key as the password) and how the
adapter names what kafka-python raises."""

import pytest
from kafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)

from invwire.errors.agent import KafkaAuthFailed, KafkaNotAuthorized, SourceUnavailable
from invwire.identity import kafka_username
from storeagent.sync.kafka_login import KafkaLogin
from storeagent.sync.kafka_source import translate


def test_plaintext_sends_no_credentials():
    login = KafkaLogin.for_store("PLAINTEXT", "s1", "sk-secret", "/ca.pem")

    assert login.client_config() == {"security_protocol": "PLAINTEXT"}
    assert not login.secure


def test_sasl_ssl_is_the_stores_scram_user_with_its_api_key_over_verified_tls():
    login = KafkaLogin.for_store("SASL_SSL", "s1", "sk-secret", "/ca.pem")

    assert login.client_config() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": kafka_username("s1", "sk-secret"),
        "sasl_plain_password": "sk-secret",
        "ssl_cafile": "/ca.pem",
        "ssl_check_hostname": True,
    }
    assert "sk-secret" not in repr(login)


def test_sasl_ssl_without_a_key_is_refused():
    with pytest.raises(ValueError):
        KafkaLogin.for_store("SASL_SSL", "s1", None)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (SaslAuthenticationFailedError("invalid credentials"), KafkaAuthFailed),
        (UnsupportedSaslMechanismError("no SCRAM-SHA-512"), KafkaAuthFailed),
        (TopicAuthorizationFailedError({"inventory-updated"}), KafkaNotAuthorized),
        (GroupAuthorizationFailedError("storeagent.s1"), KafkaNotAuthorized),
        (KafkaTimeoutError("Unable to bootstrap"), SourceUnavailable),
        (KafkaConnectionError("socket disconnected"), SourceUnavailable),
    ],
    ids=lambda value: type(value).__name__,
)
def test_kafka_errors_are_named_for_what_an_operator_does_about_them(error, expected):
    translated = translate(error)

    assert type(translated) is expected
    assert translated.message.startswith(type(error).__name__)


def test_refusals_are_codes_of_their_own_under_kafka_unavailable():
    assert (KafkaAuthFailed.code, KafkaNotAuthorized.code) == (
        "kafka.auth_failed",
        "kafka.not_authorized",
    )
    assert issubclass(KafkaAuthFailed, SourceUnavailable)
