import asyncio
import io
import json
import logging
import sys

import pytest

from invwire.http import RequestContext
from invwire.logs import EventLog, configure_logging


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    configure_logging(logging.DEBUG, stream, fields={"store_id": "s-1"})
    yield stream
    logging.getLogger().handlers.clear()


def lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_event_log_lines_carry_the_event_key_fields_and_process_fields(log_stream):
    EventLog("central.relay").info("relay.lease", leader=True)

    (line,) = lines(log_stream)
    assert (line["event"], line["leader"], line["store_id"]) == ("relay.lease", True, "s-1")


def serve(app, headers):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent


def test_request_context_keeps_a_usable_id_echoes_it_and_logs_it(log_stream):
    seen = []

    async def inner(scope, receive, send):
        EventLog("test").info("inside")
        await send({"type": "http.response.start", "status": 204, "headers": []})

    app = RequestContext(inner, lambda *args: seen.append(args), EventLog("test.http"))
    sent = serve(app, [(b"x-request-id", b"till-7.1")])

    assert (b"x-request-id", b"till-7.1") in sent[0]["headers"]
    assert seen == [("GET", "unmatched", 204, seen[0][3])]
    ours = [line for line in lines(log_stream) if line["event"] != "library.log"]
    assert [line["event"] for line in ours] == ["inside", "http.request"]
    assert {line["request_id"] for line in ours} == {"till-7.1"}


def test_request_context_replaces_an_unusable_id(log_stream):
    async def inner(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    app = RequestContext(inner, lambda *args: None, EventLog("test.http"))
    sent = serve(app, [(b"x-request-id", b"has spaces")])

    (echoed,) = [v for k, v in sent[0]["headers"] if k == b"x-request-id"]
    assert echoed != b"has spaces" and len(echoed) == 32


def test_logging_set_up_without_a_stream_writes_to_stderr_as_it_is_at_each_line(monkeypatch):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        lent = io.StringIO()
        monkeypatch.setattr(sys, "stderr", lent)
        configure_logging()
        lent.close()  # as a test runner closes the stderr it lent to a command it ran
        current = io.StringIO()
        monkeypatch.setattr(sys, "stderr", current)

        EventLog("invwire.test").info("still.logged")

        assert json.loads(current.getvalue())["event"] == "still.logged"
    finally:
        root.handlers[:], root.level = saved
