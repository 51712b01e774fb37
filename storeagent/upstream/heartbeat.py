"""Heartbeats: every few seconds the agent tells central that it is alive and how current its
replica is (`POST /api/v1/stores/heartbeat` as the store, with its API key); central's fleet
view (`invctl sync status --all`) shows them next to each store's consumer-group lag. Each
carries this process's instance id, so central can tell two agents running for one store, and
the interval (`every_s`), so central knows how long an agent that went quiet is still live.
Central answers with its time (`server_time`): each answer is a sample for the agent's
estimate of central's clock (sync.central_clock), on which staleness is measured.

A supervised side task (ops.supervisor running Heartbeat.run): a heartbeat central does not
take is counted and logged (once when they start failing, then at most once a minute) and
never stops the agent; only a bug does. `HeartbeatSender` is the port: `HttpHeartbeat` the
real adapter, RecordingHeartbeat in tests/support/agent_fakes.py the fake. The API key travels
in a header and appears in no log line, error or repr.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import httpx
import peewee

from invwire.errors.agent import AgentError
from invwire.logs import EventLog
from storeagent.clock import Clock, utc_now
from storeagent.ops.metrics import AgentMetrics
from storeagent.ops.vitals import Vitals
from storeagent.sync.central_clock import CentralClock, clock_sample
from storeagent.upstream.client import CentralAt, central_failover, store_session

HEARTBEAT_PATH = "/api/v1/stores/heartbeat"
FAILURE_LOG_EVERY_S = 60.0

Report = Mapping[str, Any]


class HeartbeatFailed(AgentError):
    """Central did not take the heartbeat."""

    code = "heartbeat.failed"


class HeartbeatSender(Protocol):
    def send(self, report: Report) -> datetime | None:
        """Deliver one report and return central's time from its answer (None when the
        answer has none); raises HeartbeatFailed when central does not take it."""
        ...

    def close(self) -> None: ...


class HttpHeartbeat:
    def __init__(
        self,
        central_url: CentralAt,
        api_key: str,
        *,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        routes = central_failover(central_url)
        self.central_url = routes.label  # in messages: every URL that was tried
        self._http = store_session(routes, api_key, timeout_s=timeout_s, transport=transport)

    def __repr__(self) -> str:
        return f"HttpHeartbeat({self.central_url!r})"

    def send(self, report: Report) -> datetime | None:
        try:
            response = self._http.post(HEARTBEAT_PATH, json=dict(report))
        except httpx.HTTPError as exc:
            raise HeartbeatFailed(
                f"cannot reach central at {self.central_url}: {type(exc).__name__}"
            ) from None
        if not response.is_success:
            raise HeartbeatFailed(
                f"central answered HTTP {response.status_code}", status=response.status_code
            )
        return server_time(response)

    def close(self) -> None:
        self._http.close()


def connect_heartbeat(
    central_url: CentralAt | None, api_key: str | None, every_s: float
) -> HeartbeatSender | None:
    """None (no heartbeats) without a central, a key, or an interval."""
    if not central_url or not api_key or every_s <= 0:
        return None
    return HttpHeartbeat(central_url, api_key)


def server_time(response: httpx.Response) -> datetime | None:
    """Central's time in a heartbeat answer (`server_time`, ISO 8601 with its offset); None
    when the answer carries none (a central from before it did: 204, no body)."""
    try:
        moment = datetime.fromisoformat(response.json()["server_time"])
    except (ValueError, TypeError, KeyError):
        return None
    return moment if moment.tzinfo is not None else None


def heartbeat_report(
    vitals: Vitals,
    *,
    instance_id: str,
    now: Clock = utc_now,
    allowances: Callable[[], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The body central's heartbeat endpoint takes; unknown values are left out. Staleness
    is on central's clock as estimated (`clock_offset_s`), negative included."""
    counts = vitals.local_orders()
    report: dict[str, Any] = {
        "instance_id": instance_id,
        "ready": vitals.ready(),
        "offline_queue": counts.queued,
        "rejected_offline": counts.rejected_offline,
        "dead_letters": vitals.dead_letters(),
    }
    lag = vitals.total_lag()
    if lag is not None:
        report["lag"] = lag
    last_event_at = vitals.last_event_at()
    if last_event_at is not None:
        report["last_event_at"] = last_event_at
    staleness = vitals.staleness_s(now())
    if staleness is not None:
        report["staleness_s"] = round(staleness, 3)
    offset = vitals.clock_offset_s()
    if offset is not None:
        report["clock_offset_s"] = round(offset, 3)
    if allowances is not None:  # for central's fleet view
        held = allowances()
        report["allowance_units_held"] = held["units_held"]
        report["allowance_units_used"] = held["units_waiting_replay"]
    return report


class Heartbeat:
    """Sends `report()` (with `every_s` added) through `sender` at once, then every `every_s`
    seconds until `stop`, and closes `sender` when done. Each answer with central's time is
    a sample for `central_clock`; `clock` (monotonic) times the round trip, `wall` is this
    machine's clock; `answered` is called after each heartbeat central took (sales queued
    while it was away may be replayed at once, sales.schedule)."""

    def __init__(
        self,
        sender: HeartbeatSender,
        report: Callable[[], Report],
        *,
        every_s: float,
        metrics: AgentMetrics | None = None,
        log: EventLog | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Clock = utc_now,
        central_clock: CentralClock | None = None,
        answered: Callable[[], None] = lambda: None,
    ) -> None:
        self._sender, self._report, self._every_s = sender, report, every_s
        self._answered = answered
        self._clock, self._wall = clock, wall
        self.central_clock = central_clock or CentralClock()
        self._metrics = metrics or AgentMetrics()
        self._log = log or EventLog("storeagent.heartbeat")
        self._failures = 0
        self._logged_at: float | None = None

    def run(self, stop: threading.Event) -> None:
        self._log.info("heartbeat.started", every_s=self._every_s)
        try:
            while True:
                self.beat()
                if stop.wait(self._every_s):
                    return
        finally:
            self._sender.close()

    def beat(self) -> bool:
        """Send one heartbeat; False when central did not take it."""
        try:
            report = {**self._report(), "every_s": self._every_s}
            sent_at, sent_monotonic = self._wall(), self._clock()
            answered_at = self._sender.send(report)
        except (HeartbeatFailed, peewee.DatabaseError) as exc:
            self._failed(exc)
            return False
        if answered_at is not None:
            sample = clock_sample(sent_at, sent_monotonic, self._clock(), answered_at)
            self.central_clock.add(sample)
        self._succeeded()
        self._answered()
        return True

    def _failed(self, exc: Exception) -> None:
        self._metrics.heartbeat(ok=False)
        self._failures += 1
        now = self._clock()
        if self._logged_at is None or now - self._logged_at >= FAILURE_LOG_EVERY_S:
            self._logged_at = now
            message = exc.message if isinstance(exc, AgentError) else type(exc).__name__
            self._log.warning("heartbeat.failed", message=message, failures=self._failures)

    def _succeeded(self) -> None:
        self._metrics.heartbeat(ok=True)
        if self._failures:
            self._log.info("heartbeat.recovered", failures=self._failures)
        self._failures, self._logged_at = 0, None
