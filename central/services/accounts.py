"""Users, stores and their API keys, and turning credentials into a Principal."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee

from central import security
from central.db import locked
from central.domain.catalog import valid_name
from central.models import ApiKey, Store, User, as_utc
from central.rows import Statement
from central.security import TokenClaims
from central.services import fleet
from central.services.allowances import return_store_grants
from central.services.identities import (
    KafkaIdentities,
    key_identity,
    key_username,
    queue_revocation,
    revoke_now,
)
from central.services.principal import SYSTEM, USER_ROLES, Principal, Role
from central.services.throttle import UNCOUNTED, Attempts
from central.uow import UnitOfWork
from invwire.errors.central import (
    AuthInvalid,
    Forbidden,
    InvalidInput,
    InvalidRole,
    LastAdmin,
    NotFound,
    StaffStoreInactive,
    StoreExists,
    StoreInactive,
    StoreNotFound,
    UserExists,
    UserNotFound,
    WeakPassword,
    WrongPassword,
)
from invwire.identity import kafka_username
from invwire.rules import is_store_id

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# Read on every store request, and never kept: a key revoked (or a store deactivated) is
# refused by the next request, in every process. A prepared statement, not a peewee query:
# building the query and its model rows cost more than the lookup itself.
KEY_OWNER = Statement(
    'SELECT "s"."id", "k"."revoked_at", "s"."active" FROM "store_api_keys" AS "k" '
    'JOIN "stores" AS "s" ON "s"."id" = "k"."store_id" WHERE "k"."key_hash" = ?'
)


@dataclass(frozen=True)
class NewUser:
    username: str
    password: str
    role: str
    store_id: str | None = None


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "store_id": user.store_id,
        "active": user.active,
    }


def create_user(uow: UnitOfWork, new: NewUser) -> dict[str, Any]:
    if not isinstance(new.username, str) or not USERNAME.fullmatch(new.username):
        raise InvalidInput("username: 1-64 letters, digits, '.', '_', '@' or '-'", field="username")
    if new.role not in USER_ROLES:
        raise InvalidRole(role=str(new.role)[:20])
    password_hash = _new_password_hash(new.password)
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


def authenticate(
    uow: UnitOfWork, username: str, password: str, attempts: Attempts = UNCOUNTED
) -> TokenClaims:
    """The claims of a token for this user. The attempt is counted first (when `attempts` has
    a throttle) and refused (429 auth.throttled) while the username or the address is locked."""
    with attempts.counted(uow, username):
        with uow.db.connection_context():
            user = User.get_or_none(User.username == username)
        stored = user.password_hash if user is not None else security.dummy_hash()
        if not security.verify_password(password, stored) or user is None or not user.active:
            raise AuthInvalid("wrong username or password")
    return token_claims(user)


def token_claims(user: User) -> TokenClaims:
    return TokenClaims(user.username, user.role, user.store_id, user.id, user.token_version)


def user_principal(uow: UnitOfWork, claims: TokenClaims) -> Principal:
    """The token's user as of now, found by id: a user removed, disabled or whose tokens were
    revoked (token version bumped) since the token was issued loses access at once, and a
    user re-created under the same name never inherits the old one's tokens."""
    if claims.user_id is None or claims.token_version is None:
        raise AuthInvalid("the token is no longer valid; log in again")
    with uow.db.connection_context():
        user = User.get_or_none(User.id == claims.user_id)
        if user is None or not user.active or user.token_version != claims.token_version:
            raise AuthInvalid("the token is no longer valid; log in again")
        if user.role == Role.STAFF and user.store_id is not None:
            _refuse_if_store_inactive(user.store_id)
    return Principal(user.username, Role(user.role), user.store_id, user.id)


def _refuse_if_store_inactive(store_id: str) -> None:
    store = Store.get_or_none(Store.id == store_id)
    if store is not None and not store.active:
        raise StaffStoreInactive(
            f"your store {store_id} is deactivated; an admin can activate it again",
            store_id=store_id,
        )


# --- a user's life: disable, enable, role, password, token revocation ------------------------


def disable_user(uow: UnitOfWork, user_id: int) -> dict[str, Any]:
    """The user can no longer log in, and every token it holds stops working."""

    def disable(user: User, admins: list[User]) -> None:
        _keep_an_admin(user, admins, still_admin=False)
        user.active = False

    return _change_user(uow, user_id, disable, revoke=True)


