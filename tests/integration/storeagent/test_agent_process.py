"""`storeagent run` as a real process: serves the replica, logs JSON, stops cleanly on SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from invwire.topics import PARTITIONS
from tests.support.agent_fakes import product_event, stock_event

API_KEY = "sk-must-never-be-logged"


class AgentProcess:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-c", "from storeagent.cli import main; main()", *args]
        self.proc = subprocess.Popen(
            command,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def events(self) -> list[dict]:
        return [json.loads(line) for line in list(self.lines)]

    def wait_for_event(self, event: str, timeout: float = 20) -> dict:
        def logged() -> dict:
            found = [e for e in self.events() if e["event"] == event]
            if not found and self.proc.poll() is not None:
                pytest.fail(f"agent exited early: {self.lines}")
            assert found, f"no {event} in {self.lines}"
            return found[0]

        return eventually(logged, timeout, f"{event} logged")

    def terminate(self, grace: float = 5.0) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(grace)
        self._reader.join(2)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def agents():
    started: list[AgentProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> AgentProcess:
        agent = AgentProcess(*args, env=env)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.kill()


@pytest.mark.usefixtures("wire_topics")
def test_run_serves_the_replica_and_exits_0_on_sigterm_within_5_s(
    agents, publish, kafka_cluster: KafkaCluster, topic_prefix, unique_id, tmp_path: Path
):
    publish.send(product_event(sku="MILK-1L", name="Milk"), stock_event(quantity=40))
    kafka_cluster.provision_store(unique_id, API_KEY, topic_prefix)
    agent = agents(
        "run",
        "--store-id",
        unique_id,
        "--kafka",
        kafka_cluster.bootstrap,
        "--db",
        str(tmp_path / "agent.db"),
        "--listen",
        "127.0.0.1:0",
        "--topic-prefix",
        topic_prefix,
        env={"STOREAGENT_API_KEY": API_KEY, **kafka_cluster.agent_env()},
    )
    base = f"http://127.0.0.1:{agent.wait_for_event('agent.started')['port']}"

    eventually(lambda: httpx.get(f"{base}/readyz").status_code == 200, 20, "agent ready")
    stock = httpx.get(f"{base}/stock/MILK-1L").json()
    status = httpx.get(f"{base}/sync/status").json()
    code, took = agent.terminate()

    assert (stock["name"], stock["quantity"], stock["source"]) == ("Milk", 40, "replica")
    every_partition = sum(PARTITIONS.values())  # of every topic the agent reads
    assert (status["store_id"], status["ready"], len(status["partitions"])) == (
        unique_id,
        True,
        every_partition,
    )
    assert all(p["lag"] == 0 for p in status["partitions"])
    assert code == 0 and took < 5
    events = agent.events()
    assert all({"ts", "level", "event"} <= set(e) for e in events)
    assert [e["event"] for e in events if e["event"].startswith("agent.")][-1] == "agent.stopped"
    assert API_KEY not in "".join(agent.lines)


def test_sigterm_while_kafka_is_unreachable_still_exits_0_within_5_s(agents, tmp_path: Path):
    agent = agents(
        "run",
        "--store-id",
        "s1",
        "--kafka",
        "127.0.0.1:9",
        "--db",
        str(tmp_path / "a.db"),
        "--listen",
        "127.0.0.1:0",
        env={"STOREAGENT_API_KEY": API_KEY},
    )
    base = f"http://127.0.0.1:{agent.wait_for_event('agent.started')['port']}"
    agent.wait_for_event("consumer.not_connected")  # the loop ran and failed to reach Kafka

    readyz = httpx.get(f"{base}/readyz")
    code, took = agent.terminate()

    assert readyz.status_code == 503
    assert code == 0 and took < 5


CRASHING_AGENT = """
import sys
from pathlib import Path
from storeagent.app import bootstrap
from invwire.logs import configure_logging
from storeagent.settings import AgentSettings

def broken_connect():
    raise RuntimeError("a bug in the consumer")

configure_logging()
settings = AgentSettings(store_id="s1", db_path=Path(sys.argv[1]), listen_port=0)
sys.exit(bootstrap(settings, connect=broken_connect).serve())
"""


def test_agent_exits_non_zero_when_the_consumer_thread_dies(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_AGENT, str(tmp_path / "a.db")],
        capture_output=True,
        check=False,
        text=True,
        timeout=20,
    )

    events = [json.loads(line)["event"] for line in done.stderr.splitlines()]
    assert done.returncode == 1
    assert "consumer.crashed" in events and events[-1] == "agent.stopped"


def test_bad_configuration_exits_2_with_one_json_line(tmp_path: Path):
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from storeagent.cli import main; main()",
            "run",
            "--store-id",
            "s1",
            "--listen",
            "0.0.0.0:8787",
            "--db",
            str(tmp_path / "a.db"),
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=20,
    )

    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    error = json.loads(line)
    assert (error["event"], error["code"]) == ("agent.config_invalid", "config.listen_not_loopback")
    assert not (tmp_path / "a.db").exists()
