"""Real processes for end-to-end tests: central, store agents and the invctl CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from tests.support.terminal import headers_for

BIN = Path(sys.executable).parent
T = TypeVar("T")
SECRET = "end-to-end-test-secret-0123456789abcdef"
ADMIN, ADMIN_PASSWORD = "admin", "admin-password-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether `port` on 127.0.0.1 can be bound now (a range of ports for a cluster)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def while_alive(process: subprocess.Popen[Any], check: Callable[[], T]) -> Callable[[], T]:
    """`check` for `eventually()`, failing the test at once once `process` has exited."""

    def checked() -> T:
        if process.poll() is not None:
            pytest.fail(f"{process.args!r} exited with {process.returncode}")
        return check()

    return checked


def wait_http(
    url: str, timeout: float = 60.0, process: subprocess.Popen[Any] | None = None
) -> None:
    def answered() -> bool:
        return httpx.get(url, timeout=1).status_code == 200

    check = answered if process is None else while_alive(process, answered)
    eventually(check, timeout, f"{url} ready", interval=0.1, ignoring=(httpx.HTTPError,))


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []


@dataclass
class Stack:
    """One central (SQLite, or `database_url`) and any number of agents, each a real process.
    Central logs in to Kafka as the cluster's admin (and a relay user of its own), so it makes
    each store's Kafka user when the store is added; an agent gets the protocol and the CA,
    and its API key."""

    workdir: Path
    kafka: KafkaCluster
    prefix: str
    env: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    central_url: str = ""
    database_url: str = ""  # central's database; SQLite's central.db in `workdir` when empty

    def spawn(self, name: str, args: list[str], url: str, env: dict[str, str]) -> Service:
        log = self.workdir / f"{name}.log"
        handle = log.open("ab")
        process = subprocess.Popen(
            args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**self.env, **env},
            cwd=self.workdir,
            start_new_session=True,
        )
        service = Service(name, process, url, log)
        self.services.append(service)
        return service

    def central_env(self) -> dict[str, str]:
        """What a central process of this stack gets on top of `env`: its database and its
        Kafka logins (only central holds those)."""
        url = self.database_url or f"sqlite:///{self.workdir / 'central.db'}"
        return {"INVCTL_DATABASE_URL": url, **self.kafka.central_env()}

    def start_central(self, extra_args: list[str] | None = None) -> Service:
        """`extra_args` go to `central serve` (e.g. `--config FILE`)."""
        subprocess.run(
            [str(BIN / "central"), "create-admin", ADMIN, "--password-stdin"],
            input=ADMIN_PASSWORD.encode(),
            env={**self.env, **self.central_env()},
            check=True,
            capture_output=True,
        )
        port = free_port()
        self.central_url = f"http://127.0.0.1:{port}"
        central = self.spawn(
            "central",
            [str(BIN / "central"), "serve", "--port", str(port), *(extra_args or [])],
            self.central_url,
            self.central_env(),
        )
        wait_http(f"{self.central_url}/readyz", process=central.process)
        return central

    def start_agent(
        self,
        store_id: str,
        api_key: str,
        port: int | None = None,
        extra_args: list[str] | None = None,
        *,
        name: str | None = None,
        command: list[str] | None = None,
        wait_ready: bool = True,
        central: str | None = None,
    ) -> Service:
        """`extra_args` go to `storeagent run` (e.g. the offline policy's flags). `name` (the
        store id by default) names its log and its replica file; `command` replaces
        `storeagent` (e.g. tests.support.wrong_clock's); without `wait_ready` this waits for
        /healthz only (a second agent of a store may hold no partition, and never be ready);
        `central` replaces the stack's central URL (e.g. a comma-separated list)."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        name = name or store_id
        agent = self.spawn(
            f"agent-{name}",
            [
                *(command or [str(BIN / "storeagent")]),
                "run",
                "--store-id",
                store_id,
                "--central",
                central or self.central_url,
                "--kafka",
                self.kafka.bootstrap,
                "--db",
                str(self.workdir / f"replica-{name}.db"),
                "--listen",
                f"127.0.0.1:{port}",
                "--topic-prefix",
                self.prefix,
                *(extra_args or []),
            ],
            url,
            {"STOREAGENT_API_KEY": api_key, **self.kafka.agent_env()},
        )
        wait_http(f"{url}/{'readyz' if wait_ready else 'healthz'}", process=agent.process)
        return agent

    @property
    def terminal_token_file(self) -> Path:
        """Every agent of the stack keeps its replica in `workdir`, and so shares the terminal
        token the first one made there (the agent's default: terminal.token beside it)."""
        return self.workdir / "terminal.token"

    def agent_headers(self) -> dict[str, str]:
        """What a till sends with a POST to an agent of this stack: its terminal token."""
        return headers_for(self.terminal_token_file)

    def invctl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`env`: on top of the stack's (e.g. another INVCTL_CONFIG_DIR: another person's
        saved login)."""
        result = subprocess.run(
            [str(BIN / "invctl"), *args],
            input=input,
            text=True,
            capture_output=True,
            env={
                **self.env,
                "INVCTL_CENTRAL": self.central_url,
                "INVCTL_AGENT_TOKEN_FILE": str(self.terminal_token_file),
                **(env or {}),
            },
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"invctl {' '.join(args)} exited {result.returncode}: {result.stderr}"
            )
        return result

    def invctl_json(self, *args: str) -> Any:
        return json.loads(self.invctl("--json", *args).stdout)

    def stock_at_agent(self, agent_url: str) -> dict[str, int]:
        """Every SKU's quantity as the agent at `agent_url` shows it (its replica)."""
        shown = self.invctl("--agent", agent_url, "--json", "stock", "list", "--all")
        return {row["sku"]: row["quantity"] for row in json.loads(shown.stdout)}

    def stock_at_central(self) -> dict[str, int]:
        return {row["sku"]: row["quantity"] for row in self.invctl_json("stock", "list", "--all")}

    def login_admin(self) -> None:
        self.invctl("login", "--username", ADMIN, "--password-stdin", input=ADMIN_PASSWORD)

    def problem_lines(self, per_service: int = 15) -> str:
        """Each service's last warnings and errors: what a failed test prints, so that a
        failure in CI can be explained from its output alone."""
        parts = []
        for service in self.services:
            lines = [line for line in service.log_lines() if _is_problem(line)]
            ours = [line for line in lines if '"library.log"' not in line]  # not kafka-python's
            parts.append(
                f"--- {service.name}: last {per_service} of {len(ours)} problems "
                f"({len(lines) - len(ours)} more from client libraries)"
            )
            parts += [line[:400] for line in ours[-per_service:]]
        return "\n".join(parts)

    def stop_all(self) -> None:
        for service in reversed(self.services):
            service.stop()


