"""Heartbeats to central: the report, the side task's rhythm and failure handling, and the
HTTP adapter (httpx MockTransport), which never shows the store's key."""

import io
import json
import logging
import threading
from datetime import UTC, datetime
from functools import partial

import httpx
import pytest

from harness.waiting import eventually
from invwire.errors.agent import ConfigError
from invwire.logs import EventLog, configure_logging
from storeagent.ops.metrics import AgentMetrics
from storeagent.ops.supervisor import SupervisedTask
from storeagent.ops.vitals import Vitals
from storeagent.replica.db import META_BOOTSTRAPPED, META_LAST_EVENT_AT
from storeagent.replica.local_orders import LocalOrders
from storeagent.settings import load_settings
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import TopicPartition
from storeagent.upstream.heartbeat import (
    HEARTBEAT_PATH,
    Heartbeat,
    HeartbeatFailed,
    HttpHeartbeat,
    connect_heartbeat,
    heartbeat_report,
)
from tests.support.agent_fakes import FixedClock, RecordingHeartbeat

KEY = "sk_live_store_key_0123456789"


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    configure_logging(logging.INFO, stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    configure_logging()


def test_report_tells_readiness_lag_last_event_and_the_local_backlogs(replica):
    progress = SyncProgress()
    tp = TopicPartition("inventory-updated", 0)
    progress.started()
    progress.assigned(1)
    progress.broker_answered()
    progress.beat()
    progress.set_end_offsets({tp: 12})
    orders = LocalOrders(replica)
    with replica.transaction():
        replica.save_offsets({tp: 9})
        replica.set_meta(
            {META_BOOTSTRAPPED: "1", META_LAST_EVENT_AT: "2026-11-29T10:00:00.123456+00:00"}
        )
        orders.add_pending("r1", "k1", "f", [])
        orders.queue("r1", "central.unavailable", "down")

    now = FixedClock(datetime(2026, 11, 29, 10, 0, 30, 123456, tzinfo=UTC))

    report = heartbeat_report(Vitals(replica, orders, progress), instance_id="i-1", now=now)

    assert report == {
        "instance_id": "i-1",
        "ready": True,
        "lag": 3,
        "last_event_at": "2026-11-29T10:00:00.123456+00:00",
        "staleness_s": 30.0,
        "offline_queue": 1,
        "rejected_offline": 0,
        "dead_letters": 0,
    }


def test_report_leaves_out_what_is_not_known_yet(replica):
    report = heartbeat_report(
        Vitals(replica, LocalOrders(replica), SyncProgress()), instance_id="i-1"
    )

    assert report == {
        "instance_id": "i-1",
        "ready": False,
        "offline_queue": 0,
        "rejected_offline": 0,
        "dead_letters": 0,
    }


def make_thread(sender, report=lambda: {"ready": True}, stop=None, **kw):
    """The heartbeat, and the supervised task that runs it as the agent does."""
    failures: list[str] = []
    stop = stop or threading.Event()
    beats = Heartbeat(sender, report, **({"every_s": 0.01} | kw))
    thread = SupervisedTask(
        "storeagent-heartbeat",
        partial(beats.run, stop),
        crashed="heartbeat.crashed",
        stop=stop,
        on_failure=lambda: failures.append("stopped the agent"),
        log=EventLog("storeagent"),
    )
    return beats, thread, failures


def test_heartbeats_go_out_at_once_then_every_interval_until_stopped():
    sender = RecordingHeartbeat()
    stop = threading.Event()
    _, thread, failures = make_thread(sender, stop=stop)

    thread.start()
    eventually(lambda: len(sender.reports) >= 3, 5, "three heartbeats")
    stop.set()
    thread.join(2)

    assert sender.reports[0] == {"ready": True, "every_s": 0.01}, "the interval goes along"
    assert not thread.is_alive() and not thread.failed and not failures
    assert sender.closed


def test_a_failing_central_is_counted_and_logged_once_a_minute_never_fatal(log_lines):
    sender = RecordingHeartbeat()
    now = [0.0]
    metrics = AgentMetrics()
    beats, _, failures = make_thread(sender, metrics=metrics, clock=lambda: now[0])
    sender.failing = 5

    results = []
    for at in (0, 10, 30, 61, 70):
        now[0] = at
        results.append(beats.beat())
    now[0] = 80
    results.append(beats.beat())

    assert results == [False] * 5 + [True]
    events = [(line["event"], line.get("failures")) for line in log_lines()]
    assert events == [("heartbeat.failed", 1), ("heartbeat.failed", 4), ("heartbeat.recovered", 5)]
    counted = metrics.registry.get_sample_value
    assert counted("storeagent_heartbeats_total", {"result": "failed"}) == 5
    assert counted("storeagent_heartbeats_total", {"result": "ok"}) == 1
    assert not failures


def test_a_heartbeat_central_took_says_central_is_back_and_a_failed_one_does_not():
    sender = RecordingHeartbeat()
    answered: list[int] = []
    beats, _, _ = make_thread(sender, answered=lambda: answered.append(1))
    sender.failing = 1

    assert not beats.beat() and answered == []
    assert beats.beat() and answered == [1]


def test_a_bug_in_the_heartbeat_stops_the_agent(log_lines):
    def broken_report():
        raise RuntimeError("bug")

    sender = RecordingHeartbeat()
    _, thread, failures = make_thread(sender, report=broken_report)

    thread.start()
    thread.join(2)

    assert thread.failed and failures == ["stopped the agent"]
    assert sender.closed
    assert [line["event"] for line in log_lines()][-1] == "heartbeat.crashed"


def mock_central(answer: int = 204):
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(answer)

    return seen, httpx.MockTransport(handle)


def test_http_heartbeat_posts_the_report_as_the_store():
    seen, transport = mock_central()
    sender = HttpHeartbeat("http://central:8000", KEY, transport=transport)

    sender.send({"ready": True, "lag": 0})

    request = seen[0]
    assert (request.method, request.url.path) == ("POST", HEARTBEAT_PATH)
    assert request.headers["X-API-Key"] == KEY
    assert json.loads(request.content) == {"ready": True, "lag": 0}


def test_http_heartbeat_refused_or_unreachable_raises_without_the_key():
    _, refusing = mock_central(401)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"boom {request.headers['X-API-Key']}")

    senders = [
        HttpHeartbeat("http://central:8000", KEY, transport=refusing),
        HttpHeartbeat("http://central:8000", KEY, transport=httpx.MockTransport(unreachable)),
    ]
    for sender in senders:
        with pytest.raises(HeartbeatFailed) as caught:
            sender.send({"ready": True})
        assert KEY not in str(caught.value) and KEY not in repr(sender)
    assert "401" in str(caught.value) or "ConnectError" in str(caught.value)


