"""Fakes for testing invctl without a network: a scripted HTTP server behind
`httpx.MockTransport`, and a runner that injects it through the `Deps` seam."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner, Result

from invctl.context import Deps

FAKE_AGENT = "http://agent.test:8787"
FAKE_CENTRAL = "http://central.test:8000"
FIXED_NOW = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]
Answer = httpx.Response | Handler
ISOLATED_ENV: dict[str, str | None] = {
    "INVCTL_AGENT": None,
    "INVCTL_CENTRAL": None,
    "INVCTL_TOKEN": None,
    "INVCTL_API_KEY": None,
    "INVCTL_TIMEOUT": None,
    "INVCTL_DEBUG": None,
    "INVCTL_REQUEST_ID": None,
}


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    """An error answer in the shape central and the agent use (docs/wire.md)."""
    return {"error": {"code": code, "message": message, "details": details}}


@dataclass
class FakeServer:
    """Answers `(METHOD, URL-without-query)` with canned responses; records every request."""

    routes: dict[tuple[str, str], Answer] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, url: str, status: int = 200, body: Any = None) -> None:
        content = b"" if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if body is not None else {}
        self.routes[(method, url)] = httpx.Response(status, content=content, headers=headers)

    def on_call(self, method: str, url: str, handler: Handler) -> None:
        self.routes[(method, url)] = handler

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url.copy_with(query=None))
        answer = self.routes.get((request.method, url))
        if answer is None:
            return httpx.Response(599, json=error_body("test.no_route", f"no route {url}"))
        return answer(request) if callable(answer) else answer

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def sent_json(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


@dataclass
class CliHarness:
    """Runs `invctl` in-process against `server`, with its own config dir and clock."""

    config_dir: Path
    server: FakeServer = field(default_factory=FakeServer)
    env: dict[str, str | None] = field(default_factory=dict)
    now: datetime = FIXED_NOW

    def __post_init__(self) -> None:
        self.env = {**ISOLATED_ENV, "INVCTL_CONFIG_DIR": str(self.config_dir), **self.env}

    def __call__(
        self, *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
    ) -> Result:
        from invctl.main import app

        deps = Deps(transport=self.server.transport(), now=lambda: self.now)
        merged = {**self.env, **(env or {})}
        return CliRunner().invoke(app, list(args), input=input, env=merged, obj=deps)
