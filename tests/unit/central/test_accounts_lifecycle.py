"""An admin disables, enables, re-roles, resets and revokes users; every change that takes
something away revokes the user's tokens, and the last active admin cannot be locked out."""

from __future__ import annotations

import pytest

from central.security import TokenClaims
from central.services import accounts
from central.services.principal import Principal, Role
from invwire.errors.central import (
    AuthInvalid,
    Forbidden,
    InvalidInput,
    InvalidRole,
    LastAdmin,
    StoreNotFound,
    UserNotFound,
    WeakPassword,
    WrongPassword,
)
from tests.support.accounts import PASSWORD, make_user


def claims_of(central, username: str, password: str = PASSWORD) -> TokenClaims:
    return accounts.authenticate(central.uow(), username, password)


def still_valid(central, claims: TokenClaims) -> bool:
    try:
        accounts.user_principal(central.uow(), claims)
    except AuthInvalid:
        return False
    return True


@pytest.fixture
def admin(central):
    return make_user(central.uow(), "admin")


def test_a_disabled_user_cannot_log_in_and_its_tokens_stop_working(central, admin):
    user = make_user(central.uow(), "ops")
    claims = claims_of(central, user["username"])

    view = accounts.disable_user(central.uow(), user["id"])

    assert view["active"] is False
    assert not still_valid(central, claims)
    with pytest.raises(AuthInvalid):
        claims_of(central, user["username"])


def test_an_enabled_user_logs_in_again_but_its_old_tokens_stay_revoked(central, admin):
    user = make_user(central.uow(), "ops")
    before = claims_of(central, user["username"])
    accounts.disable_user(central.uow(), user["id"])

    view = accounts.enable_user(central.uow(), user["id"])

    assert view["active"] is True
    assert not still_valid(central, before)
    assert still_valid(central, claims_of(central, user["username"]))


def test_a_new_role_revokes_the_tokens_and_the_next_login_carries_it(central, admin):
    user = make_user(central.uow(), "ops")
    claims = claims_of(central, user["username"])
    accounts.create_store(central.uow(), "store-1", "One")

    view = accounts.change_role(central.uow(), user["id"], "staff", "store-1")

    assert (view["role"], view["store_id"]) == ("staff", "store-1")
    assert not still_valid(central, claims)
    fresh = accounts.user_principal(central.uow(), claims_of(central, user["username"]))
    assert (fresh.role, fresh.store_id) == (Role.STAFF, "store-1")


def test_leaving_staff_drops_the_store_binding(central, admin):
    accounts.create_store(central.uow(), "store-1", "One")
    staff = make_user(central.uow(), "staff", store_id="store-1")

    view = accounts.change_role(central.uow(), staff["id"], "ops")

    assert (view["role"], view["store_id"]) == ("ops", None)


def test_only_staff_are_bound_to_a_store_and_only_to_one_that_exists(central, admin):
    user = make_user(central.uow(), "ops")
    with pytest.raises(InvalidInput) as not_staff:
        accounts.change_role(central.uow(), user["id"], "ops", "store-1")
    with pytest.raises(StoreNotFound):
        accounts.change_role(central.uow(), user["id"], "staff", "no-such-store")
    with pytest.raises(InvalidRole):
        accounts.change_role(central.uow(), user["id"], "root")
    assert not_staff.value.details == {"field": "store_id"}
    assert accounts.user_principal(central.uow(), claims_of(central, user["username"])).role == (
        Role.OPS
    )


def test_the_last_active_admin_can_be_neither_disabled_nor_demoted(central, admin):
    with pytest.raises(LastAdmin) as disabled:
        accounts.disable_user(central.uow(), admin["id"])
    with pytest.raises(LastAdmin):
        accounts.change_role(central.uow(), admin["id"], "ops")

    assert (disabled.value.code, disabled.value.status) == ("user.last_admin", 409)
    assert still_valid(central, claims_of(central, admin["username"]))


def test_a_disabled_admin_does_not_count_as_another_admin(central, admin):
    other = make_user(central.uow(), "admin")
    accounts.disable_user(central.uow(), other["id"])

    with pytest.raises(LastAdmin):
        accounts.disable_user(central.uow(), admin["id"])


