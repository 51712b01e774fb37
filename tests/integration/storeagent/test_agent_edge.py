"""The store terminal API's edge on a real `storeagent run` process: no web page (DNS
rebinding, a cross-site form) and no caller without the terminal token can sell or resync;
the metrics listener serves metrics and cannot sell; --allow-remote opens only that listener."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from tests.support.agent_fakes import product_event, stock_event
from tests.support.terminal import headers_for

API_KEY = "sk-edge-test-key"
EVIL = "http://evil.example"
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Origin": EVIL}
LISTEN_STATE = "0A"  # /proc/net/tcp
AGENT_RUN = (sys.executable, "-c", "from storeagent.cli import main; main()", "run")


@dataclass
class Agent:
    """A `storeagent run` process, its JSON log lines read as they come."""

    process: subprocess.Popen[str]
    db: Path
    lines: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def events(self, name: str) -> list[dict]:
        return [e for e in map(json.loads, list(self.lines)) if e["event"] == name]

    def event(self, name: str, timeout: float = 30) -> dict:
        def logged() -> dict | None:
            found = self.events(name)
            if not found and self.process.poll() is not None:
                pytest.fail(f"the agent exited {self.process.returncode}: {self.lines}")
            return found[0] if found else None

        return eventually(logged, timeout, f"{name} logged")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.event('agent.started')['port']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.event('agent.started')['metrics_port']}"

    @property
    def port(self) -> int:
        return int(self.event("agent.started")["port"])

    @property
    def token_file(self) -> Path:
        return self.db.parent / "terminal.token"

    def till(self) -> dict[str, str]:
        return headers_for(self.token_file)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(10)


def run_agent(db: Path, *args: str, env: dict[str, str] | None = None) -> Agent:
    process = subprocess.Popen(
        [*AGENT_RUN, "--db", str(db), "--listen", "127.0.0.1:0", *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "STOREAGENT_API_KEY": API_KEY, **(env or {})},
    )
    agent = Agent(process, db)
    threading.Thread(target=agent.read, daemon=True).start()
    return agent


@pytest.fixture
def agents() -> Iterator[Callable[..., Agent]]:
    started: list[Agent] = []

    def start(db: Path, *args: str, env: dict[str, str] | None = None) -> Agent:
        started.append(run_agent(db, *args, env=env))
        return started[-1]

    yield start
    for agent in started:
        if agent.process.poll() is None:
            agent.process.kill()
            agent.process.wait()


@pytest.fixture
def synced(
    agents, publish, kafka_cluster: KafkaCluster, topic_prefix, unique_id, tmp_path
) -> Agent:
    """An agent of this test's store, its replica holding MILK-1L, with a metrics listener."""
    publish.send(product_event(sku="MILK-1L", name="Milk"), stock_event(quantity=40))
    store = f"edge-{unique_id}"
    kafka_cluster.provision_store(store, API_KEY, topic_prefix)
    agent = agents(
        tmp_path / "replica.db",
        "--store-id",
        store,
        "--kafka",
        kafka_cluster.bootstrap,
        "--topic-prefix",
        topic_prefix,
        "--metrics-port",
        "0",
        env=kafka_cluster.agent_env(),
    )
    eventually(lambda: httpx.get(f"{agent.url}/readyz").status_code == 200, 30, "agent ready")
    return agent


def offline_agent(agents: Callable[..., Agent], tmp_path: Path, *args: str) -> Agent:
    """An agent whose Kafka is unreachable: its edge answers all the same."""
    return agents(tmp_path / "replica.db", "--store-id", "edge", "--kafka", "127.0.0.1:9", *args)


