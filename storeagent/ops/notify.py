"""systemd service notifications (sd_notify) with the standard library only.

Under `Type=notify` systemd passes NOTIFY_SOCKET (and WATCHDOG_USEC when WatchdogSec= is
set). A side thread of the agent then tells it:

- `READY=1` once the HTTP server is listening and /readyz would answer 200;
- while starting (a long first bootstrap), `EXTEND_TIMEOUT_USEC=` so the start timeout only
  fires when the sync loop stops coming round;
- `WATCHDOG=1` every WATCHDOG_USEC / 2, but only while the sync loop keeps coming round: a
  wedged consumer thread stops the pings and systemd restarts the agent;
- `STATUS=` a short line such as "synced; lag 0" whenever it changes;
- `STOPPING=1` as soon as the stop event is set.

Without NOTIFY_SOCKET none of this runs. `Notifier` is the port: `SocketNotifier` is the real
adapter; the fake, RecordingNotifier, lives in tests/support/agent_fakes.py. The thread is a
SupervisedTask (ops.supervisor) running SystemdNotify.run.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from invwire.logs import EventLog
from storeagent.ops.vitals import Vitals

CHECK_S = 0.1  # how often readiness is checked until READY=1 is sent
STATUS_EVERY_S = 5.0  # status refresh when systemd runs no watchdog
LOOP_STALL_S = 20.0  # > the longest quiet gap of a live loop (connect timeout + max backoff)
SEND_TIMEOUT_S = 1.0


class Notifier(Protocol):
    def send(self, fields: Sequence[str]) -> None:
        """Send `NAME=value` assignments as one datagram; never raises."""
        ...

    def close(self) -> None: ...


class SocketNotifier:
    """sd_notify(3): one AF_UNIX datagram per message; '@' means the abstract namespace."""

    def __init__(self, address: str, log: EventLog | None = None) -> None:
        self.address = address
        self._target = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.settimeout(SEND_TIMEOUT_S)
        self._log = log or EventLog("storeagent.notify")
        self._warned = False

    def send(self, fields: Sequence[str]) -> None:
        if not fields:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self._target)
        except OSError as exc:
            if not self._warned:  # systemd may be gone (shutdown); the agent carries on
                self._log.warning("notify.send_failed", socket=self.address, message=str(exc))
                self._warned = True

    def close(self) -> None:
        self._sock.close()


@dataclass(frozen=True)
class SystemdLink:
    """What the service manager handed us: where to notify, and the watchdog timeout."""

    notifier: Notifier
    watchdog_s: float | None = None

    @property
    def beat_s(self) -> float:
        return self.watchdog_s / 2 if self.watchdog_s else STATUS_EVERY_S


def systemd_link(env: Mapping[str, str], pid: int | None = None) -> SystemdLink | None:
    """None (notifications off) unless NOTIFY_SOCKET names a Unix socket."""
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return None
    if not address.startswith(("/", "@")):
        EventLog("storeagent.notify").warning("notify.socket_unsupported", socket=address)
        return None
    return SystemdLink(
        SocketNotifier(address), watchdog_seconds(env, os.getpid() if pid is None else pid)
    )


def watchdog_seconds(env: Mapping[str, str], pid: int) -> float | None:
    """sd_watchdog_enabled(3): WATCHDOG_USEC, unless WATCHDOG_PID names another process."""
    usec, owner = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (owner and owner != str(pid)):
        return None
    return int(usec) / 1_000_000


@dataclass(frozen=True)
class Health:
    ready: bool
    bootstrapped: bool
    loop_idle_s: float | None  # since the sync loop last came round; None: not running
    lag: int | None  # records on the broker not yet in the replica; None: ends unknown
    problem: str | None = None  # kafka.auth_failed, kafka.not_authorized, apply_failing


class AgentHealth:
    """Reads the agent's health: the /readyz checks (once `listening`), the loop's liveness
    and the lag."""

    def __init__(self, vitals: Vitals, listening: Callable[[], bool]) -> None:
        self._vitals, self._listening = vitals, listening

    def __call__(self) -> Health:
        return Health(
            ready=self._listening() and self._vitals.ready(),
            bootstrapped=self._vitals.bootstrapped(),
            loop_idle_s=self._vitals.loop_idle_s(),
            lag=self._vitals.total_lag(),
            problem=next((p.code for p in self._vitals.problems()), None),
        )


def describe(health: Health, stall_after_s: float = LOOP_STALL_S) -> str:
    """The one-line STATUS shown by `systemctl status`."""
    idle, lag = health.loop_idle_s, health.lag
    if idle is None:
        return "starting"
    if idle >= stall_after_s:
        return f"sync loop stalled for {idle:.0f} s"
    if health.problem is not None:
        return f"{health.problem}; lag {'?' if lag is None else lag}"
    return _sync_state(health, lag)


def _sync_state(health: Health, lag: int | None) -> str:
    if lag is None:
        return "connecting to Kafka"
    if not health.bootstrapped:
        return f"bootstrapping; {lag} records to go"
    if not health.ready:
        return f"not consuming; lag {lag}"
    return f"synced; lag {lag}"


class Announcer:
    """Decides what to tell systemd from successive health readings; no I/O."""

    def __init__(self, link: SystemdLink, stall_after_s: float = LOOP_STALL_S) -> None:
        self._watchdog = link.watchdog_s is not None
        self._extend_usec = int(3 * link.beat_s * 1_000_000)
        self._stall_after_s = stall_after_s
        self._status: str | None = None
        self.ready = False

    def update(self, health: Health, *, beat: bool) -> list[str]:
        """Fields for this round; `beat` marks the rounds that may feed the watchdog."""
        fields: list[str] = []
        if health.ready and not self.ready:
            self.ready = True
            fields.append("READY=1")
        if beat and self._loop_alive(health):
            fields += self._liveness()
        status = describe(health, self._stall_after_s)
        if (beat or fields) and status != self._status:
            self._status = status
            fields.append(f"STATUS={status}")
        return fields

    def stopping(self) -> list[str]:
        return ["STOPPING=1", "STATUS=stopping"]

    def _loop_alive(self, health: Health) -> bool:
        return health.loop_idle_s is not None and health.loop_idle_s < self._stall_after_s

    def _liveness(self) -> list[str]:
        if not self.ready:
            return [f"EXTEND_TIMEOUT_USEC={self._extend_usec}"]
        return ["WATCHDOG=1"] if self._watchdog else []


class SystemdNotify:
    """Reports health to systemd until `stop`, then STOPPING=1."""

    def __init__(
        self,
        link: SystemdLink,
        health: Callable[[], Health],
        *,
        log: EventLog | None = None,
        check_s: float = CHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._link, self._health = link, health
        self._check_s, self._clock = check_s, clock
        self._log = log or EventLog("storeagent.notify")
        self._announcer = Announcer(link)

    def run(self, stop: threading.Event) -> None:
        self._log.info("notify.started", watchdog_s=self._link.watchdog_s, beat_s=self._link.beat_s)
        try:
            self._report_until_stopped(stop)
        finally:
            self._link.notifier.send(self._announcer.stopping())

    def _report_until_stopped(self, stop: threading.Event) -> None:
        next_beat = self._clock()
        while not stop.wait(self._wait_s(next_beat)):
            beat = self._clock() >= next_beat
            if beat:
                next_beat = self._clock() + self._link.beat_s
            self._link.notifier.send(self._announcer.update(self._health(), beat=beat))

    def _wait_s(self, next_beat: float) -> float:
        """Poll readiness often until READY=1 is out; then wake only for the beats."""
        if not self._announcer.ready:
            return self._check_s
        return max(next_beat - self._clock(), 0.0)
