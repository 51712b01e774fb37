"""Central's clock as the agent estimates it from heartbeat answers, and the figures measured
on it (staleness, sync latency): right whatever this machine's wall clock says, and never
clamped to hide a negative."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import httpx
import pytest

from storeagent.http.schemas import sync_status
from storeagent.ops.metrics import AgentMetrics, WatchedState
from storeagent.ops.vitals import Vitals
from storeagent.replica.db import META_LAST_EVENT_AT, Replica
from storeagent.replica.local_orders import LocalOrders
from storeagent.sync.central_clock import CentralClock, clock_sample
from storeagent.sync.loop import SyncLoop
from storeagent.sync.progress import SyncProgress
from storeagent.upstream.heartbeat import Heartbeat, HttpHeartbeat, heartbeat_report
from tests.support.agent_fakes import FakeRecordSource, envelope, stock_data
from tests.support.machine_clock import MachineClock, SlowCentral

TEN_MINUTES = 600.0


def heartbeat(machine: MachineClock, central: SlowCentral, clock: CentralClock, report=None):
    return Heartbeat(
        central,
        report or (lambda: {"ready": True}),
        every_s=1.0,
        clock=machine.monotonic,
        wall=machine.wall,
        central_clock=clock,
    )


def exchange(machine: MachineClock, clock: CentralClock, out_s: float, back_s: float) -> None:
    """One heartbeat with these network delays, then a second of quiet."""
    heartbeat(machine, SlowCentral(machine, out_s, back_s), clock).beat()
    machine.advance(1.0)


# --- the estimate ------------------------------------------------------------------------------


@pytest.mark.parametrize("off_s", [TEN_MINUTES, -TEN_MINUTES, 0.0])
def test_a_symmetric_exchange_gives_the_exact_offset(off_s):
    machine, clock = MachineClock(off_s), CentralClock()

    exchange(machine, clock, out_s=0.2, back_s=0.2)

    assert clock.offset_s() == pytest.approx(-off_s)


def test_an_asymmetric_exchange_is_off_by_at_most_half_its_round_trip():
    machine, clock = MachineClock(TEN_MINUTES), CentralClock()

    exchange(machine, clock, out_s=0.0, back_s=0.8)

    assert clock.offset_s() == pytest.approx(-TEN_MINUTES - 0.4)


def test_the_shortest_round_trip_of_the_last_samples_wins():
    machine, clock = MachineClock(-TEN_MINUTES), CentralClock()

    exchange(machine, clock, out_s=0.0, back_s=2.0)  # a slow answer: off by 1 s
    exchange(machine, clock, out_s=0.01, back_s=0.01)  # the best one: exact
    exchange(machine, clock, out_s=1.5, back_s=0.0)  # slow again: off by 0.75 s

    assert clock.offset_s() == pytest.approx(TEN_MINUTES)


@pytest.mark.parametrize(("keep", "offset_s"), [(3, -0.3), (4, 0.0)])
def test_only_the_last_samples_count(keep, offset_s):
    machine, clock = MachineClock(0.0), CentralClock(keep=keep)
    exchange(machine, clock, out_s=0.0, back_s=0.0)  # the best round trip, but the oldest
    machine.off_s = 0.3  # the wall clock drifted since (too little to be taken for a step)
    for _ in range(3):
        exchange(machine, clock, out_s=0.1, back_s=0.1)

    assert clock.offset_s() == pytest.approx(offset_s)


def test_a_step_of_the_wall_clock_drops_the_samples_taken_before_it():
    machine, clock = MachineClock(0.0), CentralClock()
    exchange(machine, clock, out_s=0.0, back_s=0.0)  # perfect, before the step

    machine.step(-TEN_MINUTES)
    exchange(machine, clock, out_s=0.3, back_s=0.3)

    assert clock.offset_s() == pytest.approx(TEN_MINUTES)


def test_before_central_answers_there_is_no_offset_and_local_time_stands():
    machine, clock = MachineClock(TEN_MINUTES), CentralClock()

    assert clock.offset_s() is None
    assert clock.central_time(machine.wall()) == machine.wall()


def test_an_answer_without_central_time_is_no_sample():
    class OldCentral(SlowCentral):
        def send(self, report):
            super().send(report)
            return None

    machine, clock = MachineClock(TEN_MINUTES), CentralClock()

    assert heartbeat(machine, OldCentral(machine), clock).beat()
    assert clock.offset_s() is None


def test_one_sample_from_its_parts():
    machine = MachineClock(TEN_MINUTES)
    sample = clock_sample(machine.wall(), 100.0, 100.5, machine.true_now + timedelta(seconds=1))

    assert (sample.offset_s, sample.round_trip_s) == (pytest.approx(-TEN_MINUTES + 0.75), 0.5)


# --- what is measured on it --------------------------------------------------------------------


def replica_with_event(replica: Replica, machine: MachineClock, age_s: float) -> None:
    """The newest applied event happened `age_s` ago at central."""
    at = machine.true_now - timedelta(seconds=age_s)
    with replica.transaction():
        replica.set_meta({META_LAST_EVENT_AT: at.isoformat()})


@pytest.mark.parametrize("off_s", [TEN_MINUTES, -TEN_MINUTES])
def test_staleness_is_the_truth_once_central_answered_whatever_the_wall_clock(replica, off_s):
    machine, progress = MachineClock(off_s), SyncProgress()
    vitals = Vitals(replica, LocalOrders(replica), progress)
    replica_with_event(replica, machine, age_s=5.0)
    uncorrected = vitals.staleness_s(machine.wall())

    exchange(machine, progress.central_clock, out_s=0.1, back_s=0.1)

    assert uncorrected == pytest.approx(5.0 + off_s), "before any answer: this machine's clock"
    assert vitals.staleness_s(machine.wall()) == pytest.approx(5.0 + 1.0 + 0.2)


def test_a_negative_staleness_is_shown_as_it_is(replica):
    machine, progress = MachineClock(-TEN_MINUTES), SyncProgress()
    vitals = Vitals(replica, LocalOrders(replica), progress)
    replica_with_event(replica, machine, age_s=5.0)

    assert vitals.staleness_s(machine.wall()) == pytest.approx(5.0 - TEN_MINUTES)


def test_the_heartbeat_report_carries_the_offset_and_corrected_staleness(replica):
    machine, progress = MachineClock(TEN_MINUTES), SyncProgress()
    vitals = Vitals(replica, LocalOrders(replica), progress)
    replica_with_event(replica, machine, age_s=5.0)
    central = SlowCentral(machine, out_s=0.1, back_s=0.1)

    def report():
        return heartbeat_report(vitals, instance_id="i-1", now=machine.wall)

    beats = heartbeat(machine, central, progress.central_clock, report)
    beats.beat()
    beats.beat()

    first, second = central.reports
    assert "clock_offset_s" not in first and first["staleness_s"] == pytest.approx(605.0)
    assert second["clock_offset_s"] == pytest.approx(-TEN_MINUTES)
    assert second["staleness_s"] == pytest.approx(5.2)
    assert second["every_s"] == 1.0 and second["instance_id"] == "i-1"


def test_sync_status_shows_the_offset_and_staleness_on_centrals_clock(replica):
    machine, progress = MachineClock(-TEN_MINUTES), SyncProgress()
    replica_with_event(replica, machine, age_s=5.0)
    exchange(machine, progress.central_clock, out_s=0.1, back_s=0.1)

    status = sync_status(
        replica, progress, store_id="s1", topics=[], ready=True, now=machine.wall()
    )

    assert (status["clock_offset_s"], status["staleness_s"]) == (600.0, 6.2)


def test_metrics_show_the_offset_and_the_corrected_staleness(replica):
    machine, progress = MachineClock(TEN_MINUTES), SyncProgress()
    replica_with_event(replica, machine, age_s=5.0)
    exchange(machine, progress.central_clock, out_s=0.1, back_s=0.1)
    metrics = AgentMetrics()
    vitals = Vitals(replica, LocalOrders(replica), progress)
    metrics.watch(WatchedState(vitals, clock=machine.wall))

    value = metrics.registry.get_sample_value

    assert value("storeagent_clock_offset_seconds") == pytest.approx(-TEN_MINUTES)
    assert value("storeagent_replica_staleness_seconds") == pytest.approx(6.2)


@pytest.mark.parametrize(("off_s", "latency_s"), [(TEN_MINUTES, 2.0), (-TEN_MINUTES, 2.0)])
def test_sync_latency_is_measured_on_centrals_clock(replica, off_s, latency_s):
    machine, progress = MachineClock(off_s), SyncProgress()
    exchange(machine, progress.central_clock, out_s=0.0, back_s=0.0)
    metrics = apply_one_event(replica, machine, progress, occurred_s_ago=latency_s)

    value = metrics.registry.get_sample_value

    assert value("storeagent_sync_latency_seconds_sum") == pytest.approx(latency_s)
    assert value("storeagent_sync_latency_negative_total") == 0


def test_a_negative_sync_latency_is_observed_as_it_is_and_counted(replica):
    machine, progress = MachineClock(-TEN_MINUTES), SyncProgress()  # never corrected
    metrics = apply_one_event(replica, machine, progress, occurred_s_ago=2.0)

    value = metrics.registry.get_sample_value

    assert value("storeagent_sync_latency_seconds_sum") == pytest.approx(2.0 - TEN_MINUTES)
    assert value("storeagent_sync_latency_negative_total") == 1


def apply_one_event(
    replica: Replica, machine: MachineClock, progress: SyncProgress, occurred_s_ago: float
) -> AgentMetrics:
    source = FakeRecordSource.with_wire_topics()
    occurred = machine.true_now - timedelta(seconds=occurred_s_ago)
    value = envelope("stock.changed", stock_data(stock_version=1), occurred_at=occurred.isoformat())
    source.produce("inventory-updated", b"MILK-1L", value)
    metrics = AgentMetrics()
    loop = SyncLoop(
        replica, lambda: source, prefix="", stop=threading.Event(), progress=progress,
        clock=machine.wall, metrics=metrics,
    )  # fmt: skip
    progress.started()
    loop.start(source)
    assert loop.step(source)
    return metrics


# --- central's answer --------------------------------------------------------------------------


def central_answering(status: int, body: bytes) -> HttpHeartbeat:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    return HttpHeartbeat("http://central:8000", "key", transport=httpx.MockTransport(handle))


def test_the_http_heartbeat_returns_centrals_time_from_its_answer():
    body = json.dumps({"server_time": "2026-11-29T10:00:00.123+00:00"}).encode()

    answered = central_answering(200, body).send({"ready": True})

    assert answered is not None and answered.isoformat() == "2026-11-29T10:00:00.123000+00:00"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (204, b""),
        (200, b"not json"),
        (200, b"[]"),
        (200, b'{"server_time": 5}'),
        (200, b'{"server_time": "yesterday"}'),
        (200, b'{"server_time": "2026-11-29T10:00:00"}'),  # no offset: whose time?
    ],
)
def test_an_answer_without_a_usable_time_is_taken_but_gives_no_time(status, body):
    assert central_answering(status, body).send({"ready": True}) is None
