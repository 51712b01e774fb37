"""The store terminal API's credential in tests: a fixed token for in-process apps, the token
file of a real agent, and a TestClient that addresses the app as a till on the store machine
does (a loopback Host, the token on every request)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

TERMINAL_TOKEN = "test-terminal-token-0123456789abcdef"
TERMINAL_URL = "http://127.0.0.1:8787"  # the Host the guard accepts: loopback, the served port


def terminal_headers(token: str = TERMINAL_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def terminal_client(
    app: FastAPI, *, raise_server_exceptions: bool = False, token: str = TERMINAL_TOKEN
) -> TestClient:
    """A client of an app made with `terminal_token=TERMINAL_TOKEN` (or `token`)."""
    return TestClient(
        app,
        base_url=TERMINAL_URL,
        headers=terminal_headers(token),
        raise_server_exceptions=raise_server_exceptions,
    )


def token_in(path: Path) -> str:
    """The token of an agent's terminal token file (by default terminal.token beside its
    replica)."""
    return path.read_text(encoding="ascii").strip()


def headers_for(path: Path) -> dict[str, str]:
    """The Authorization header for the agent whose token file is `path`."""
    return terminal_headers(token_in(path))