def test_with_another_active_admin_an_admin_may_be_demoted_and_disabled(central, admin):
    other = make_user(central.uow(), "admin")

    assert accounts.change_role(central.uow(), other["id"], "ops")["role"] == "ops"
    with pytest.raises(LastAdmin):
        accounts.disable_user(central.uow(), admin["id"])
    accounts.change_role(central.uow(), other["id"], "admin")
    assert accounts.disable_user(central.uow(), admin["id"])["active"] is False


def test_an_admin_keeps_admin_when_its_role_is_set_to_admin_again(central, admin):
    assert accounts.change_role(central.uow(), admin["id"], "admin")["role"] == "admin"


def test_a_reset_password_replaces_the_old_one_and_revokes_the_tokens(central, admin):
    user = make_user(central.uow(), "ops")
    claims = claims_of(central, user["username"])

    accounts.reset_password(central.uow(), user["id"], "a-brand-new-password")

    assert not still_valid(central, claims)
    with pytest.raises(AuthInvalid):
        claims_of(central, user["username"])
    assert still_valid(central, claims_of(central, user["username"], "a-brand-new-password"))


def test_a_reset_password_must_be_long_enough(central, admin):
    user = make_user(central.uow(), "ops")
    with pytest.raises(WeakPassword):
        accounts.reset_password(central.uow(), user["id"], "short")
    assert still_valid(central, claims_of(central, user["username"]))


def test_revoking_tokens_ends_every_one_issued_so_far(central, admin):
    user = make_user(central.uow(), "ops")
    first, second = claims_of(central, user["username"]), claims_of(central, user["username"])

    accounts.revoke_tokens(central.uow(), user["id"])

    assert not still_valid(central, first) and not still_valid(central, second)
    assert still_valid(central, claims_of(central, user["username"]))


@pytest.mark.parametrize(
    "change",
    [
        accounts.disable_user,
        accounts.enable_user,
        accounts.revoke_tokens,
        lambda uow, user_id: accounts.change_role(uow, user_id, "ops"),
        lambda uow, user_id: accounts.reset_password(uow, user_id, "long-enough-password"),
    ],
)
def test_an_unknown_user_id_is_user_not_found(central, change):
    with pytest.raises(UserNotFound) as missing:
        change(central.uow(), 424242)
    assert (missing.value.code, missing.value.details) == ("user.not_found", {"user_id": 424242})


def principal_of(central, claims: TokenClaims) -> Principal:
    return accounts.user_principal(central.uow(), claims)


def test_changing_ones_own_password_revokes_every_token_and_answers_a_fresh_one(central):
    user = make_user(central.uow(), "staff")
    old = claims_of(central, user["username"])

    fresh = accounts.change_own_password(
        central.uow(), principal_of(central, old), PASSWORD, "my-new-password-1"
    )

    assert not still_valid(central, old)
    assert still_valid(central, fresh)
    assert still_valid(central, claims_of(central, user["username"], "my-new-password-1"))


def test_a_wrong_current_password_changes_nothing(central):
    user = make_user(central.uow(), "ops")
    claims = claims_of(central, user["username"])

    with pytest.raises(WrongPassword) as wrong:
        accounts.change_own_password(
            central.uow(), principal_of(central, claims), "not-my-password", "my-new-password-1"
        )

    assert (wrong.value.code, wrong.value.status) == ("password.wrong", 422)
    assert wrong.value.details == {"field": "current_password"}
    assert still_valid(central, claims)
    assert still_valid(central, claims_of(central, user["username"]))


def test_a_new_password_that_is_too_short_is_refused_before_anything_else(central):
    user = make_user(central.uow(), "ops")
    claims = claims_of(central, user["username"])
    with pytest.raises(WeakPassword):
        accounts.change_own_password(central.uow(), principal_of(central, claims), PASSWORD, "x")
    assert still_valid(central, claims)


def test_a_store_key_has_no_password_to_change(central):
    store = Principal("store-1", Role.STORE, "store-1")
    with pytest.raises(Forbidden):
        accounts.change_own_password(central.uow(), store, "whatever", "long-enough-password")


def test_the_user_list_says_who_is_active(central, admin):
    user = make_user(central.uow(), "ops")
    accounts.disable_user(central.uow(), user["id"])

    listed = {u["username"]: u["active"] for u in accounts.list_users(central.uow())}

    assert listed == {admin["username"]: True, user["username"]: False}
