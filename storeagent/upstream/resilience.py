"""Retries and a circuit breaker around any CentralClient.

Retrying an order is safe: every attempt carries the same Idempotency-Key, and central
answers a replayed key with the first order. Only CentralUnavailable is retried (a refusal
is central's answer), a few times with jittered exponential backoff inside a short window,
so a buy never waits long. After `failure_threshold` consecutive unavailable calls the
circuit opens and buys fail fast for `cooldown_s`; then one probe call goes through
(half-open) and its outcome closes or re-opens the circuit.

The offline replayer calls with `background=True`: one attempt, never failed fast (it has
its own backoff), and its outcome feeds the breaker, so a replay that reaches central closes
the circuit for the tills too.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, TypeVar

from typing_extensions import TypedDict

from invwire.orders import Line
from storeagent.upstream.client import (
    AllowanceList,
    CentralClient,
    CentralRefusedCall,
    CentralUnavailable,
    Confirmed,
    OrderResult,
    RecoveryAnswer,
    StatementAnswer,
)

Sleep = Callable[[float], None]
Monotonic = Callable[[], float]
T = TypeVar("T")


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitStatus(TypedDict):
    circuit: str
    consecutive_failures: int
    last_error: str | None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # the first call and at most two retries
    base_delay_s: float = 0.1
    max_delay_s: float = 1.0
    window_s: float = 3.0  # no retry starts later than this after the first attempt

    def delay(self, retry: int, jitter: Callable[[float], float]) -> float:
        """Full jitter: spreads the retries of many agents after a central restart."""
        return jitter(min(self.max_delay_s, self.base_delay_s * 2**retry))


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 3
    cooldown_s: float = 15.0


def full_jitter(ceiling: float) -> float:
    return random.uniform(0, ceiling)  # noqa: S311 -- spreading load, not a secret


class CircuitBreaker:
    """Thread-safe: the HTTP API places orders from several worker threads."""

    def __init__(
        self, policy: BreakerPolicy = BreakerPolicy(), *, clock: Monotonic = time.monotonic
    ):
        self._policy, self._clock = policy, clock
        self._lock = threading.Lock()
        self._state = Circuit.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._last_error: str | None = None
        self._probing = False

    def acquire(self) -> None:
        """Let a call through, or raise CentralUnavailable at once while the circuit is open."""
        with self._lock:
            if self._state is Circuit.OPEN and self._cooled_down():
                self._state = Circuit.HALF_OPEN
            if self._state is Circuit.CLOSED:
                return
            if self._state is Circuit.HALF_OPEN and not self._probing:
                self._probing = True
                return
            retry_in = max(self._opened_at + self._policy.cooldown_s - self._clock(), 0.0)
            last_error = self._last_error
        raise CentralUnavailable(
            f"central is unavailable (last error: {last_error}); not trying again "
            f"for {retry_in:.0f} s",
            reason="circuit_open",
            retry_after_s=round(retry_in, 1),
        )

    def succeeded(self) -> None:
        with self._lock:
            self._state, self._failures, self._probing = Circuit.CLOSED, 0, False

    def failed(self, error: str) -> None:
        with self._lock:
            self._failures += 1
            self._last_error = error
            probe_failed = self._state is Circuit.HALF_OPEN
            if probe_failed or self._failures >= self._policy.failure_threshold:
                self._state, self._opened_at = Circuit.OPEN, self._clock()
            self._probing = False

    def status(self) -> CircuitStatus:
        with self._lock:
            state = self._state
            if state is Circuit.OPEN and self._cooled_down():
                state = Circuit.HALF_OPEN
            return CircuitStatus(
                circuit=state.value,
                consecutive_failures=self._failures,
                last_error=self._last_error,
            )

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at >= self._policy.cooldown_s


class ResilientCentral:
    """A CentralClient that retries unavailable attempts and trips a circuit breaker."""

    def __init__(
        self,
        inner: CentralClient,
        *,
        breaker: CircuitBreaker | None = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Sleep = time.sleep,
        clock: Monotonic = time.monotonic,
        jitter: Callable[[float], float] = full_jitter,
    ) -> None:
        self.inner = inner
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self._retry, self._sleep, self._clock, self._jitter = retry, sleep, clock, jitter

    def place_order(
        self,
        idempotency_key: str,
        lines: Sequence[Line],
        *,
        request_id: str | None = None,
        background: bool = False,
        grants: Mapping[str, str] | None = None,
    ) -> OrderResult:
        maybe_sent = False
        extra: dict[str, Any] = {} if grants is None else {"grants": grants}

        def attempt() -> OrderResult:
            nonlocal maybe_sent
            try:
                result = self.inner.place_order(
                    idempotency_key, lines, request_id=request_id, **extra
                )
            except CentralUnavailable as exc:
                maybe_sent = maybe_sent or exc.maybe_sent
                raise
            if maybe_sent and isinstance(result, Confirmed):
                return replace(result, resent=True)  # a replayed answer may be our own order
            return result

        return self._guarded(attempt, background)

    def find_order(
        self, idempotency_key: str, *, background: bool = False
    ) -> dict[str, Any] | None:
        return self._guarded(lambda: self.inner.find_order(idempotency_key), background)

    def cancel_order(self, order_id: str, *, background: bool = False) -> dict[str, Any]:
        return self._guarded(lambda: self.inner.cancel_order(order_id), background)

    def recover_orders(
        self, orders: Sequence[Mapping[str, Any]], *, background: bool = False
    ) -> RecoveryAnswer:
        return self._guarded(lambda: self.inner.recover_orders(orders), background)

    def my_allowances(self, *, background: bool = True) -> AllowanceList:
        return self._guarded(self.inner.my_allowances, background)

    def allowance_statement(
        self, grant_id: str, sold: int, *, background: bool = True
    ) -> StatementAnswer:
        return self._guarded(lambda: self.inner.allowance_statement(grant_id, sold), background)

    def close(self) -> None:
        self.inner.close()

    def status(self) -> CircuitStatus:
        return self.breaker.status()

    def _guarded(self, call: Callable[[], T], background: bool) -> T:
        if not background:
            self.breaker.acquire()
        try:
            result = call() if background else self._attempts(call)
        except CentralRefusedCall:
            self.breaker.succeeded()  # central answered: it is up, whatever it said
            raise
        except CentralUnavailable as exc:
            self.breaker.failed(exc.message)
            raise
        except Exception as exc:  # a half-open probe must never stay out for good
            self.breaker.failed(f"{type(exc).__name__}: {exc}")
            raise
        self.breaker.succeeded()
        return result

    def _attempts(self, call: Callable[[], T]) -> T:
        started = self._clock()
        retry = 0
        maybe_sent = False
        while True:
            try:
                return call()
            except CentralUnavailable as exc:
                maybe_sent = exc.maybe_sent = maybe_sent or exc.maybe_sent
                delay = self._retry.delay(retry, self._jitter)
                if not self._may_retry(exc, retry, self._clock() - started + delay):
                    raise
            self._sleep(delay)
            retry += 1

    def _may_retry(self, exc: CentralUnavailable, retry: int, at: float) -> bool:
        return exc.retryable and retry + 1 < self._retry.attempts and at <= self._retry.window_s
