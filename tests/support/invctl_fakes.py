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

FAKE_AGENT = "https://agent.test:8787"  # https: invctl refuses plain HTTP beyond loopback
FAKE_CENTRAL = "https://central.test:8000"
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
    "INVCTL_AGENT_TOKEN_FILE": None,
    "INVCTL_INSECURE": None,
    "INVCTL_CA_FILE": None,
    "INVCTL_OUTPUT": None,
    "INVCTL_UTC": None,
    "NO_COLOR": None,
    "FORCE_COLOR": None,
    # tracing (invwire.tracing) stays off unless a test turns it on
    "OTEL_EXPORTER_OTLP_ENDPOINT": None,
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": None,
    "OTEL_SDK_DISABLED": None,
    "OTEL_TRACES_EXPORTER": None,
}


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    """An error answer in the shape central and the agent use (docs/wire.md)."""
    return {"error": {"code": code, "message": message, "details": details}}


@dataclass
class FakeServer:
    """Answers `(METHOD, URL-without-query)` with canned responses; records every request."""

    routes: dict[tuple[str, str], Answer] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    fallback: Handler | None = None  # answers what no route names (e.g. any GET)
    unreachable: set[str] = field(default_factory=set)  # origins refusing every connection

    def refuse(self, origin: str) -> None:
        """`origin` (e.g. https://dead.test:8000) refuses connections: nothing reaches it."""
        self.unreachable.add(origin)

    def on(self, method: str, url: str, status: int = 200, body: Any = None) -> None:
        content = b"" if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if body is not None else {}
        self.routes[(method, url)] = httpx.Response(status, content=content, headers=headers)

    def on_call(self, method: str, url: str, handler: Handler) -> None:
        self.routes[(method, url)] = handler

    def handle(self, request: httpx.Request) -> httpx.Response:
        origin = str(request.url.copy_with(raw_path=b"/")).rstrip("/")
        if origin in self.unreachable:
            raise httpx.ConnectError(f"[Errno 111] Connection refused: {origin}", request=request)
        self.requests.append(request)
        url = str(request.url.copy_with(query=None))
        answer = self.routes.get((request.method, url), self.fallback)
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
        # XDG_DATA_HOME: the default agent token file is in the user data directory
        data = str(self.config_dir.parent / "data")
        self.env = {
            **ISOLATED_ENV,
            "INVCTL_CONFIG_DIR": str(self.config_dir),
            "XDG_DATA_HOME": data,
            **self.env,
        }

    def __call__(
        self, *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
    ) -> Result:
        from invctl.main import app

        deps = Deps(transport=self.server.transport(), now=lambda: self.now)
        merged = {**self.env, **(env or {})}
        return CliRunner().invoke(app, list(args), input=input, env=merged, obj=deps)


FAKE_BATCH = "batch-1"


@dataclass
class FakeImports:
    """Central's import routes in memory (`POST /import`, and a staged import's batch): a
    product row naming a category it does not know is one it cannot apply, and then it
    answers as central does, 422 import.invalid listing every such row, applying nothing."""

    categories: set[str] = field(default_factory=set)
    applied: list[dict[str, Any]] = field(default_factory=list)
    staged: list[dict[str, Any]] | None = None  # the open batch's rows; None: no batch

    def install(self, server: FakeServer, api: str) -> None:
        batch = f"{api}/import/batches/{FAKE_BATCH}"
        server.on_call("POST", f"{api}/import", lambda r: self._apply(_rows(r)))
        server.on_call("POST", f"{api}/import/batches", self._open)
        server.on_call("POST", f"{batch}/rows", self._stage)
        server.on_call("POST", f"{batch}/commit", self._commit)
        server.on_call("DELETE", batch, self._discard)

    def _apply(self, rows: list[dict[str, Any]]) -> httpx.Response:
        known = self.categories | {r["name"] for r in rows if r["kind"] == "category"}
        refused = [
            {"line": r["line"], "code": "category.not_found", "message": "unknown category"}
            for r in rows
            if r["kind"] == "product" and r["category"] not in known
        ]
        if refused:
            body = error_body("import.invalid", "rows are invalid", errors=refused)
            return httpx.Response(422, json=body)
        self.categories = known
        self.applied += rows
        return httpx.Response(200, json={"created": len(rows), "updated": 0, "unchanged": 0})

    def _open(self, _request: httpx.Request) -> httpx.Response:
        self.staged = []
        return httpx.Response(201, json={"id": FAKE_BATCH, "rows": 0})

    def _stage(self, request: httpx.Request) -> httpx.Response:
        if self.staged is None:
            return httpx.Response(404, json=error_body("import.batch_not_found", "no batch"))
        self.staged += _rows(request)
        return httpx.Response(200, json={"id": FAKE_BATCH, "rows": len(self.staged)})

    def _commit(self, _request: httpx.Request) -> httpx.Response:
        if self.staged is None:
            return httpx.Response(404, json=error_body("import.batch_not_found", "no batch"))
        rows, self.staged = self.staged, None
        return self._apply(rows)

    def _discard(self, _request: httpx.Request) -> httpx.Response:
        if self.staged is None:
            return httpx.Response(404, json=error_body("import.batch_not_found", "no batch"))
        self.staged = None
        return httpx.Response(204)


def _rows(request: httpx.Request) -> list[dict[str, Any]]:
    return list(json.loads(request.content)["rows"])