def enable_user(uow: UnitOfWork, user_id: int) -> dict[str, Any]:
    """The user may log in again (tokens from before it was disabled stay revoked)."""

    def enable(user: User, _: list[User]) -> None:
        user.active = True

    return _change_user(uow, user_id, enable, revoke=False)


def change_role(
    uow: UnitOfWork, user_id: int, role: str, store_id: str | None = None
) -> dict[str, Any]:
    """A new role (and, for staff, store); the user's tokens are revoked, so the next login
    carries the new role."""
    if role not in USER_ROLES:
        raise InvalidRole(role=str(role)[:20])
    if store_id is not None and role != Role.STAFF:
        raise InvalidInput("only staff are bound to a store", field="store_id")

    def assign(user: User, admins: list[User]) -> None:
        if store_id is not None and Store.get_or_none(Store.id == store_id) is None:
            raise StoreNotFound(store_id=store_id)
        _keep_an_admin(user, admins, still_admin=role == Role.ADMIN)
        user.role, user.store_id = role, store_id

    return _change_user(uow, user_id, assign, revoke=True)


def reset_password(uow: UnitOfWork, user_id: int, password: str) -> dict[str, Any]:
    """An admin sets a new password; the user's tokens are revoked."""
    password_hash = _new_password_hash(password)

    def reset(user: User, _: list[User]) -> None:
        user.password_hash = password_hash

    return _change_user(uow, user_id, reset, revoke=True)


def revoke_tokens(uow: UnitOfWork, user_id: int) -> dict[str, Any]:
    """Every token issued to the user so far stops working; logging in again works."""
    return _change_user(uow, user_id, lambda _user, _admins: None, revoke=True)


def change_own_password(
    uow: UnitOfWork, principal: Principal, current: str, new: str, attempts: Attempts = UNCOUNTED
) -> TokenClaims:
    """A signed-in user changes its password: every token it holds is revoked and the
    claims of a fresh one are returned. A wrong current password (422 password.wrong)
    counts as a failed login for throttling."""
    if principal.user_id is None:
        raise Forbidden("only a user signed in with a token has a password to change")
    password_hash = _new_password_hash(new)
    with attempts.counted(uow, principal.subject):
        with uow.db.connection_context():
            user = User.get_or_none(User.id == principal.user_id)
        if user is None or not security.verify_password(current, user.password_hash):
            raise WrongPassword(field="current_password")
    with uow:
        user = locked(User.select().where(User.id == principal.user_id)).get_or_none()
        if user is None or not user.active:  # disabled while the password was checked
            raise AuthInvalid("the token is no longer valid; log in again")
        user.password_hash = password_hash
        user.token_version += 1
        user.save()
    return token_claims(user)


Change = Callable[[User, list[User]], None]


def _change_user(uow: UnitOfWork, user_id: int, change: Change, *, revoke: bool) -> dict[str, Any]:
    """`change(user, active_admins)` in one transaction; the active admins are locked first,
    in id order, so two admins demoting each other at once cannot both succeed."""
    with uow:
        admins = list(
            locked(User.select().where(User.role == Role.ADMIN, User.active).order_by(User.id))
        )
        user = locked(User.select().where(User.id == user_id)).get_or_none()
        if user is None:
            raise UserNotFound(user_id=user_id)
        change(user, admins)
        if revoke:
            user.token_version += 1
        user.save()
    return user_view(user)


def _keep_an_admin(user: User, admins: list[User], *, still_admin: bool) -> None:
    """Refuse to take away the only active admin (nobody could undo it over the API)."""
    if not still_admin and [admin.id for admin in admins] == [user.id]:
        raise LastAdmin(user_id=user.id, username=user.username)