def test_no_heartbeats_without_central_key_or_interval():
    assert connect_heartbeat(None, KEY, 10) is None
    assert connect_heartbeat("http://central:8000", None, 10) is None
    assert connect_heartbeat("http://central:8000", KEY, 0) is None
    assert isinstance(connect_heartbeat("http://central:8000", KEY, 10), HttpHeartbeat)


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({}, {}, 10.0),
        ({}, {"STOREAGENT_HEARTBEAT_SECONDS": "1"}, 1.0),
        ({"heartbeat_seconds": 2.5}, {"STOREAGENT_HEARTBEAT_SECONDS": "1"}, 2.5),
        ({"heartbeat_seconds": 0}, {}, 0.0),
    ],
)
def test_heartbeat_interval_comes_from_flag_then_environment(flags, env, expected):
    settings = load_settings({"store_id": "s1", **flags}, {"STOREAGENT_API_KEY": "k", **env})

    assert settings.heartbeat_seconds == expected
    assert settings.summary()["heartbeat_s"] == expected


def test_heartbeat_interval_from_the_config_file(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text('store_id = "s1"\nheartbeat_seconds = 30\n')

    assert load_settings({}, {"STOREAGENT_API_KEY": "k"}, config).heartbeat_seconds == 30.0


@pytest.mark.parametrize("raw", ["-1", "0.01", "abc", "7200", "nan"])
def test_a_bad_heartbeat_interval_is_a_config_error(raw):
    with pytest.raises(ConfigError) as caught:
        load_settings({"store_id": "s1"}, {"STOREAGENT_HEARTBEAT_SECONDS": raw})
    assert caught.value.details == {"field": "heartbeat_seconds"}
