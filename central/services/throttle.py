"""Login throttling per username and per client address, counted in the database so that
every central process sharing it sees the same counts.

An attempt is counted before its password is checked, in a transaction that locks the
username's and the address's rows, and forgiven when it succeeds: so a burst of parallel
guesses cannot all pass the check before the first failure is written, and while a key is
locked the password is not checked at all. After `limit` counted attempts a key is locked
for `lock_seconds`, doubling with every further failure up to `max_lock_seconds`; failures
are forgotten after `window_seconds` without one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from central.db import is_mysql, locked
from central.models import LoginCounter
from central.settings import Settings
from central.uow import UnitOfWork
from invwire.errors.central import Throttled
from invwire.logs import EventLog

log = EventLog("central.throttle")

PRUNE_BATCH = 500
MAX_DOUBLINGS = 30  # 2**30 lock periods is far past any cap; keeps the arithmetic small


@dataclass(frozen=True)
class ThrottlePolicy:
    """A limit of 0 (or less) switches that kind of key off. Central builds it from its
    settings (login_*), which hold the defaults."""

    user_limit: int
    address_limit: int
    window_seconds: int
    lock_seconds: int
    max_lock_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        return cls(
            user_limit=settings.login_user_limit,
            address_limit=settings.login_address_limit,
            window_seconds=max(1, settings.login_window_seconds),
            lock_seconds=max(1, settings.login_lock_seconds),
            max_lock_seconds=max(1, settings.login_max_lock_seconds),
        )


# --- the rules, on one key's count -----------------------------------------------------------


@dataclass(frozen=True)
class Count:
    failures: int
    last_at: datetime


def lock_ends(count: Count, limit: int, policy: ThrottlePolicy) -> datetime | None:
    """When a key with this count is let in again; None when it is not locked."""
    if limit <= 0 or count.failures < limit:
        return None
    doublings = min(count.failures - limit, MAX_DOUBLINGS)
    seconds = min(policy.max_lock_seconds, policy.lock_seconds * 2**doublings)
    return count.last_at + timedelta(seconds=seconds)


def decayed(count: Count, limit: int, policy: ThrottlePolicy, now: datetime) -> Count:
    """The count as of `now`: forgotten once its lock is over and a window passed quietly."""
    ends = lock_ends(count, limit, policy)
    quiet = now - count.last_at >= timedelta(seconds=policy.window_seconds)
    if quiet and (ends is None or now >= ends):
        return Count(0, count.last_at)
    return count


def retry_after(count: Count, limit: int, policy: ThrottlePolicy, now: datetime) -> int | None:
    """Whole seconds until the key is let in again (at least 1); None when it is let in."""
    ends = lock_ends(count, limit, policy)
    if ends is None or now >= ends:
        return None
    return max(1, math.ceil((ends - now).total_seconds()))


# --- keys ------------------------------------------------------------------------------------


def user_key(username: str) -> str:
    # casefold: MariaDB compares usernames without case, so "Alice" is alice's login too.
    return _digest("user", username.casefold())


def address_key(address: str) -> str:
    return _digest("address", address)


def _digest(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}\0{value}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Attempt:
    """A counted attempt: `forgive` it when the password was right."""

    user_key: str
    address_key: str | None


# --- the database-backed throttle -------------------------------------------------------------


class LoginThrottle:
    def __init__(self, policy: ThrottlePolicy) -> None:
        self.policy = policy

    def begin(self, uow: UnitOfWork, username: str, address: str | None) -> Attempt:
        """Count an attempt for the username and the address, or raise Throttled (429) with
        the seconds to wait when either is locked; then nothing is counted."""
        attempt = Attempt(user_key(username), address_key(address) if address else None)
        limits = self._limits(attempt)
        if limits:
            with uow:
                now = uow.clock.now()
                counts = self._locked_counts(uow, limits, now)
                self._refuse_if_locked(limits, counts, now)
                for key, count in counts.items():
                    failures = decayed(count, limits[key], self.policy, now).failures + 1
                    _save(key, failures, now)
            self._prune(uow, now)
        return attempt

    def forgive(self, uow: UnitOfWork, attempt: Attempt) -> None:
        """The password was right: the username starts afresh; the address only loses this
        attempt, so one user's success does not wipe out another's failures there."""
        limits = self._limits(attempt)
        if not limits:
            return
        with uow:
            rows = locked(
                LoginCounter.select()
                .where(LoginCounter.key.in_(list(limits)))
                .order_by(LoginCounter.key)
            )
            for row in rows:
                if row.key == attempt.user_key:
                    LoginCounter.delete().where(LoginCounter.key == row.key).execute()
                else:
                    _save(row.key, max(0, row.failures - 1), row.last_at)

    def _limits(self, attempt: Attempt) -> dict[str, int]:
        """The keys that are throttled at all, in the order their rows are locked."""
        limits = {attempt.user_key: self.policy.user_limit}
        if attempt.address_key is not None:
            limits[attempt.address_key] = self.policy.address_limit
        return {key: limits[key] for key in sorted(limits) if limits[key] > 0}

    def _locked_counts(
        self, uow: UnitOfWork, limits: dict[str, int], now: datetime
    ) -> dict[str, Count]:
        _insert_missing(uow, limits, now)
        rows = locked(
            LoginCounter.select()
            .where(LoginCounter.key.in_(list(limits)))
            .order_by(LoginCounter.key)
        )
        return {row.key: Count(row.failures, row.last_at) for row in rows}

    def _refuse_if_locked(
        self, limits: dict[str, int], counts: dict[str, Count], now: datetime
    ) -> None:
        waits = [
            wait
            for key, count in counts.items()
            if (wait := retry_after(count, limits[key], self.policy, now)) is not None
        ]
        if waits:
            log.info("auth.throttled", retry_after=max(waits))
            raise Throttled(retry_after=max(waits))

    def _prune(self, uow: UnitOfWork, now: datetime) -> None:
        """Forget keys idle for longer than any lock and window, in a transaction of its own
        that locks only the rows it deletes (a login waiting on it is never its victim)."""
        idle = timedelta(seconds=self.policy.window_seconds + self.policy.max_lock_seconds)
        cutoff = now - idle
        try:
            with uow.db.connection_context():
                stale = [
                    row.key
                    for row in LoginCounter.select(LoginCounter.key)
                    .where(LoginCounter.last_at < cutoff)
                    .order_by(LoginCounter.key)
                    .limit(PRUNE_BATCH)
                ]
            if stale:
                with uow:
                    LoginCounter.delete().where(
                        LoginCounter.key.in_(stale), LoginCounter.last_at < cutoff
                    ).execute()
        except Exception as exc:  # the login is counted; pruning again next time is enough
            log.warning("auth.throttle_prune_failed", error=str(exc)[:200])


def _insert_missing(uow: UnitOfWork, limits: Iterable[str], now: datetime) -> None:
    """Rows for keys seen for the first time. On MariaDB an existing row is locked for
    update right here (ON DUPLICATE KEY UPDATE takes an exclusive lock where INSERT IGNORE
    would take a shared one, and two shared locks upgrading deadlock)."""
    rows = [{"key": key, "failures": 0, "last_at": now} for key in limits]
    insert = LoginCounter.insert_many(rows)
    if is_mysql(uow.db):
        insert.on_conflict(update={LoginCounter.failures: LoginCounter.failures}).execute()
    else:
        insert.on_conflict_ignore().execute()


def _save(key: str, failures: int, last_at: datetime) -> None:
    LoginCounter.update(failures=failures, last_at=last_at).where(LoginCounter.key == key).execute()


@dataclass(frozen=True)
class Attempts:
    """The password checks of one caller: counted by `throttle` per username and per the
    caller's `address`, or not at all when there is no throttle."""

    throttle: LoginThrottle | None = None
    address: str | None = None

    @contextmanager
    def counted(self, uow: UnitOfWork, username: str) -> Iterator[None]:
        """The attempt is counted before the block checks the password (Throttled, 429, while
        the username or the address is locked) and forgiven when the block does not raise."""
        if self.throttle is None:
            yield
            return
        attempt = self.throttle.begin(uow, username, self.address)
        yield
        self.throttle.forgive(uow, attempt)


UNCOUNTED = Attempts()
