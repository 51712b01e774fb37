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
    # The runner's stdout is not a terminal, so invctl would print tsv: these tests read
    # the tables people see (tests of the tsv default unset INVCTL_OUTPUT), at a fixed time
    # zone so that local times are known.
    env: dict[str, str | None] = {
        "INVCTL_AGENT": FAKE_AGENT,
        "INVCTL_DEBUG": "1",
        "COLUMNS": "200",
        "INVCTL_OUTPUT": "table",
        "TZ": "UTC",
    }
    return CliHarness(tmp_path / "config", server, env)