def _is_problem(line: str) -> bool:
    return any(mark in line for mark in ('"warning"', '"error"', "Traceback", "WARNING", "ERROR"))


@contextmanager
def stack(
    workdir: Path, kafka: KafkaCluster, prefix: str, database_url: str = ""
) -> Iterator[Stack]:
    """`kafka`: e.g. the `kafka_cluster` fixture; `database_url`: central's (a SQLite file
    in `workdir` when empty)."""
    if isinstance(kafka, str):
        raise TypeError("pass the KafkaCluster (the kafka_cluster fixture), not a bootstrap string")
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("INVCTL_KAFKA", "STOREAGENT_KAFKA"))
    }  # a developer's shell may hold another cluster's settings
    env = {
        **inherited,
        "INVCTL_JWT_SECRET": SECRET,
        "INVCTL_TOPIC_PREFIX": prefix,
        "INVCTL_CONFIG_DIR": str(workdir / "invctl-config"),
        "XDG_DATA_HOME": str(workdir / "data"),
    }
    env.pop("INVCTL_AGENT", None)
    env.pop("INVCTL_TOKEN", None)
    running = Stack(workdir, kafka, prefix, env, database_url=database_url)
    try:
        yield running
    except BaseException:
        print(running.problem_lines(), file=sys.stderr)  # shown with the failure by pytest
        raise
    finally:
        running.stop_all()
