"""Login throttling: after N failed logins for a username (or from an address) in a window,
central answers auth.throttled with the seconds to wait and does not check the password;
the lock doubles with each further failure; a success starts the username afresh. Time is
the injected clock: nothing sleeps."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from central.models import LoginCounter
from central.services import accounts
from central.services.throttle import (
    Attempts,
    Count,
    LoginThrottle,
    ThrottlePolicy,
    decayed,
    lock_ends,
    retry_after,
    user_key,
)
from central.settings import Settings
from invwire.errors.central import AuthInvalid, Throttled, WrongPassword
from tests.support.accounts import PASSWORD, make_user

POLICY = ThrottlePolicy(
    user_limit=5, address_limit=20, window_seconds=900, lock_seconds=60, max_lock_seconds=900
)
T0 = datetime(2026, 11, 29, 10, 0, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- the rules -------------------------------------------------------------------------------


def test_below_the_limit_nothing_is_locked():
    assert lock_ends(Count(4, T0), 5, POLICY) is None
    assert retry_after(Count(4, T0), 5, POLICY, T0) is None


def test_at_the_limit_the_key_is_locked_for_the_lock_period():
    assert lock_ends(Count(5, T0), 5, POLICY) == at(60)
    assert retry_after(Count(5, T0), 5, POLICY, at(0.2)) == 60
    assert retry_after(Count(5, T0), 5, POLICY, at(59.5)) == 1
    assert retry_after(Count(5, T0), 5, POLICY, at(60)) is None


def test_each_further_failure_doubles_the_lock_up_to_the_cap():
    locks = [(lock_ends(Count(n, T0), 5, POLICY) - T0).total_seconds() for n in range(5, 11)]
    assert locks == [60, 120, 240, 480, 900, 900]
    assert lock_ends(Count(10**6, T0), 5, POLICY) == at(900)


def test_failures_are_forgotten_after_a_quiet_window_but_not_during_a_lock():
    assert decayed(Count(4, T0), 5, POLICY, at(899)).failures == 4
    assert decayed(Count(4, T0), 5, POLICY, at(900)).failures == 0
    long_lock = replace(POLICY, window_seconds=60, lock_seconds=600, max_lock_seconds=600)
    assert decayed(Count(5, T0), 5, long_lock, at(300)).failures == 5
    assert decayed(Count(5, T0), 5, long_lock, at(600)).failures == 0


def test_a_limit_of_zero_switches_the_key_off():
    assert lock_ends(Count(1000, T0), 0, POLICY) is None


def test_the_policy_comes_from_the_settings():
    settings = Settings(login_user_limit=3, login_address_limit=0, login_lock_seconds=5)
    policy = ThrottlePolicy.from_settings(settings)
    assert (policy.user_limit, policy.address_limit, policy.lock_seconds) == (3, 0, 5)


def test_usernames_are_keyed_without_case_and_never_kept_in_clear():
    assert user_key("Alice") == user_key("alice")
    assert len(user_key("alice")) == 64 and "alice" not in user_key("alice")


# --- logins through the throttle (real SQLite, fake clock) -----------------------------------


@pytest.fixture
def throttle():
    return LoginThrottle(POLICY)


@pytest.fixture
def user(central):
    return make_user(central.uow(), "ops")


def login(central, throttle, username: str, password: str, address: str | None = "10.0.0.1"):
    return accounts.authenticate(central.uow(), username, password, Attempts(throttle, address))


def fail(central, throttle, username: str, times: int, address: str | None = "10.0.0.1") -> None:
    """Failed logins as the throttle sees them: counted, never forgiven (no scrypt to wait
    for; the tests through `authenticate` show that a wrong password is exactly this)."""
    for _ in range(times):
        throttle.begin(central.uow(), username, address)


def succeed(central, throttle, username: str, address: str | None = "10.0.0.1") -> None:
    throttle.forgive(central.uow(), throttle.begin(central.uow(), username, address))


def let_in(central, throttle, username: str, address: str | None = "10.0.0.1") -> bool:
    try:
        succeed(central, throttle, username, address)
    except Throttled:
        return False
    return True


def test_wrong_passwords_are_counted_and_a_right_one_is_forgiven(central, throttle, user):
    for _ in range(4):
        with pytest.raises(AuthInvalid):
            login(central, throttle, user["username"], "wrong-password")
    login(central, throttle, user["username"], PASSWORD)
    for _ in range(4):
        with pytest.raises(AuthInvalid):
            login(central, throttle, user["username"], "wrong-password")

    with central.db.connection_context():
        counted = LoginCounter.get_by_id(user_key(user["username"])).failures
    assert counted == 4


def test_after_five_failures_even_the_right_password_is_throttled(central, throttle, user):
    fail(central, throttle, user["username"], 5)

    with pytest.raises(Throttled) as refused:
        login(central, throttle, user["username"], PASSWORD)

    error = refused.value
    assert (error.code, error.status, error.retry_after) == ("auth.throttled", 429, 60)
    assert error.details == {"retry_after": 60}


def test_the_wait_shrinks_with_the_clock_and_throttled_tries_do_not_extend_it(
    central, clock, throttle, user
):
    fail(central, throttle, user["username"], 5)
    clock.advance(45)
    with pytest.raises(Throttled) as later:
        fail(central, throttle, user["username"], 1)
    assert later.value.retry_after == 15

    clock.advance(15)
    assert login(central, throttle, user["username"], PASSWORD).user_id == user["id"]


def test_a_failure_after_the_lock_locks_for_twice_as_long(central, clock, throttle, user):
    fail(central, throttle, user["username"], 5)
    clock.advance(60)

    fail(central, throttle, user["username"], 1)

    with pytest.raises(Throttled) as refused:
        fail(central, throttle, user["username"], 1)
    assert refused.value.retry_after == 120


def test_a_success_starts_the_username_afresh(central, throttle, user):
    fail(central, throttle, user["username"], 4)
    succeed(central, throttle, user["username"])

    fail(central, throttle, user["username"], 4)

    assert let_in(central, throttle, user["username"])


def test_failures_are_forgotten_after_a_quiet_window(central, clock, throttle, user):
    fail(central, throttle, user["username"], 4)
    clock.advance(900)

    fail(central, throttle, user["username"], 4)

    assert let_in(central, throttle, user["username"])


def test_another_spelling_of_the_username_counts_for_the_same_user(central, throttle, user):
    fail(central, throttle, user["username"].upper(), 5)

    assert not let_in(central, throttle, user["username"])


def test_unknown_usernames_are_throttled_like_known_ones(central, throttle):
    for _ in range(5):
        with pytest.raises(AuthInvalid):
            login(central, throttle, "nobody-here", "anything")

    with pytest.raises(Throttled):
        login(central, throttle, "nobody-here", "anything")


def test_twenty_failures_from_one_address_throttle_every_username_from_it(central, throttle, user):
    for n in range(20):
        fail(central, throttle, f"guess-{n}", 1, address="10.9.9.9")

    assert not let_in(central, throttle, user["username"], address="10.9.9.9")
    assert let_in(central, throttle, user["username"], address="10.0.0.2")


def test_a_success_takes_back_only_its_own_attempt_from_the_address(central, throttle, user):
    for n in range(19):
        fail(central, throttle, f"guess-{n}", 1, address="10.9.9.9")
    succeed(central, throttle, user["username"], address="10.9.9.9")

    fail(central, throttle, "guess-last", 1, address="10.9.9.9")

    assert not let_in(central, throttle, user["username"], address="10.9.9.9")


def test_a_limit_of_zero_turns_a_key_off(central, user):
    by_address_only = LoginThrottle(replace(POLICY, user_limit=0, address_limit=3))
    fail(central, by_address_only, user["username"], 3, address="10.0.0.1")
    fail(central, by_address_only, user["username"], 10, address=None)

    assert let_in(central, by_address_only, user["username"], address=None)
    assert not let_in(central, by_address_only, user["username"], address="10.0.0.1")


def test_a_wrong_current_password_counts_as_a_failed_login(central, throttle, user):
    principal = accounts.user_principal(
        central.uow(), accounts.authenticate(central.uow(), user["username"], PASSWORD)
    )
    attempts = Attempts(throttle, "10.0.0.1")
    for _ in range(5):
        with pytest.raises(WrongPassword):
            accounts.change_own_password(
                central.uow(), principal, "wrong-password", "new-password-1", attempts
            )

    with pytest.raises(Throttled):
        accounts.change_own_password(central.uow(), principal, PASSWORD, "new-password-1", attempts)
    with pytest.raises(Throttled):
        login(central, throttle, user["username"], PASSWORD)


def test_idle_counters_are_pruned(central, clock, throttle, user):
    fail(central, throttle, "forgotten", 1, address=None)
    clock.advance(POLICY.window_seconds + POLICY.max_lock_seconds + 1)

    fail(central, throttle, user["username"], 1, address=None)

    with central.db.connection_context():
        keys = {row.key for row in LoginCounter.select()}
    assert keys == {user_key(user["username"])}
