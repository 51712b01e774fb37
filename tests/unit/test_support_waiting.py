"""tests/support/waiting.eventually: what counts as "not yet", what it returns, how it fails."""

import pytest

from harness.waiting import eventually


def answers(*values):
    """A check that returns (or raises) `values` one call after another."""
    pending = list(values)

    def check():
        value = pending.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    return check


def test_returns_the_first_truthy_value_after_falsy_values_and_failed_asserts():
    check = answers(None, AssertionError("not yet"), 0, {"quantity": 40})

    assert eventually(check, 1, interval=0) == {"quantity": 40}


def test_ignored_exceptions_mean_not_yet():
    check = answers(ConnectionError("restarting"), "up")

    assert eventually(check, 1, interval=0, ignoring=(OSError,)) == "up"


def test_other_exceptions_end_the_wait_at_once():
    check = answers(RuntimeError("a bug"), "never reached")

    with pytest.raises(RuntimeError, match="a bug"):
        eventually(check, 1, interval=0)


def test_timeout_names_what_was_awaited_and_the_last_reason():
    def check():
        raise AssertionError("lag is 3")

    with pytest.raises(AssertionError, match=r"replica caught up: not within 0.05 s .*lag is 3"):
        eventually(check, 0.05, "replica caught up", interval=0.01)
