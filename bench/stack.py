"""Real processes for benchmarks: central and store agents on this machine."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import BIN, RUN
from harness.agent_command import storeagent_run
from harness.kafka_security import KafkaCluster

SECRET = "benchmark-secret-0123456789abcdef0123"


def wait_ready(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited during start; see {RUN}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready within {timeout}s")


def seed_central(
    database_url: str,
    rows: list[dict[str, Any]],
    stores: list[str],
    kafka: KafkaCluster | None = None,
    prefix: str = "",
) -> dict[str, str]:
    """Import `rows` and register `stores` in-process; returns each store's API key. With a
    secure `kafka`, each key gets its Kafka user and ACLs on the `prefix` topics, as
    `POST /stores` makes them (stores whose agents run need them)."""
    from central.app import bootstrap
    from central.services import accounts, importing
    from central.services.principal import SYSTEM
    from central.settings import Settings

    central = bootstrap(Settings(database_url=database_url, jwt_secret=SECRET), with_relay=False)
    try:
        for start in range(0, len(rows), importing.MAX_ROWS):
            importing.import_rows(central.uow(), SYSTEM, rows[start : start + importing.MAX_ROWS])
        identities = kafka.identities(prefix) if kafka is not None else None
        return {
            s: accounts.create_store(central.uow(), s, s, identities)["api_key"] for s in stores
        }
    finally:
        central.close()


def catalog_rows(skus: list[str], quantity: int) -> list[dict[str, Any]]:
    return [{"kind": "category", "name": "Bench"}] + [
        {
            "kind": "product",
            "sku": s,
            "name": s,
            "price": "1.00",
            "category": "Bench",
            "quantity": quantity,
        }
        for s in skus
    ]


def clean_environ() -> dict[str, str]:
    """os.environ without Kafka or tracing settings: a shell may hold another cluster's, or
    point at a collector (a benchmark traces only when it says so, through `extra_env`)."""
    dropped = ("INVCTL_KAFKA", "STOREAGENT_KAFKA", "OTEL_")
    return {name: value for name, value in os.environ.items() if not name.startswith(dropped)}


@contextmanager
def central_process(
    database_url: str,
    kafka: KafkaCluster,
    port: int,
    prefix: str,
    extra_env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> Iterator[str]:
    """Central logged in as the cluster's admin (it makes its relay user and the stores');
    `extra_env` added to its environment (e.g. OTEL_* variables), `args` to `central serve`
    (e.g. --workers 2)."""
    env = {
        **clean_environ(),
        "INVCTL_DATABASE_URL": database_url,
        "INVCTL_JWT_SECRET": SECRET,
        "INVCTL_TOPIC_PREFIX": prefix,
        **kafka.central_env(),
        **(extra_env or {}),
    }
    argv = [str(BIN / "central"), "serve", "--port", str(port), *args]
    with serving(f"central-{port}", argv, f"http://127.0.0.1:{port}", env) as url:
        yield url


@contextmanager
def serving(
    name: str, argv: Sequence[str], url: str, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """`argv` in the background, its output in RUN/NAME.log, until `url` answers (yields it);
    SIGTERM when the block ends."""
    with (RUN / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(list(argv), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(url, process, name)
        yield url
    finally:
        process.terminate()
        process.wait(15)


@contextmanager
def agent_process(
    store: str,
    api_key: str,
    central: str,
    kafka: KafkaCluster,
    port: int,
    prefix: str,
    db: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, Path, int]]:
    """Yields (url, replica path, pid). The store's Kafka user must exist (seed_central).
    `extra_env` is added to the agent's environment (e.g. OTEL_* variables)."""
    db = db or RUN / f"replica-{store}-{uuid.uuid4().hex[:6]}.db"
    key_file = RUN / f"{store}.key"
    key_file.write_text(api_key)
    key_file.chmod(0o600)
    with (RUN / f"agent-{store}.log").open("wb") as log:
        command = storeagent_run(
            store,
            central=central,
            kafka=kafka.bootstrap,
            db=db,
            port=port,
            topic_prefix=prefix,
            extra=["--api-key-file", str(key_file)],
        )
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**clean_environ(), **kafka.agent_env(), **(extra_env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, f"agent {store}")
        yield url, db, process.pid
    finally:
        process.terminate()
        process.wait(15)


def sqlite_url() -> str:
    return f"sqlite:///{RUN / f'central-{uuid.uuid4().hex[:8]}.db'}"
