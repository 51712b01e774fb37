"""The one way tests wait: poll for a state or an event, never sleep a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T | None],
    timeout: float = 30.0,
    what: str = "the condition",
    *,
    interval: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Call `check` until it returns something truthy, and return that value.

    A falsy value, an AssertionError (so `check` may use plain asserts) or one of `ignoring`
    (e.g. `httpx.HTTPError` while a server restarts) means "not yet". After `timeout` seconds
    an AssertionError names `what` and the last reason. Anything else `check` raises, such as
    `pytest.fail()` for a process that exited, ends the wait at once.
    """
    not_yet: tuple[type[Exception], ...] = (AssertionError, *ignoring)
    deadline = time.monotonic() + timeout
    while True:
        failure: Exception | None = None
        try:
            value = check()
        except not_yet as exc:
            value, failure = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            last = f"{type(failure).__name__}: {failure}" if failure else f"got {value!r}"
            raise AssertionError(f"{what}: not within {timeout:g} s ({last})") from failure
        time.sleep(interval)
