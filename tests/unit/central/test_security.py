from datetime import timedelta

import jwt
import pytest

from central import security
from central.models import utcnow
from invwire.errors.central import AuthInvalid

CONFIG = security.TokenConfig("s" * 40, "invctl-central", "invctl", 60)
CLAIMS = security.TokenClaims("alice", "admin", None)


def test_password_hash_is_scrypt_and_verifies():
    stored = security.hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert security.verify_password("correct horse", stored)
    assert not security.verify_password("wrong", stored)


def test_same_password_hashes_differently_each_time():
    assert security.hash_password("pw123456") != security.hash_password("pw123456")


def test_garbage_hash_never_verifies():
    assert not security.verify_password("x", "not-a-hash")


def test_api_keys_are_long_random_and_stored_as_sha256():
    key = security.new_api_key()
    assert len(key) >= 43 and key != security.new_api_key()
    assert len(security.hash_api_key(key)) == 64 and key not in security.hash_api_key(key)


def test_token_round_trip():
    token = security.issue_token(CONFIG, CLAIMS, utcnow())
    assert security.read_token(CONFIG, token) == CLAIMS


def test_expired_token_is_refused():
    token = security.issue_token(CONFIG, CLAIMS, utcnow() - timedelta(seconds=120))
    with pytest.raises(AuthInvalid, match="expired"):
        security.read_token(CONFIG, token)


def test_tampered_token_is_refused():
    token = security.issue_token(CONFIG, CLAIMS, utcnow())
    forged = jwt.encode(
        {**jwt.decode(token, options={"verify_signature": False}), "role": "admin"},
        "another-secret-of-sufficient-length!!!!",
        algorithm="HS256",
    )
    with pytest.raises(AuthInvalid):
        security.read_token(CONFIG, forged)


@pytest.mark.parametrize("field", ["audience", "issuer"])
def test_token_for_another_audience_or_issuer_is_refused(field):
    other = security.TokenConfig(**{**CONFIG.__dict__, field: "someone-else"})
    token = security.issue_token(other, CLAIMS, utcnow())
    with pytest.raises(AuthInvalid):
        security.read_token(CONFIG, token)
