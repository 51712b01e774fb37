"""Heartbeats: every few seconds the agent tells central that it is alive and how current its
replica is (`POST /api/v1/stores/heartbeat` as the store, with its API key); central's fleet
view (`invctl sync status --all`) shows them next to each store's consumer-group lag.

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
from typing import Any, Protocol

import httpx
import peewee

from invwire.logs import EventLog
from storeagent.errors import AgentError
from storeagent.ops.metrics import AgentMetrics
from storeagent.ops.vitals import Vitals

HEARTBEAT_PATH = "/api/v1/stores/heartbeat"
FAILURE_LOG_EVERY_S = 60.0

Report = Mapping[str, Any]


class HeartbeatFailed(AgentError):
    """Central did not take the heartbeat."""

    code = "heartbeat.failed"


class HeartbeatSender(Protocol):
    def send(self, report: Report) -> None:
        """Deliver one report; raises HeartbeatFailed when central does not take it."""
        ...

    def close(self) -> None: ...


class HttpHeartbeat:
    def __init__(
        self,
        central_url: str,
        api_key: str,
        *,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.central_url = central_url
        self._http = httpx.Client(
            base_url=central_url,
            headers={"User-Agent": "storeagent", "X-API-Key": api_key},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0)),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"HttpHeartbeat({self.central_url!r})"

    def send(self, report: Report) -> None:
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

    def close(self) -> None:
        self._http.close()


def connect_heartbeat(
    central_url: str | None, api_key: str | None, every_s: float
) -> HeartbeatSender | None:
    """None (no heartbeats) without a central, a key, or an interval."""
    if not central_url or not api_key or every_s <= 0:
        return None
    return HttpHeartbeat(central_url, api_key)


def heartbeat_report(vitals: Vitals) -> dict[str, Any]:
    """The body central's heartbeat endpoint takes; unknown values are left out."""
    counts = vitals.local_orders()
    report: dict[str, Any] = {
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
    return report


class Heartbeat:
    """Sends `report()` through `sender` at once, then every `every_s` seconds until `stop`,
    and closes `sender` when done."""

    def __init__(
        self,
        sender: HeartbeatSender,
        report: Callable[[], Report],
        *,
        every_s: float,
        metrics: AgentMetrics | None = None,
        log: EventLog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sender, self._report, self._every_s = sender, report, every_s
        self._clock = clock
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
            self._sender.send(self._report())
        except (HeartbeatFailed, peewee.DatabaseError) as exc:
            self._failed(exc)
            return False
        self._succeeded()
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
