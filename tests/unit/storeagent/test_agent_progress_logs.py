import io
import json
import logging

import pytest

from invwire.logs import EventLog, configure_logging
from storeagent.sync.progress import SyncProgress


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_loop_counts_as_consuming_only_after_a_round_and_until_it_stalls():
    ticks = Ticks()
    progress = SyncProgress(stall_after=60, clock=ticks)
    progress.started()
    assert not progress.is_consuming()

    progress.beat()
    ticks.now += 59
    assert progress.is_consuming()

    ticks.now += 2
    assert not progress.is_consuming()


def test_a_stopped_loop_is_not_consuming():
    progress = SyncProgress()
    progress.started()
    progress.beat()

    progress.stopped()

    assert not progress.is_consuming()


def test_totals_add_up_batches():
    progress = SyncProgress()

    progress.count(applied=2, stale=1, dead_lettered=0)
    progress.count(applied=1, stale=0, dead_lettered=3)

    assert progress.totals() == {"applied": 3, "stale": 1, "dead_lettered": 3}


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.handlers[:], root.level = saved


def test_log_lines_are_json_objects_with_ts_level_and_event(log_lines):
    EventLog("storeagent.test").warning("consumer.commit_failed", code="kafka.unavailable")

    [line] = log_lines()

    assert line["event"] == "consumer.commit_failed"
    assert (line["level"], line["code"]) == ("warning", "kafka.unavailable")
    assert line["ts"].endswith("+00:00")


def test_fields_cannot_overwrite_the_envelope_keys(log_lines):
    EventLog("storeagent").info("agent.started", event="spoofed", level="debug")

    [line] = log_lines()

    assert (line["event"], line["level"]) == ("agent.started", "info")


def test_library_messages_and_tracebacks_stay_on_one_line(log_lines):
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    try:
        raise ValueError("boom")
    except ValueError:
        EventLog("storeagent").error("consumer.crashed", exc=True)

    library, crash = log_lines()

    assert library == {
        **library,
        "event": "library.log",
        "logger": "uvicorn.error",
        "message": "Started server process [42]",
    }
    assert "ValueError: boom" in crash["exc"]
