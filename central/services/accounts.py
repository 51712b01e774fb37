"""Users, stores and their API keys, and turning credentials into a Principal."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import peewee

from central import security
from central.domain.catalog import valid_name
from central.errors import (
    AuthInvalid,
    InvalidInput,
    InvalidRole,
    NotFound,
    StoreExists,
    StoreNotFound,
    UserExists,
    WeakPassword,
)
from central.models import ApiKey, Store, User, as_utc
from central.services.identities import (
    KafkaIdentities,
    key_identity,
    key_username,
    queue_revocation,
    revoke_now,
)
from central.services.principal import USER_ROLES, Principal, Role
from central.uow import UnitOfWork
from invwire.identity import kafka_username
from invwire.rules import is_store_id

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


@dataclass(frozen=True)
class NewUser:
    username: str
    password: str
    role: str
    store_id: str | None = None


def user_view(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "role": user.role, "store_id": user.store_id}


def create_user(uow: UnitOfWork, new: NewUser) -> dict[str, Any]:
    if not isinstance(new.username, str) or not USERNAME.fullmatch(new.username):
        raise InvalidInput("username: 1-64 letters, digits, '.', '_', '@' or '-'", field="username")
    if new.role not in USER_ROLES:
        raise InvalidRole(role=str(new.role)[:20])
    if not MIN_PASSWORD <= len(new.password) <= MAX_PASSWORD:
        raise WeakPassword()
    password_hash = security.hash_password(new.password)
    with uow:
        if new.store_id is not None and Store.get_or_none(Store.id == new.store_id) is None:
            raise StoreNotFound(store_id=new.store_id)
        if User.get_or_none(User.username == new.username) is not None:
            raise UserExists(username=new.username)
        try:
            user = User.create(
                username=new.username,
                password_hash=password_hash,
                role=new.role,
                store_id=new.store_id,
            )
        except peewee.IntegrityError:
            raise UserExists(username=new.username) from None
    return user_view(user)


def list_users(uow: UnitOfWork) -> list[dict[str, Any]]:
    with uow.db.connection_context():
        return [user_view(u) for u in User.select().order_by(User.id)]


def authenticate(uow: UnitOfWork, username: str, password: str) -> Principal:
    with uow.db.connection_context():
        user = User.get_or_none(User.username == username)
    stored = user.password_hash if user is not None else security.dummy_hash()
    if not security.verify_password(password, stored) or user is None or not user.active:
        raise AuthInvalid("wrong username or password")
    return Principal(user.username, Role(user.role), user.store_id)


def user_principal(uow: UnitOfWork, username: str) -> Principal:
    """The current role of a token's user: a removed or disabled user loses access at once."""
    with uow.db.connection_context():
        user = User.get_or_none(User.username == username)
    if user is None or not user.active:
        raise AuthInvalid("the token's user no longer exists")
    return Principal(user.username, Role(user.role), user.store_id)


def store_principal(uow: UnitOfWork, api_key: str) -> Principal:
    key_hash = security.hash_api_key(api_key)
    with uow.db.connection_context():
        row = (
            ApiKey.select(ApiKey, Store)
            .join(Store)
            .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_null(), Store.active)
            .get_or_none()
        )
    if row is None:
        raise AuthInvalid("the API key is invalid or revoked")
    return Principal(row.store.id, Role.STORE, row.store.id)


def create_store(
    uow: UnitOfWork, store_id: str, name: str, identities: KafkaIdentities | None = None
) -> dict[str, Any]:
    """A store and its first key. With `identities`, the key's Kafka user is made first: if
    Kafka does not answer, nothing is created (KafkaUnavailable)."""
    if not is_store_id(store_id):
        raise InvalidInput("store id: 1-64 of a-z, 0-9 and '-'", field="id")
    name = valid_name(name)
    with uow.db.connection_context():
        if Store.get_or_none(Store.id == store_id) is not None:
            raise StoreExists(store_id=store_id)
    key = security.new_api_key()
    with key_identity(uow, identities, store_id, key), uow:
        if Store.get_or_none(Store.id == store_id) is not None:
            raise StoreExists(store_id=store_id)
        try:
            Store.create(id=store_id, name=name)
        except peewee.IntegrityError:
            raise StoreExists(store_id=store_id) from None
        key_row = _save_key(uow, store_id, key)
    return {
        "id": store_id,
        "name": name,
        "api_key": key,
        "key_id": key_row.id,
        "kafka_username": _kafka_user(identities, store_id, key),
    }


def list_stores(uow: UnitOfWork) -> list[dict[str, Any]]:
    with uow.db.connection_context():
        active = peewee.fn.SUM(peewee.Case(None, [(ApiKey.revoked_at.is_null(), 1)], 0))
        query = (
            Store.select(Store, active.alias("active_keys"))
            .join(ApiKey, peewee.JOIN.LEFT_OUTER)
            .group_by(Store.id)
            .order_by(Store.id)
        )
        return [
            {
                "id": s.id,
                "name": s.name,
                "active": s.active,
                "active_keys": int(getattr(s, "active_keys", 0) or 0),
                "created_at": as_utc(s.created_at),
            }
            for s in query
        ]


def rotate_key(
    uow: UnitOfWork, store_id: str, identities: KafkaIdentities | None = None
) -> dict[str, Any]:
    """A new key; existing keys stay valid until revoked, so agents can switch without downtime.
    With `identities` the new key gets its own Kafka user first, as in create_store."""
    with uow.db.connection_context():
        if Store.get_or_none(Store.id == store_id) is None:
            raise StoreNotFound(store_id=store_id)
    key = security.new_api_key()
    with key_identity(uow, identities, store_id, key), uow:
        if Store.get_or_none(Store.id == store_id) is None:
            raise StoreNotFound(store_id=store_id)
        row = _save_key(uow, store_id, key)
    return {
        "id": store_id,
        "api_key": key,
        "key_id": row.id,
        "kafka_username": _kafka_user(identities, store_id, key),
    }


def _kafka_user(identities: KafkaIdentities | None, store_id: str, key: str) -> str | None:
    return kafka_username(store_id, key) if identities is not None else None


def revoke_key(
    uow: UnitOfWork, store_id: str, key_id: int, identities: KafkaIdentities | None = None
) -> None:
    """The key stops working at once; its Kafka user is queued for deletion in the same
    transaction, then deleted (or left to the retrier while Kafka is unreachable)."""
    with uow:
        row = ApiKey.get_or_none(ApiKey.id == key_id, ApiKey.store == store_id)
        if row is None:
            raise NotFound("no such key for this store", store_id=store_id, key_id=key_id)
        updated = (
            ApiKey.update(revoked_at=uow.clock.now())
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_null())
            .execute()
        )
        username = key_username(store_id, row.key_hash)
        if updated and identities is not None:
            queue_revocation(username)
    if updated and identities is not None:
        revoke_now(uow, identities, username)


def _save_key(uow: UnitOfWork, store_id: str, key: str) -> ApiKey:
    return ApiKey.create(
        store=store_id,
        key_hash=security.hash_api_key(key),
        prefix=key[:10],
        created_at=uow.clock.now(),
    )
