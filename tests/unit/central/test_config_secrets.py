"""Central's settings refuse a guessable JWT secret, a token lifetime out of bounds, an unknown
log level and half a TLS configuration, each with one line that names the setting."""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

import pytest

from central.settings import Settings, load, secret_weakness
from invwire.errors.central import ConfigError, ConfigFileInsecure

DB = {"INVCTL_DATABASE_URL": "sqlite:///x.db"}


def load_env(**env: str) -> Settings:
    return load(env={**DB, "INVCTL_JWT_SECRET": secrets.token_hex(32), **env})


@pytest.mark.parametrize(
    "secret",
    [
        " " * 32,
        "a" * 32,
        "ab" * 16,
        "0123456789" * 4,  # ten different characters, but one piece repeated
        "a" * 30 + "bcdefghijkl",  # eleven different characters, nearly all one of them
    ],
    ids=["spaces", "one-letter", "two-letters", "repeated-piece", "mostly-one-letter"],
)
def test_a_long_but_guessable_secret_is_refused_without_echoing_it(secret: str) -> None:
    with pytest.raises(ConfigError, match="INVCTL_JWT_SECRET is guessable") as caught:
        load_env(INVCTL_JWT_SECRET=secret)

    assert secret not in caught.value.message
    assert "openssl rand -hex 32" in caught.value.message


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_hex(32),
        lambda: secrets.token_urlsafe(32),
        lambda: secrets.token_hex(24),
    ],
    ids=["hex-32-bytes", "urlsafe-32-bytes", "hex-24-bytes"],
)
def test_random_secrets_are_accepted(make) -> None:
    for _ in range(200):  # random, so many of them: none may be refused
        secret = make()
        assert secret_weakness(secret) is None, secret


def test_openssl_rand_hex_32_is_accepted() -> None:
    made = subprocess.run(
        ["openssl", "rand", "-hex", "32"], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert load_env(INVCTL_JWT_SECRET=made).jwt_secret == made


def test_dev_mode_accepts_a_weak_secret_of_the_right_length() -> None:
    settings = load({"dev": True}, env={**DB, "INVCTL_JWT_SECRET": "a" * 32})

    assert settings.jwt_secret == "a" * 32


@pytest.mark.parametrize("ttl", ["0", "59", "86401", "999999999999", "-5"])
def test_a_token_lifetime_outside_a_minute_to_a_day_is_refused(ttl: str) -> None:
    with pytest.raises(ConfigError, match=r"INVCTL_TOKEN_TTL .* 60 to 86400 seconds"):
        load_env(INVCTL_TOKEN_TTL=ttl)


@pytest.mark.parametrize("ttl", ["60", "3600", "86400"])
def test_a_token_lifetime_within_bounds_is_kept(ttl: str) -> None:
    assert load_env(INVCTL_TOKEN_TTL=ttl).token_ttl_seconds == int(ttl)


def test_an_unknown_log_level_is_refused_naming_the_levels() -> None:
    with pytest.raises(ConfigError, match=r"INVCTL_LOG_LEVEL .* DEBUG, INFO, WARNING.*'LOUD'"):
        load_env(INVCTL_LOG_LEVEL="LOUD")


def test_a_log_level_in_any_case_is_accepted_and_upper_cased() -> None:
    assert load_env(INVCTL_LOG_LEVEL="warning").log_level == "WARNING"


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(ConfigError, match="port must be 0 to 65535"):
        load({"port": port}, env={**DB, "INVCTL_JWT_SECRET": secrets.token_hex(32)})


def pem_pair(tmp_path: Path, key_mode: int = 0o600) -> tuple[Path, Path]:
    """Files that exist but hold no certificate: enough for every check before loading."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    key.chmod(key_mode)
    return cert, key


@pytest.mark.parametrize("given", ["INVCTL_SSL_CERTFILE", "INVCTL_SSL_KEYFILE"])
def test_a_certificate_without_its_key_or_a_key_without_its_certificate_is_refused(
    tmp_path: Path, given: str
) -> None:
    cert, _ = pem_pair(tmp_path)

    with pytest.raises(ConfigError, match="go together: set both for HTTPS, or neither"):
        load_env(**{given: str(cert)})


def test_a_missing_tls_file_is_named(tmp_path: Path) -> None:
    _, key = pem_pair(tmp_path)
    missing = tmp_path / "nope.pem"

    with pytest.raises(ConfigError, match=f"cannot read TLS file {re.escape(str(missing))}"):
        load_env(INVCTL_SSL_CERTFILE=str(missing), INVCTL_SSL_KEYFILE=str(key))


def test_a_tls_key_others_may_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    cert, key = pem_pair(tmp_path, key_mode=0o640)

    with pytest.raises(ConfigFileInsecure, match=f"TLS key file {re.escape(str(key))} .*chmod 600"):
        load_env(INVCTL_SSL_CERTFILE=str(cert), INVCTL_SSL_KEYFILE=str(key))


def test_files_that_are_no_certificate_and_key_are_refused_at_start(tmp_path: Path) -> None:
    cert, key = pem_pair(tmp_path)

    with pytest.raises(ConfigError, match=f"cannot use the TLS certificate {re.escape(str(cert))}"):
        load_env(INVCTL_SSL_CERTFILE=str(cert), INVCTL_SSL_KEYFILE=str(key))
