"""The agent's two listeners in one process and event loop: the terminal API and the metrics
listener start and stop together, and a metrics server that fails stops the agent with 1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.waiting import eventually
from storeagent.app import Agent, _Server, _Servers, bind_listener, bootstrap
from storeagent.http.app import create_metrics_app
from storeagent.ops.metrics import AgentMetrics
from storeagent.replica.db import Replica
from storeagent.settings import AgentSettings
from storeagent.sync.progress import SyncProgress
from tests.support.agent_fakes import FakeRecordSource
from tests.support.terminal import headers_for


def url_of(listener: socket.socket) -> str:
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    settings = AgentSettings(
        store_id="s1",
        db_path=tmp_path / "replica.db",
        kafka_security_protocol="PLAINTEXT",
        metrics_port=0,
        heartbeat_seconds=0,
    )
    return bootstrap(settings, connect=FakeRecordSource.with_wire_topics)


@pytest.fixture
def serving(agent: Agent) -> Iterator[tuple[str, str, list[int]]]:
    """The agent serving in a thread: (terminal URL, metrics URL, [exit code once stopped])."""
    terminal, metrics = bind_listener("127.0.0.1", 0), bind_listener("127.0.0.1", 0)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(agent.serve(terminal, metrics)))
    thread.start()
    urls = url_of(terminal), url_of(metrics)
    try:
        for url in urls:
            eventually(lambda url=url: answers(url), 10, f"{url} answers")
        yield *urls, codes
    finally:
        agent.stop.set()
        thread.join(10)


def test_both_listeners_serve_their_own_routes(serving, tmp_path):
    terminal, metrics, _ = serving
    till = headers_for(tmp_path / "terminal.token")

    resync = httpx.post(f"{terminal}/sync/resync", json={}, headers=till)
    on_metrics = httpx.post(f"{metrics}/sync/resync", json={}, headers=till)

    assert resync.status_code == 202
    assert on_metrics.status_code == 404
    assert "storeagent_" in httpx.get(f"{metrics}/metrics").text
    assert httpx.get(f"{metrics}/sync/status").status_code == 404


def test_the_stop_event_stops_both_listeners_and_the_agent_exits_0(agent, serving):
    terminal, metrics, codes = serving

    agent.stop.set()

    eventually(lambda: codes, 10, "serve() returned")
    assert codes == [0]
    assert not answers(terminal) and not answers(metrics)


class BrokenServer(_Server):
    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        raise RuntimeError("the metrics server broke")


def test_a_failing_metrics_server_stops_the_terminal_api_and_fails_the_agent(
    replica: Replica, caplog: pytest.LogCaptureFixture
):
    stop = threading.Event()
    metrics = AgentMetrics()
    app = create_metrics_app(replica, SyncProgress(), metrics=metrics, loopback_only=True)
    servers = _Servers(_Server(app, stop), BrokenServer(app, stop, handles_signals=False))
    terminal = bind_listener("127.0.0.1", 0)

    done = threading.Thread(target=servers.run, args=(terminal, bind_listener("127.0.0.1", 0)))
    done.start()
    done.join(10)

    assert not done.is_alive(), "the terminal API stopped with it"
    assert servers.failed
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == ["metrics.crashed"]
