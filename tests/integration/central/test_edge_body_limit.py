"""`central serve` as a real process refuses 200 MB bodies, streamed or declared, with 413
before reading them: its peak memory grows by far less than a body. A signed-in order with a
field central does not know is refused, not half-understood. Over its concurrency limit,
uvicorn answers 503 itself.

No Kafka: the body limit runs before anything Kafka touches, and central runs without it (the
events wait in the outbox)."""

from __future__ import annotations

import json
import secrets
import select
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.waiting import eventually
from tests.support.processes import ADMIN, ADMIN_PASSWORD, BIN, free_port, wait_http

BODY_BYTES = 200 * 1024 * 1024
PIECE = b"x" * (64 * 1024)  # the one buffer every piece of the body is sent from
MAX_GROWTH_BYTES = 50 * 1024 * 1024


@dataclass
class Central:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss(self) -> int:
        """VmHWM: the most resident memory the process has held so far, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/PID/status")


@contextmanager
def serving(workdir: Path, **settings: str) -> Iterator[Central]:
    """`central serve` with an admin, SQLite in `workdir` and `settings` (INVCTL_* names)."""
    env = {
        "INVCTL_DATABASE_URL": f"sqlite:///{workdir / 'central.db'}",
        "INVCTL_JWT_SECRET": secrets.token_hex(32),
        "PATH": str(BIN),
        "HOME": str(workdir),
        "XDG_DATA_HOME": str(workdir / "data"),
        **settings,
    }
    subprocess.run(
        [str(BIN / "central"), "create-admin", ADMIN, "--password-stdin"],
        input=ADMIN_PASSWORD.encode(),
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    with (workdir / "central.log").open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "central"), "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", process=process)
        yield Central(process, port)
    finally:
        process.terminate()
        process.wait(15)


@pytest.fixture
def central(tmp_path) -> Iterator[Central]:
    with serving(tmp_path) as running:
        yield running


@dataclass
class Answer:
    status: int
    body: dict[str, object]
    sent: int  # body bytes the client got out before the answer came


def post_until_answered(port: int, headers: list[str], pieces: Iterator[bytes]) -> Answer:
    """POST over a plain socket, sending `pieces` until the server answers or hangs up, then
    read its answer. (An HTTP client would insist on sending the whole body first.)"""
    head = "\r\n".join(["POST /api/v1/orders HTTP/1.1", "Host: central", *headers, "", ""])
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head.encode())
        for piece in pieces:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer is here
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break  # it answered and hung up
            sent += len(piece)
        return read_answer(sock, sent)


def read_answer(sock: socket.socket, sent: int) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return Answer(status, json.loads(body[: _length(data)]), sent)


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 62  # headers not complete yet


def chunked(total: int) -> Iterator[bytes]:
    """`total` bytes in chunked transfer coding, one 64 KiB chunk at a time."""
    frame = f"{len(PIECE):x}\r\n".encode() + PIECE + b"\r\n"
    for _ in range(total // len(PIECE)):
        yield frame
    yield b"0\r\n\r\n"


def plain(total: int) -> Iterator[bytes]:
    for _ in range(total // len(PIECE)):
        yield PIECE


def assert_too_large(answer: Answer) -> None:
    assert answer.status == 413, answer
    assert answer.body["error"]["code"] == "request.too_large"  # type: ignore[index]
    assert answer.sent < BODY_BYTES, "the answer came before the body was all sent"


def test_200_mb_bodies_are_refused_without_being_read(central):
    json_type = "Content-Type: application/json"
    # Warm up: the refusal's own code paths are loaded before the baseline is taken.
    assert_too_large(
        post_until_answered(central.port, [json_type, "Content-Length: 2097152"], plain(2 << 20))
    )
    before = central.peak_rss()

    streamed = post_until_answered(
        central.port, [json_type, "Transfer-Encoding: chunked"], chunked(BODY_BYTES)
    )
    declared = post_until_answered(
        central.port, [json_type, f"Content-Length: {BODY_BYTES}"], plain(BODY_BYTES)
    )

    assert_too_large(streamed)
    assert_too_large(declared)
    growth = central.peak_rss() - before
    assert growth < MAX_GROWTH_BYTES, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    assert httpx.get(f"{central.url}/healthz", timeout=5).status_code == 200


def test_a_signed_in_order_with_an_unknown_field_is_refused(central):
    with httpx.Client(base_url=central.url, timeout=10) as client:
        form = {"username": ADMIN, "password": ADMIN_PASSWORD}
        token = client.post("/api/v1/auth/token", data=form).json()["access_token"]
        admin = {"Authorization": f"Bearer {token}"}
        store = client.post("/api/v1/stores", json={"id": "s1", "name": "S1"}, headers=admin)
        headers = {"X-API-Key": store.json()["api_key"], "Idempotency-Key": "k1"}
        order = {"lines": [{"sku": "MILK", "quantity": 1}], "discount": "100%"}

        answer = client.post("/api/v1/orders", json=order, headers=headers)

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "request.invalid"
    assert error["details"]["errors"] == [{"field": "discount", "message": "unknown field"}]


def test_an_unfinished_request_head_is_not_buffered_past_the_header_limit(tmp_path):
    unfinished = b"GET /healthz HTTP/1.1\r\nHost: central\r\nX-Padding: " + b"x" * 8192
    with (
        serving(tmp_path, INVCTL_MAX_HEADER_BYTES="4096") as running,
        socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock,
    ):
        sock.sendall(unfinished)  # over the 4 KiB set, and never ended
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b"Invalid HTTP request received.")


def test_over_the_concurrency_limit_uvicorn_answers_503_until_connections_close(tmp_path):
    limit = 3
    with serving(tmp_path, INVCTL_LIMIT_CONCURRENCY=str(limit)) as running, ExitStack() as idle:
        for _ in range(limit):
            idle.enter_context(socket.create_connection(("127.0.0.1", running.port)))

        refused = eventually(
            lambda: (answer := probe(running)).status_code == 503 and answer,
            what="a request over the limit refused",
        )
        assert refused.headers["content-type"].startswith("text/plain")
        assert refused.text == "Service Unavailable"

        idle.close()
        eventually(lambda: probe(running).status_code == 200, what="served again")


def probe(running: Central) -> httpx.Response:
    """GET /healthz on a connection of its own (which counts towards the limit too)."""
    return httpx.get(f"{running.url}/healthz", timeout=5, headers={"Connection": "close"})
