"""The body limit answers 413 in the error shape before the app reads past the limit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from invwire.limits import BodyLimit, fixed_limit

pytestmark = pytest.mark.unit

LIMIT = 100


def _client() -> tuple[TestClient, list[int]]:
    app = FastAPI()
    reads: list[int] = []

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        reads.append(len(body))
        return {"bytes": len(body)}

    @app.exception_handler(Exception)
    async def unexpected(_: Request, __: Exception) -> JSONResponse:
        return JSONResponse({"error": {"code": "internal"}}, status_code=500)

    return TestClient(BodyLimit(app, fixed_limit(LIMIT)), raise_server_exceptions=False), reads


def test_a_body_within_the_limit_reaches_the_app() -> None:
    client, reads = _client()
    answer = client.post("/echo", content=b"a" * LIMIT)
    assert answer.status_code == 200
    assert reads == [LIMIT]


def test_a_declared_length_over_the_limit_is_refused_before_the_app_runs() -> None:
    client, reads = _client()
    answer = client.post("/echo", content=b"a" * (LIMIT + 1))
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request.too_large"
    assert answer.json()["error"]["details"] == {"limit_bytes": LIMIT}
    assert reads == []


def test_a_streamed_body_is_cut_at_the_limit_not_a_500() -> None:
    client, reads = _client()

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"a" * 30

    answer = client.post("/echo", content=chunks())
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request.too_large"
    assert reads == []
