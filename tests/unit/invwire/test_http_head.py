"""invwire.http_head: uvicorn's httptools protocol, with the request head bounded as h11 bounds
it. A real uvicorn server on loopback, spoken to over a raw socket."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from harness.waiting import eventually
from invwire.http_head import BoundedHttpTools

LIMIT = 4096
INVALID = b"Invalid HTTP request received."


async def echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 200 with the length of the body it read."""
    assert scope["type"] == "http"
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config = uvicorn.Config(
        echo_length,
        host="127.0.0.1",
        port=free,
        http=BoundedHttpTools,
        h11_max_incomplete_event_size=LIMIT,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, 10, "uvicorn started")
    yield free
    server.should_exit = True
    thread.join(10)
    assert not thread.is_alive()


def head_of(size: int, last: bool = True) -> bytes:
    """A GET whose request line and headers are exactly `size` bytes; the `last` one on its
    connection asks the server to close it after answering."""
    connection = b"close" if last else b"keep-alive"
    start = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: " + connection + b"\r\nX-Pad: "
    padding = size - len(start) - len(b"\r\n\r\n")
    return start + b"p" * padding + b"\r\n\r\n"


def exchange(port: int, *pieces: bytes) -> bytes:
    """Send each piece in its own write, then read until the server closes (the last request
    asks it to)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for piece in pieces:
            sock.sendall(piece)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def statuses(answer: bytes) -> list[bytes]:
    """The status of each answer, in order (a body runs straight into the next status line)."""
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)


def test_a_head_of_exactly_the_limit_is_served(port):
    assert len(head_of(LIMIT)) == LIMIT
    assert statuses(exchange(port, head_of(LIMIT))) == [b"200"]


def test_a_complete_head_one_byte_over_the_limit_is_refused(port):
    answer = exchange(port, head_of(LIMIT + 1))
    assert statuses(answer) == [b"400"]
    assert answer.endswith(INVALID)


def test_a_head_that_never_ends_is_refused_without_waiting_for_its_end(port):
    unfinished = b"GET /x HTTP/1.1\r\nHost: t\r\nX-Pad: "
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(unfinished)
        for _ in range(LIMIT // 512 + 1):  # past the limit, then it waits for an answer
            sock.sendall(b"p" * 512)
        answer = b""
        while chunk := sock.recv(65536):  # the server closes; this side never ended its head
            answer += chunk
    assert statuses(answer) == [b"400"]
    assert answer.endswith(INVALID)


def test_a_head_within_the_limit_sent_in_small_pieces_is_served(port):
    whole = head_of(LIMIT)
    pieces = [whole[i : i + 100] for i in range(0, len(whole), 100)]
    assert statuses(exchange(port, *pieces)) == [b"200"]


def test_a_large_body_read_with_its_head_is_not_counted_as_head(port):
    body = b"b" * (8 * LIMIT)
    request = b"POST /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    request += b"Content-Length: %d\r\n\r\n" % len(body)
    answer = exchange(port, request + body)
    assert statuses(answer) == [b"200"]
    assert answer.endswith(str(len(body)).encode())


def test_pipelined_requests_after_a_large_body_are_all_served(port):
    body = b"b" * (8 * LIMIT)
    first = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    second = head_of(LIMIT)
    # the second head begins in the read that ends the first body, and ends in the next one
    assert statuses(exchange(port, first + second[:100], second[100:])) == [b"200", b"200"]


def test_each_request_on_a_connection_gets_the_whole_limit(port):
    heads = [head_of(LIMIT, last=False), head_of(LIMIT, last=False), head_of(LIMIT)]
    assert statuses(exchange(port, *heads)) == [
        b"200",
        b"200",
        b"200",
    ]
