"""Retries (only for unavailable central, few and quick) and the circuit breaker."""

import pytest

from invwire.orders import Line
from storeagent.upstream.client import CentralUnavailable, Refused
from storeagent.upstream.resilience import (
    BreakerPolicy,
    CircuitBreaker,
    ResilientCentral,
    RetryPolicy,
    full_jitter,
)
from tests.support.agent_fakes import FakeCentral
from tests.support.machine_clock import Monotonic

LINES = [Line("MILK-1L", 1)]


@pytest.fixture
def mono() -> Monotonic:
    return Monotonic(50.0)


@pytest.fixture
def central() -> FakeCentral:
    fake = FakeCentral()
    fake.set_stock("MILK-1L", 10)
    return fake


def resilient(central, mono, threshold=3, cooldown=15.0, **kw) -> ResilientCentral:
    breaker = CircuitBreaker(BreakerPolicy(threshold, cooldown), clock=mono)
    kw.setdefault("jitter", lambda top: top)
    return ResilientCentral(central, breaker=breaker, sleep=mono.sleep, clock=mono, **kw)


def test_unavailable_attempts_are_retried_with_the_same_key_until_central_answers(central, mono):
    central.go_down(2)

    result = resilient(central, mono).place_order("k1", LINES)

    assert not isinstance(result, Refused)
    assert [c.idempotency_key for c in central.calls] == ["k1", "k1", "k1"]
    assert mono.now == pytest.approx(50.3)


def test_at_most_two_retries(central, mono):
    central.go_down()

    with pytest.raises(CentralUnavailable):
        resilient(central, mono).place_order("k1", LINES)

    assert len(central.calls) == 3


def test_no_retry_starts_after_the_three_second_window(central, mono):
    central.go_down()
    central.on_call = lambda key, lines: mono.sleep(8.0)  # a read timeout

    with pytest.raises(CentralUnavailable):
        resilient(central, mono).place_order("k1", LINES)

    assert len(central.calls) == 1


def test_backoff_is_exponential_and_capped_and_jittered_below_the_cap():
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=0.3)

    assert [policy.delay(n, lambda top: top) for n in range(4)] == [0.1, 0.2, 0.3, 0.3]
    assert all(0 <= full_jitter(0.2) <= 0.2 for _ in range(100))


def test_a_refusal_is_returned_at_once_and_closes_the_circuit(central, mono):
    central.refuse_next(409, "stock.insufficient")
    guarded = resilient(central, mono)

    assert isinstance(guarded.place_order("k1", LINES), Refused)
    assert len(central.calls) == 1
    assert guarded.status()["circuit"] == "closed"


def test_non_retryable_unavailability_is_not_retried(mono):
    class Unconfigured(FakeCentral):
        def place_order(self, idempotency_key, lines, *, request_id=None):
            self.calls.append(None)
            raise CentralUnavailable("no URL", retryable=False)

    central = Unconfigured()

    with pytest.raises(CentralUnavailable):
        resilient(central, mono).place_order("k1", LINES)

    assert len(central.calls) == 1


def test_circuit_opens_after_n_consecutive_failures_and_fails_fast(central, mono):
    central.go_down()
    guarded = resilient(central, mono, threshold=2)
    for _ in range(2):
        with pytest.raises(CentralUnavailable):
            guarded.place_order("k", LINES)
    calls = len(central.calls)

    with pytest.raises(CentralUnavailable) as caught:
        guarded.place_order("k", LINES)

    assert len(central.calls) == calls
    assert caught.value.details["reason"] == "circuit_open"
    assert guarded.status() == {
        "circuit": "open",
        "consecutive_failures": 2,
        "last_error": "fake central is down",
    }


def test_a_success_resets_the_count_of_consecutive_failures(central, mono):
    guarded = resilient(central, mono, threshold=2)
    central.go_down(3)
    with pytest.raises(CentralUnavailable):
        guarded.place_order("k1", LINES)

    guarded.place_order("k2", LINES)
    central.go_down(3)
    with pytest.raises(CentralUnavailable):
        guarded.place_order("k3", LINES)

    assert guarded.status()["circuit"] == "closed"
    assert guarded.status()["consecutive_failures"] == 1


def test_half_open_lets_one_probe_through_and_a_failed_probe_reopens(central, mono):
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, cooldown_s=10), clock=mono)
    breaker.failed("down")
    mono.now += 10

    breaker.acquire()  # the probe
    with pytest.raises(CentralUnavailable):
        breaker.acquire()  # everyone else while it is out
    breaker.failed("still down")

    assert breaker.status()["circuit"] == "open"
    with pytest.raises(CentralUnavailable):
        breaker.acquire()
    mono.now += 10
    breaker.acquire()
    breaker.succeeded()
    assert breaker.status() == {
        "circuit": "closed",
        "consecutive_failures": 0,
        "last_error": "still down",
    }


def test_an_uncertain_attempt_stays_uncertain_when_the_last_retry_could_not_connect(mono):
    central = FakeCentral()
    central.set_stock("MILK-1L", 10)
    central.go_down(1, reason="timeout")
    central.on_call = lambda key, lines: len(central.calls) == 2 and central.go_down(2)

    with pytest.raises(CentralUnavailable) as caught:
        resilient(central, mono).place_order("k1", LINES)

    assert caught.value.details["reason"] == "connect"
    assert caught.value.maybe_sent


def test_a_background_call_is_tried_once_even_while_the_circuit_is_open(central, mono):
    guarded = resilient(central, mono, threshold=1)
    central.go_down(3)
    with pytest.raises(CentralUnavailable):
        guarded.place_order("k1", LINES)
    assert guarded.status()["circuit"] == "open"

    result = guarded.place_order("k1", LINES, background=True)

    assert not isinstance(result, Refused)
    assert guarded.status()["circuit"] == "closed"


def test_a_failed_background_call_is_not_retried_and_counts_against_central(central, mono):
    guarded = resilient(central, mono)
    central.go_down()

    with pytest.raises(CentralUnavailable):
        guarded.find_order("k1", background=True)

    assert len(central.lookups) == 1
    assert guarded.status()["consecutive_failures"] == 1
