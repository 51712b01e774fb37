"""A token names its user by id and token version: authorization reads the user as it is now,
so a disabled, revoked, removed or re-created user never acts on an old token."""

from __future__ import annotations

import pytest

from central import security
from central.models import User
from central.security import TokenClaims
from central.services import accounts
from central.services.principal import Role
from invwire.errors.central import AuthInvalid, StaffStoreInactive
from tests.support.accounts import PASSWORD, make_user

CONFIG = security.TokenConfig("s" * 40, "invctl-central", "invctl", 60)


def login(central, username: str, password: str = PASSWORD) -> TokenClaims:
    """The claims a fresh token carries, read back from the signed token."""
    claims = accounts.authenticate(central.uow(), username, password)
    token = security.issue_token(CONFIG, claims, central.clock.now())
    return security.read_token(CONFIG, token)


def test_a_token_carries_the_users_id_and_token_version(central):
    user = make_user(central.uow(), "ops")

    claims = login(central, user["username"])

    with central.db.connection_context():
        version = User.get_by_id(user["id"]).token_version
    assert (claims.subject, claims.user_id, claims.token_version) == (
        user["username"],
        user["id"],
        version,
    )
    assert accounts.user_principal(central.uow(), claims).user_id == user["id"]


def test_a_token_without_a_user_id_or_version_is_refused(central):
    user = make_user(central.uow(), "admin")
    for claims in (
        TokenClaims(user["username"], "admin", None),
        TokenClaims(user["username"], "admin", None, user["id"], None),
    ):
        with pytest.raises(AuthInvalid):
            accounts.user_principal(central.uow(), claims)


def test_a_token_whose_user_id_does_not_exist_is_refused(central):
    with pytest.raises(AuthInvalid):
        accounts.user_principal(central.uow(), TokenClaims("ghost", "admin", None, 9999, 1))


def test_a_deleted_and_re_created_username_does_not_inherit_the_old_tokens(central):
    old = make_user(central.uow(), "staff", username="sam")
    claims = login(central, "sam")
    with central.db.connection_context():
        User.delete().where(User.id == old["id"]).execute()

    new = make_user(central.uow(), "admin", username="sam")

    assert new["id"] == old["id"], "SQLite hands the freed row id out again"
    with pytest.raises(AuthInvalid):
        accounts.user_principal(central.uow(), claims)
    assert accounts.user_principal(central.uow(), login(central, "sam")).role == Role.ADMIN


def test_the_role_comes_from_the_user_not_from_the_token(central):
    user = make_user(central.uow(), "ops")
    claims = login(central, user["username"])
    forged = TokenClaims(claims.subject, "admin", None, claims.user_id, claims.token_version)

    assert accounts.user_principal(central.uow(), forged).role == Role.OPS


def test_a_disabled_users_token_is_refused(central):
    make_user(central.uow(), "admin")
    user = make_user(central.uow(), "ops")
    claims = login(central, user["username"])

    accounts.disable_user(central.uow(), user["id"])

    with pytest.raises(AuthInvalid):
        accounts.user_principal(central.uow(), claims)


def test_a_token_older_than_the_users_version_is_refused(central):
    user = make_user(central.uow(), "ops")
    old = login(central, user["username"])

    accounts.revoke_tokens(central.uow(), user["id"])

    with pytest.raises(AuthInvalid):
        accounts.user_principal(central.uow(), old)
    assert accounts.user_principal(central.uow(), login(central, user["username"]))


def test_each_new_user_starts_at_its_own_token_version(central):
    versions = set()
    for _ in range(5):
        user = make_user(central.uow(), "ops")
        versions.add(login(central, user["username"]).token_version)
    assert len(versions) == 5


def test_staff_of_a_deactivated_store_are_refused_with_their_own_code(central):
    accounts.create_store(central.uow(), "store-9", "Nine")
    staff = make_user(central.uow(), "staff", store_id="store-9")
    claims = login(central, staff["username"])

    accounts.deactivate_store(central.uow(), "store-9")

    with pytest.raises(StaffStoreInactive) as refused:
        accounts.user_principal(central.uow(), claims)
    assert (refused.value.code, refused.value.status) == ("auth.store_inactive", 403)
    accounts.activate_store(central.uow(), "store-9")
    assert accounts.user_principal(central.uow(), claims).store_id == "store-9"