def refused_run(*args: str) -> subprocess.CompletedProcess[str]:
    """`storeagent run` that is expected to stop at its configuration."""
    return subprocess.run(
        [*AGENT_RUN, "--store-id", "s1", *args],
        env={**os.environ, "STOREAGENT_API_KEY": API_KEY},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def code_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


@pytest.mark.usefixtures("wire_topics")
def test_dns_rebinding_cannot_read_or_sell(synced: Agent):
    rebound = {"Host": f"attacker.example:{synced.port}"}
    sale = {"lines": [{"sku": "MILK-1L", "quantity": 1}]}

    read = httpx.get(f"{synced.url}/stock/MILK-1L", headers=rebound)
    sold = httpx.post(f"{synced.url}/orders", json=sale, headers={**rebound, **synced.till()})
    resync = httpx.post(f"{synced.url}/sync/resync", json={}, headers=rebound)
    same_read_by_loopback = httpx.get(f"{synced.url}/stock/MILK-1L")

    assert code_of(read) == (421, "request.host_refused")
    assert code_of(sold) == (421, "request.host_refused")
    assert code_of(resync) == (421, "request.host_refused")
    assert same_read_by_loopback.json()["quantity"] == 40, "and nothing was sold"
    assert synced.stop() == 0


def test_a_cross_site_form_post_cannot_sell_or_resync(agents, tmp_path):
    agent = offline_agent(agents, tmp_path)

    sold = httpx.post(f"{agent.url}/orders", content=b"lines=MILK-1L", headers=FORM)
    resync = httpx.post(f"{agent.url}/sync/resync", content=b"", headers=FORM)
    # a form cannot send a token, but even with it the form's content type is refused
    own_page = {"Content-Type": FORM["Content-Type"], **agent.till()}
    with_token = httpx.post(f"{agent.url}/sync/resync", content=b"a=1", headers=own_page)

    assert code_of(sold) == (403, "request.origin_refused")
    assert code_of(resync) == (403, "request.origin_refused")
    assert code_of(with_token) == (415, "request.json_required")
    posts = eventually(lambda: _posts_logged(agent, 3), 10, "three POSTs logged")
    assert posts == [("unmatched", 403), ("unmatched", 403), ("unmatched", 415)], "never routed"
    refused = [e["code"] for e in agent.events("http.refused")]
    assert refused == ["request.origin_refused"] * 2 + ["request.json_required"]
    assert agent.stop() == 0


def _posts_logged(agent: Agent, count: int) -> list[tuple[str, int]] | None:
    """(route, status) of the POSTs in the access log, once there are `count`."""
    posts = [
        (e["route"], e["status"]) for e in agent.events("http.request") if e["method"] == "POST"
    ]
    return posts if len(posts) == count else None


def test_only_the_right_token_can_sell_or_resync(agents, tmp_path):
    agent = offline_agent(agents, tmp_path)
    wrong = {"Authorization": "Bearer " + "x" * 43}

    without = httpx.post(f"{agent.url}/sync/resync", json={})
    with_wrong = httpx.post(f"{agent.url}/sync/resync", json={}, headers=wrong)
    sale = {"lines": [{"sku": "MILK-1L", "quantity": 1}]}
    sale_without = httpx.post(f"{agent.url}/orders", json=sale)
    right = httpx.post(f"{agent.url}/sync/resync", json={}, headers=agent.till())
    sale_past_the_edge = httpx.post(f"{agent.url}/orders", json=sale, headers=agent.till())

    assert code_of(without) == (401, "agent.token_required")
    assert code_of(with_wrong) == (401, "agent.token_invalid")
    assert code_of(sale_without) == (401, "agent.token_required")
    assert right.status_code == 202, right.text
    # past the edge, the app answers: its replica never synced (Kafka is unreachable)
    assert code_of(sale_past_the_edge) == (503, "replica.not_ready")
    assert agent.stop() == 0


def test_the_token_file_is_made_0600_beside_the_replica_and_never_logged(agents, tmp_path):
    agent = offline_agent(agents, tmp_path)
    agent.event("agent.started")

    token = agent.token_file.read_text().strip()

    assert stat.S_IMODE(agent.token_file.stat().st_mode) == 0o600
    assert agent.token_file.stat().st_uid == os.geteuid()
    assert agent.event("agent.terminal_token_created")["path"] == str(agent.token_file)
    assert agent.stop() == 0
    assert token not in "".join(agent.lines)


def test_an_agent_refuses_to_start_with_a_token_file_others_may_read(tmp_path):
    token_file = tmp_path / "terminal.token"
    token_file.write_text("a-token-someone-else-may-have-read-0123456789\n")
    token_file.chmod(0o640)

    done = refused_run("--db", str(tmp_path / "a.db"), "--kafka", "127.0.0.1:9")

    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    error = json.loads(line)
    assert (error["event"], error["code"]) == (
        "agent.config_invalid",
        "config.terminal_token_insecure",
    )
    assert f"chmod 600 {token_file}" in error["message"]
    assert not (tmp_path / "a.db").exists()


@pytest.mark.usefixtures("wire_topics")
def test_the_metrics_listener_serves_metrics_and_probes_and_cannot_sell(synced: Agent):
    metrics = httpx.get(f"{synced.metrics_url}/metrics")
    sold = httpx.post(
        f"{synced.metrics_url}/orders",
        json={"lines": [{"sku": "MILK-1L", "quantity": 1}]},
        headers=synced.till(),
    )
    resync = httpx.post(f"{synced.metrics_url}/sync/resync", json={}, headers=synced.till())
    stock = httpx.get(f"{synced.metrics_url}/stock/MILK-1L")

    assert metrics.status_code == 200 and "storeagent_ready 1.0" in metrics.text
    assert httpx.get(f"{synced.metrics_url}/readyz").json()["status"] == "ready"
    assert httpx.get(f"{synced.metrics_url}/healthz").json() == {"status": "ok"}
    assert code_of(sold) == (404, "not_found")
    assert code_of(resync) == (404, "not_found")
    assert code_of(stock) == (404, "not_found")
    assert synced.stop() == 0, "SIGTERM stops both listeners and the agent exits 0"


def listening(port: int) -> set[str]:
    """The IPv4 addresses (hex, as /proc/net/tcp has them) listening on `port`."""
    found = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = row.split()[1], row.split()[3]
        address, _, hex_port = local.partition(":")
        if state == LISTEN_STATE and int(hex_port, 16) == port:
            found.add(address)
    return found


def test_allow_remote_opens_the_metrics_listener_and_never_the_store_api(agents, tmp_path):
    agent = offline_agent(agents, tmp_path, "--metrics-port", "0", "--allow-remote")
    started = agent.event("agent.started")

    by_another_name = httpx.get(
        f"{agent.metrics_url}/metrics", headers={"Host": "store-42.lan:9787"}
    )
    api_by_another_name = httpx.get(f"{agent.url}/healthz", headers={"Host": "store-42.lan"})

    assert listening(started["port"]) == {"0100007F"}, "the store API: 127.0.0.1 only"
    assert listening(started["metrics_port"]) == {"00000000"}, "metrics: every interface"
    assert by_another_name.status_code == 200
    assert code_of(api_by_another_name) == (421, "request.host_refused")
    assert agent.stop() == 0


def test_allow_remote_does_not_let_the_store_api_listen_off_loopback(tmp_path):
    done = refused_run("--db", str(tmp_path / "a.db"), "--allow-remote", "--listen", "0.0.0.0:8787")

    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert json.loads(line)["code"] == "config.listen_not_loopback"
    assert not (tmp_path / "terminal.token").exists()
