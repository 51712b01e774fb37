"""The systemd unit (verified by systemd-analyze) and the sd_notify protocol of a real agent.

`.ci/run` runs test_unit_file_passes_systemd_analyze_verify_without_warnings as its
"systemd unit" section: `systemd-analyze verify` fails when ExecStart's binary is missing,
and the unit names the production path /opt/invctl/venv/bin/storeagent, so the test verifies
a copy whose ExecStart points at this checkout's .venv/bin/storeagent instead.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from tests.support.agent_fakes import product_event, stock_event
from tests.support.processes import free_port

REPO = Path(__file__).resolve().parents[3]
UNIT = REPO / "deploy" / "systemd" / "storeagent.service"
INSTALLED_BINARY = "/opt/invctl/venv/bin/storeagent"
LOCAL_BINARY = Path(sys.executable).parent / "storeagent"


def unit_for_this_checkout(directory: Path) -> Path:
    """A copy of the unit, same name, with ExecStart's binary replaced by the .venv one."""
    text = UNIT.read_text()
    assert text.count(f"ExecStart={INSTALLED_BINARY} ") == 1
    copy = directory / UNIT.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={LOCAL_BINARY} "))
    return copy


def unit_settings() -> dict[str, list[str]]:
    """[Service] and [Unit] assignments by key; continuation lines joined."""
    settings: dict[str, list[str]] = {}
    logical = UNIT.read_text().replace("\\\n", " ")
    for line in logical.splitlines():
        if line.strip() and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(" ".join(value.split()))
    return settings


def test_unit_file_passes_systemd_analyze_verify_without_warnings(tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: `scripts/dev setup` installs it (apt: systemd)")
    assert LOCAL_BINARY.exists(), "the .venv has no storeagent script: run `scripts/dev setup`"

    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit_for_this_checkout(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # User=invctl-agent need not exist here: verify does not resolve users (systemd 252).
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


def test_unit_is_a_sandboxed_notify_service_with_a_watchdog_and_persistent_state():
    unit = unit_settings()

    def one(key: str) -> str:
        [value] = unit[key]
        return value

    assert (one("Type"), one("NotifyAccess"), one("WatchdogSec")) == ("notify", "main", "30")
    assert (one("Restart"), one("RestartSec"), one("TimeoutStopSec")) == ("on-failure", "2", "10")
    assert (one("User"), one("StateDirectory"), one("UMask")) == (
        "invctl-agent",
        "invctl-agent",
        "0077",
    )
    assert "DynamicUser" not in unit
    assert one("ExecStart") == (
        f"{INSTALLED_BINARY} run --db /var/lib/invctl-agent/replica.db --api-key-file %d/api-key"
    )
    assert one("LoadCredential") == "api-key:/etc/invctl/storeagent.key"
    assert one("EnvironmentFile") == "/etc/invctl/storeagent.env"
    assert one("CapabilityBoundingSet") == ""
    assert one("RestrictAddressFamilies") == "AF_UNIX AF_INET AF_INET6"
    assert unit["SystemCallFilter"][0] == "@system-service"
    for key in (
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "NoNewPrivileges",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "RestrictRealtime",
        "RestrictSUIDSGID",
    ):
        assert one(key) == "yes", key
    assert one("ProtectSystem") == "strict"


class NotifySocket:
    """Plays systemd's side of NOTIFY_SOCKET: a datagram socket collecting the messages."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(0.1)
        self._lock = threading.Lock()
        self.messages: list[dict[str, str]] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            with self._lock:
                self.messages.append(fields)

    def values(self, name: str) -> list[str]:
        with self._lock:
            return [m[name] for m in self.messages if name in m]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(1)
        self._sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    with tempfile.TemporaryDirectory(prefix="sd") as directory:  # AF_UNIX paths: 108 bytes
        listener = NotifySocket(str(Path(directory) / "notify"))
        yield listener
        listener.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen([str(LOCAL_BINARY), *args], env=env, stderr=out)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def readyz(url: str) -> int | None:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code
    except httpx.HTTPError:
        return None


def test_agent_tells_systemd_ready_then_feeds_the_watchdog_and_says_stopping_on_sigterm(
    notify_socket: NotifySocket,
    spawn,
    make_wire_topics,
    publish,
    kafka_cluster: KafkaCluster,
    topic_prefix: str,
    unique_id: str,
    tmp_path: Path,
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    kafka_cluster.provision_store(unique_id, "sk-systemd-test", topic_prefix)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify_socket.path,
        "WATCHDOG_USEC": "2000000",
        "STOREAGENT_STORE_ID": unique_id,
        "STOREAGENT_KAFKA": kafka_cluster.bootstrap,
        "STOREAGENT_TOPIC_PREFIX": topic_prefix,
        "STOREAGENT_API_KEY": "sk-systemd-test",
        **kafka_cluster.agent_env(),
    }
    agent = spawn(
        "run",
        "--db",
        str(tmp_path / "replica.db"),
        "--listen",
        f"127.0.0.1:{port}",
        env=env,
        log=tmp_path / "agent.log",
    )

    # No topics yet: the agent serves but is not ready, and only extends its start timeout.
    eventually(lambda: notify_socket.values("EXTEND_TIMEOUT_USEC"), 20, "EXTEND_TIMEOUT_USEC")
    assert readyz(url) == 503
    assert notify_socket.values("READY") == []
    assert "WATCHDOG" not in str(notify_socket.messages)

    make_wire_topics()
    publish.send(product_event(sku="MILK-1L"), stock_event(sku="MILK-1L", stock_version=1))
    eventually(lambda: notify_socket.values("READY"), 30, "READY=1")
    ready_status = readyz(url)
    eventually(lambda: len(notify_socket.values("WATCHDOG")) >= 2, 10, "two WATCHDOG=1")
    pings = notify_socket.values("WATCHDOG")

    started = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    code = agent.wait(5)
    took = time.monotonic() - started

    names = [name for message in notify_socket.messages for name in message]
    assert ready_status == 200
    assert names.count("READY") == 1
    assert names.index("READY") < names.index("WATCHDOG")
    assert len(pings) >= 2
    assert "synced; lag 0" in notify_socket.values("STATUS")
    assert notify_socket.messages[-1] == {"STOPPING": "1", "STATUS": "stopping"}
    assert code == 0 and took < 5
