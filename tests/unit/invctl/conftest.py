"""Fixtures for invctl CLI tests: the fake server and CLI harness from tests/support."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.invctl_fakes import FAKE_AGENT, CliHarness, FakeServer


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def cli(tmp_path: Path, server: FakeServer) -> CliHarness:
    env: dict[str, str | None] = {"INVCTL_AGENT": FAKE_AGENT, "INVCTL_DEBUG": "1", "COLUMNS": "200"}
    return CliHarness(tmp_path / "config", server, env)
