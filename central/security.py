"""Password hashing (scrypt), store API keys (random, stored as SHA-256) and JWTs."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from invwire.errors.central import AuthInvalid

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
API_KEY_PREFIX = "ik_"
JWT_ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)]
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, _unb64(digest))


@functools.cache
def dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so a login for an unknown
    user takes as long as one with a wrong password."""
    return hash_password(secrets.token_hex(8))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_api_key() -> str:
    """A store API key: 32 random bytes; only its SHA-256 is stored."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # Keys carry 256 bits of entropy, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class TokenConfig:
    secret: str
    issuer: str
    audience: str
    ttl_seconds: int


@dataclass(frozen=True)
class TokenClaims:
    """`subject` is the username, for people to read; authorization keys on `user_id` and
    `token_version` (claims `uid` and `ver`), which a token without them cannot pass."""

    subject: str
    role: str
    store_id: str | None
    user_id: int | None = None
    token_version: int | None = None


def issue_token(config: TokenConfig, claims: TokenClaims, now: datetime) -> str:
    payload = {
        "sub": claims.subject,
        "uid": claims.user_id,
        "ver": claims.token_version,
        "role": claims.role,
        "store": claims.store_id,
        "iss": config.issuer,
        "aud": config.audience,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=config.ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(payload, config.secret, algorithm=JWT_ALGORITHM)


def read_token(config: TokenConfig, token: str) -> TokenClaims:
    try:
        payload = jwt.decode(
            token,
            config.secret,
            algorithms=[JWT_ALGORITHM],
            audience=config.audience,
            issuer=config.issuer,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthInvalid("the token has expired; log in again") from None
    except jwt.PyJWTError:
        raise AuthInvalid("the token is invalid") from None
    return TokenClaims(
        str(payload["sub"]),
        str(payload.get("role", "")),
        payload.get("store"),
        _whole_number(payload.get("uid")),
        _whole_number(payload.get("ver")),
    )


def _whole_number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
