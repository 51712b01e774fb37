import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from harness.waiting import eventually
from invwire.logs import EventLog
from storeagent.ops.notify import (
    LOOP_STALL_S,
    AgentHealth,
    Announcer,
    Health,
    SocketNotifier,
    SystemdLink,
    SystemdNotify,
    describe,
    systemd_link,
    watchdog_seconds,
)
from storeagent.ops.supervisor import SupervisedTask
from storeagent.ops.vitals import Vitals
from storeagent.replica.db import META_BOOTSTRAPPED, Replica
from storeagent.replica.local_orders import LocalOrders
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import TopicPartition
from tests.support.agent_fakes import RecordingNotifier


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_health(**overrides: object) -> Health:
    values: dict[str, object] = {"ready": True, "bootstrapped": True, "loop_idle_s": 0.1, "lag": 0}
    return Health(**(values | overrides))  # type: ignore[arg-type]


def link(watchdog_s: float | None = 30.0) -> SystemdLink:
    return SystemdLink(RecordingNotifier(), watchdog_s)


@pytest.fixture
def datagram_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket in a short temporary directory (paths max 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sd") as directory:
        path = str(Path(directory) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
            server.bind(path)
            server.settimeout(2)
            yield server, path


def test_notifications_are_off_without_notify_socket():
    assert systemd_link({}) is None
    assert systemd_link({"NOTIFY_SOCKET": "", "WATCHDOG_USEC": "2000000"}) is None


def test_an_unsupported_socket_address_turns_notifications_off():
    assert systemd_link({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "42"}, 2.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "43"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_timeout_is_watchdog_usec_when_meant_for_this_process(env, expected):
    assert watchdog_seconds(env, pid=42) == expected


def test_pings_come_at_half_the_watchdog_timeout_and_status_every_5_s_without_one():
    assert link(30.0).beat_s == 15.0
    assert link(None).beat_s == 5.0


def test_fields_go_out_as_one_datagram_to_a_socket_path(datagram_socket):
    server, path = datagram_socket
    notifier = systemd_link({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert notifier is not None and notifier.watchdog_s == 2.0

    notifier.notifier.send(["READY=1", "STATUS=synced; lag 0"])
    notifier.notifier.close()

    assert server.recv(4096) == b"READY=1\nSTATUS=synced; lag 0"


def test_an_at_sign_means_the_abstract_namespace():
    name = f"storeagent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(2)
        notifier = SocketNotifier("@" + name)

        notifier.send(["WATCHDOG=1"])
        notifier.close()

        assert server.recv(4096) == b"WATCHDOG=1"


def test_a_vanished_socket_never_raises():
    notifier = SocketNotifier(f"/nonexistent/{uuid.uuid4().hex}")

    notifier.send(["STOPPING=1"])
    notifier.send(["STOPPING=1"])
    notifier.close()


def test_ready_is_sent_once_when_the_agent_turns_ready():
    announcer = Announcer(link())

    first = announcer.update(make_health(ready=False, bootstrapped=False, lag=10), beat=False)
    second = announcer.update(make_health(), beat=False)
    third = announcer.update(make_health(), beat=False)

    assert first == []
    assert second == ["READY=1", "STATUS=synced; lag 0"]
    assert third == []


def test_watchdog_is_fed_on_beats_only_while_the_loop_comes_round():
    announcer = Announcer(link())
    announcer.update(make_health(), beat=False)

    alive = announcer.update(make_health(loop_idle_s=LOOP_STALL_S - 1), beat=True)
    between_beats = announcer.update(make_health(), beat=False)
    wedged = announcer.update(make_health(loop_idle_s=LOOP_STALL_S), beat=True)
    stopped = announcer.update(make_health(loop_idle_s=None), beat=True)

    assert alive == ["WATCHDOG=1"]
    assert between_beats == []
    assert wedged == [f"STATUS=sync loop stalled for {LOOP_STALL_S:.0f} s"]
    assert stopped == ["STATUS=starting"]


def test_without_a_watchdog_beats_only_refresh_the_status():
    announcer = Announcer(link(None))
    announcer.update(make_health(), beat=False)

    assert announcer.update(make_health(lag=3), beat=True) == ["STATUS=synced; lag 3"]


def test_while_starting_a_live_loop_extends_the_start_timeout_by_three_beats():
    announcer = Announcer(link(2.0))
    starting = make_health(ready=False, bootstrapped=False, lag=500)

    assert announcer.update(starting, beat=True) == [
        "EXTEND_TIMEOUT_USEC=3000000",
        "STATUS=bootstrapping; 500 records to go",
    ]
    assert announcer.update(make_health(ready=False, loop_idle_s=None), beat=True) == [
        "STATUS=starting"
    ]


def test_status_is_sent_only_when_it_changes():
    announcer = Announcer(link(None))
    announcer.update(make_health(), beat=False)

    assert announcer.update(make_health(), beat=True) == []
    assert announcer.update(make_health(lag=7), beat=True) == ["STATUS=synced; lag 7"]


@pytest.mark.parametrize(
    ("health", "status"),
    [
        (make_health(loop_idle_s=None, ready=False), "starting"),
        (make_health(loop_idle_s=42.4), "sync loop stalled for 42 s"),
        (make_health(ready=False, bootstrapped=False, lag=None), "connecting to Kafka"),
        (make_health(ready=False, bootstrapped=False, lag=9), "bootstrapping; 9 records to go"),
        (make_health(ready=False, lag=4), "not consuming; lag 4"),
        (make_health(lag=0), "synced; lag 0"),
        (make_health(ready=False, lag=12, problem="apply_failing"), "apply_failing; lag 12"),
        (
            make_health(ready=False, lag=None, problem="kafka.auth_failed"),
            "kafka.auth_failed; lag ?",
        ),
    ],
)
def test_status_line_says_what_the_agent_is_doing(health, status):
    assert describe(health) == status


def test_agent_health_reads_readiness_liveness_and_lag(replica: Replica):
    ticks = Ticks()
    progress = SyncProgress(clock=ticks)
    health = AgentHealth(Vitals(replica, LocalOrders(replica), progress), listening=lambda: True)
    tp = TopicPartition("inventory-updated", 0)
    assert health() == Health(ready=False, bootstrapped=False, loop_idle_s=None, lag=None)

    progress.started()
    progress.assigned(1)
    progress.broker_answered()
    progress.beat()
    progress.set_end_offsets({tp: 10})
    with replica.transaction():
        replica.save_offsets({tp: 7})
        replica.set_meta({META_BOOTSTRAPPED: "1"})
    ticks.now += 1.5

    assert health() == Health(ready=True, bootstrapped=True, loop_idle_s=1.5, lag=3)


def test_a_loop_that_only_retries_still_counts_as_alive_but_a_wedged_one_does_not(
    replica: Replica,
):
    ticks = Ticks()
    progress = SyncProgress(clock=ticks)
    announcer = Announcer(link())
    health = AgentHealth(Vitals(replica, LocalOrders(replica), progress), listening=lambda: True)
    progress.started()
    progress.tick()  # e.g. Kafka unreachable: the loop comes round without a completed poll
    ticks.now += 1

    retrying = announcer.update(health(), beat=True)
    ticks.now += LOOP_STALL_S
    wedged = announcer.update(health(), beat=True)

    assert retrying[0] == "EXTEND_TIMEOUT_USEC=45000000"
    assert wedged == [f"STATUS=sync loop stalled for {LOOP_STALL_S + 1:.0f} s"]


class Probe:
    """A health source the test switches, counting how often it was read."""

    def __init__(self, health: Health) -> None:
        self.health = health
        self.reads = 0

    def __call__(self) -> Health:
        self.reads += 1
        return self.health


def run_thread(
    probe: Callable[[], Health], watchdog_s: float = 0.2
) -> tuple[SupervisedTask, RecordingNotifier, threading.Event, list[str]]:
    """The notifier, run by a supervised task as the agent does."""
    notifier = RecordingNotifier()
    stop = threading.Event()
    failures: list[str] = []
    notify = SystemdNotify(SystemdLink(notifier, watchdog_s), probe, check_s=0.01)
    thread = SupervisedTask(
        "storeagent-notify",
        partial(notify.run, stop),
        crashed="notify.crashed",
        stop=stop,
        on_failure=lambda: failures.append("failed"),
        log=EventLog("storeagent"),
    )
    thread.start()
    return thread, notifier, stop, failures


def test_thread_announces_ready_then_pings_and_says_stopping_when_stopped():
    probe = Probe(make_health(ready=False, bootstrapped=False, lag=5))
    thread, notifier, stop, failures = run_thread(probe)
    eventually(lambda: probe.reads >= 3)
    assert notifier.values("READY") == []

    probe.health = make_health()
    eventually(lambda: len(notifier.values("WATCHDOG")) >= 2)
    stop.set()
    thread.join(2)

    names = [name for message in notifier.messages for name in message]
    assert names.count("READY") == 1
    assert names.index("READY") < names.index("WATCHDOG")
    assert notifier.messages[-1] == {"STOPPING": "1", "STATUS": "stopping"}
    assert not thread.is_alive() and not thread.failed and failures == []


def test_thread_stops_pinging_while_the_loop_is_wedged():
    probe = Probe(make_health())
    thread, notifier, stop, _ = run_thread(probe, watchdog_s=0.1)
    eventually(lambda: len(notifier.values("WATCHDOG")) >= 1)

    probe.health = make_health(loop_idle_s=LOOP_STALL_S + 1)
    eventually(lambda: any("stalled" in s for s in notifier.values("STATUS")))
    pings = len(notifier.values("WATCHDOG"))
    reads = probe.reads
    eventually(lambda: probe.reads >= reads + 3)

    assert len(notifier.values("WATCHDOG")) == pings
    stop.set()
    thread.join(2)


def test_a_failing_health_read_fails_the_thread_and_stops_the_daemon():
    def broken() -> Health:
        raise RuntimeError("a bug")

    thread, notifier, _, failures = run_thread(broken)
    thread.join(2)

    assert thread.failed and failures == ["failed"]
    assert notifier.messages[-1] == {"STOPPING": "1", "STATUS": "stopping"}


def test_notify_socket_of_another_process_is_not_used_for_the_watchdog():
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    found = systemd_link(env)

    assert found is not None and found.watchdog_s is None
    found.notifier.close()