def _new_password_hash(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise WeakPassword()
    return security.hash_password(password)


def store_principal(uow: UnitOfWork, api_key: str) -> Principal:
    """The store whose active key this is. A key of the store's that central refuses (revoked,
    or the store deactivated) is noted for the fleet view (`auth_failed`); an unknown key
    names no store, so nothing is noted. Either way the answer is the same 401."""
    key_hash = security.hash_api_key(api_key)
    with uow.db.connection_context():
        row = KEY_OWNER.run(uow.db, [key_hash]).fetchone()
    if row is None:
        raise AuthInvalid("the API key is invalid or revoked")
    store_id, revoked_at, active = row
    if revoked_at is not None or not Store.active.python_value(active):
        fleet.record_refusal(uow, store_id)
        raise AuthInvalid("the API key is invalid or revoked")
    return Principal(store_id, Role.STORE, store_id)


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
        return _store_rows()


def _store_rows(store_id: str | None = None) -> list[dict[str, Any]]:
    active = peewee.fn.SUM(peewee.Case(None, [(ApiKey.revoked_at.is_null(), 1)], 0))
    query = (
        Store.select(Store, active.alias("active_keys"))
        .join(ApiKey, peewee.JOIN.LEFT_OUTER)
        .group_by(Store.id)
        .order_by(Store.id)
    )
    if store_id is not None:
        query = query.where(Store.id == store_id)
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


def deactivate_store(
    uow: UnitOfWork,
    store_id: str,
    identities: KafkaIdentities | None = None,
    by: Principal = SYSTEM,
) -> dict[str, Any]:
    """The store is refused from now on: its API keys are all revoked (their Kafka users
    queued for deletion in the same transaction, then deleted, as `revoke_key` does), and
    neither its agent nor its staff may sell for it. Its allowances are returned at once:
    it can replay no sale under them. Deactivating twice changes nothing."""
    with uow:
        if locked(Store.select().where(Store.id == store_id)).get_or_none() is None:
            raise StoreNotFound(store_id=store_id)
        Store.update(active=False).where(Store.id == store_id).execute()
        return_store_grants(uow, by, store_id)
        keys = list(
            locked(ApiKey.select().where(ApiKey.store == store_id, ApiKey.revoked_at.is_null()))
        )
        if keys:
            ApiKey.update(revoked_at=uow.clock.now()).where(
                ApiKey.id.in_([key.id for key in keys])
            ).execute()
        usernames = [key_username(store_id, key.key_hash) for key in keys]
        if identities is not None:
            for username in usernames:
                queue_revocation(username)
    if identities is not None:
        for username in usernames:
            revoke_now(uow, identities, username)
    return {**_store_view(uow, store_id), "revoked_keys": len(keys)}


def activate_store(uow: UnitOfWork, store_id: str) -> dict[str, Any]:
    """The store is accepted again; its old keys stay revoked (issue a new one)."""
    with uow:
        if Store.get_or_none(Store.id == store_id) is None:
            raise StoreNotFound(store_id=store_id)
        Store.update(active=True).where(Store.id == store_id).execute()
    return _store_view(uow, store_id)


def _store_view(uow: UnitOfWork, store_id: str) -> dict[str, Any]:
    with uow.db.connection_context():
        rows = _store_rows(store_id)
    if not rows:
        raise StoreNotFound(store_id=store_id)
    return rows[0]


def rotate_key(
    uow: UnitOfWork, store_id: str, identities: KafkaIdentities | None = None
) -> dict[str, Any]:
    """A new key; existing keys stay valid until revoked, so agents can switch without downtime.
    With `identities` the new key gets its own Kafka user first, as in create_store."""
    with uow.db.connection_context():
        _active_store(Store.select().where(Store.id == store_id), store_id)
    key = security.new_api_key()
    with key_identity(uow, identities, store_id, key), uow:
        # Locked: a deactivation committing meanwhile would leave this key (and its Kafka
        # user) alive on an inactive store.
        _active_store(locked(Store.select().where(Store.id == store_id)), store_id)
        row = _save_key(uow, store_id, key)
    return {
        "id": store_id,
        "api_key": key,
        "key_id": row.id,
        "kafka_username": _kafka_user(identities, store_id, key),
    }


def list_keys(uow: UnitOfWork, store_id: str) -> list[dict[str, Any]]:
    """The store's API keys, revoked ones too, by id: what finds the id of the key to revoke.
    Never the key nor its hash: only the prefix shown when it was issued."""
    with uow.db.connection_context():
        if Store.get_or_none(Store.id == store_id) is None:
            raise StoreNotFound(store_id=store_id)
        keys = ApiKey.select().where(ApiKey.store == store_id).order_by(ApiKey.id)
        return [_key_view(key) for key in keys]


def _key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "created_at": as_utc(key.created_at),
        "revoked_at": as_utc(key.revoked_at),
        "active": key.revoked_at is None,
    }


def _active_store(query: peewee.ModelSelect[Store], store_id: str) -> Store:
    store = query.get_or_none()
    if store is None:
        raise StoreNotFound(store_id=store_id)
    if not store.active:
        raise StoreInactive(store_id=store_id)
    return store


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
