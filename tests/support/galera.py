"""A 3-node MariaDB Galera cluster for the tests (scripts/mariadb start --nodes 3), and fresh
databases on it that every node holds."""

from __future__ import annotations

import os
import random
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pymysql

from harness.waiting import eventually
from tests.support.processes import BIN, free_port, port_free, wait_http

ROOT = Path(__file__).resolve().parents[2]
MARIADB_SCRIPT = ROOT / "scripts" / "mariadb"
NODES = 3
PORTS_PER_NODE = 4  # SQL, group communication, IST, SST (scripts/mariadb)


def mariadb_script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MARIADB_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def free_galera_port(nodes: int = NODES) -> int:
    """A base port P with the cluster's ports P .. P+4*nodes-1 free on 127.0.0.1: in
    10000-12999, apart from free_base_port's Kafka clusters (20000-30200) and below Linux's
    ephemeral ports (32768 and up). Taken from those, a port found free could be given to
    an outgoing connection (a joiner's state transfer, any client) before its node bound it,
    and the node failed with "Address already in use"."""
    for _ in range(200):
        base = random.randrange(10000, 13000 - PORTS_PER_NODE * nodes)
        if all(port_free(base + i) for i in range(PORTS_PER_NODE * nodes)):
            return base
    raise RuntimeError("no free port range for a Galera cluster")


def start_cluster(directory: Path, port: int) -> list[str]:
    """Start the cluster; its nodes' URLs (the last 3 lines of stdout), or AssertionError
    with the script's stderr."""
    started = mariadb_script(
        "start", "--nodes", str(NODES), "--dir", str(directory), "--port", str(port)
    )
    assert started.returncode == 0, f"scripts/mariadb start failed:\n{started.stderr}"
    urls = started.stdout.strip().splitlines()[-NODES:]
    assert len(urls) == NODES, started.stdout
    return urls


def connect(url: str, database: str | None = None, **kw: Any) -> pymysql.connections.Connection:
    parsed = urlparse(url)
    return pymysql.connect(
        host=parsed.hostname,
        port=parsed.port or 3306,
        user=parsed.username,
        password=parsed.password or "",
        database=database,
        autocommit=True,
        connect_timeout=5,
        **kw,
    )


def query(url: str, sql: str, *args: Any, database: str | None = None) -> list[tuple[Any, ...]]:
    """`sql` on one node, read after every commit the cluster made before it (wsrep_sync_wait:
    the node applies what it has been sent first)."""
    with closing(connect(url, database)) as connection, connection.cursor() as cursor:
        cursor.execute("SET SESSION wsrep_sync_wait = 1")
        cursor.execute(sql, args or None)
        return list(cursor.fetchall())


def wsrep_state(url: str) -> tuple[str, int]:
    """(wsrep_local_state_comment, wsrep_cluster_size) of one node."""
    with closing(connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SHOW GLOBAL STATUS WHERE Variable_name IN "
            "('wsrep_local_state_comment', 'wsrep_cluster_size')"
        )
        status = dict(cursor.fetchall())
    return str(status["wsrep_local_state_comment"]), int(status["wsrep_cluster_size"])


def conflicts_lost(url: str) -> int:
    """How many local transactions this node rolled back for a conflicting write made on
    another node since it started: certification failures and brute-force aborts."""
    with closing(connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SHOW GLOBAL STATUS WHERE Variable_name IN "
            "('wsrep_local_cert_failures', 'wsrep_local_bf_aborts')"
        )
        return sum(int(value) for _, value in cursor.fetchall())


@contextmanager
def galera_database(urls: list[str]) -> Iterator[list[str]]:
    """A fresh database on the cluster (created on node 1, replicated), dropped afterwards:
    its URL on each node, node 1 first."""
    name = "g_" + uuid.uuid4().hex[:12]
    with closing(connect(urls[0])) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        for url in urls[1:]:
            eventually(
                lambda url=url: query(url, "SHOW DATABASES LIKE %s", name),
                what=f"{name} on {url}",
            )
        yield [url.rstrip("/") + "/" + name for url in urls]
    finally:
        with closing(connect(urls[0])) as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


# --- central on the cluster: one real process per node ----------------------------------------
# (In one process, peewee binds central's models to one database at a time: three in-process
# centrals would all query the node bootstrapped last.)

CENTRAL_SECRET = "galera-test-secret-0123456789abcdef-xyz"
ADMIN, ADMIN_PASSWORD = "admin", "admin-password-1"


def central_env(database_url: str, workdir: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("INVCTL_")}
    return {
        **inherited,
        "INVCTL_DATABASE_URL": database_url,
        "INVCTL_JWT_SECRET": CENTRAL_SECRET,
        "INVCTL_CONFIG_DIR": str(workdir / "invctl-config"),
    }


def create_admin(database_url: str, workdir: Path) -> None:
    """`central create-admin` on one node: it also makes the schema there."""
    made = subprocess.run(
        [str(BIN / "central"), "create-admin", ADMIN, "--password-stdin"],
        input=ADMIN_PASSWORD,
        text=True,
        env=central_env(database_url, workdir),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr


@contextmanager
def central_processes(database_urls: list[str], workdir: Path) -> Iterator[list[str]]:
    """`central serve` on each of `database_urls` (no Kafka: events wait in the outbox), all
    started at once; yields their URLs once each /readyz answers, stops them (SIGTERM)."""
    ports = [free_port() for _ in database_urls]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for k, (database_url, port) in enumerate(zip(database_urls, ports, strict=True)):
            with (workdir / f"central-{k + 1}.log").open("ab") as log:
                processes.append(
                    subprocess.Popen(
                        [str(BIN / "central"), "serve", "--port", str(port)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=central_env(database_url, workdir),
                        cwd=workdir,
                        start_new_session=True,
                    )
                )
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, process in zip(urls, processes, strict=True):
            wait_http(f"{url}/readyz", process=process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def admin_headers(central_url: str) -> dict[str, str]:
    answer = httpx.post(
        f"{central_url}/api/v1/auth/token",
        data={"username": ADMIN, "password": ADMIN_PASSWORD},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


# --- relays on two nodes, each in its own process, in lockstep --------------------------------


def lease_contender(
    database_url: str, rounds: int, start: datetime, go: Any, results: Any, index: int
) -> None:
    """Relays on one node, in step with the other contender: round `n` starts when the test
    sets `go` (a shared integer) to n, and both contenders spin on it, so that they write
    within microseconds of each other (a barrier's wake-ups are milliseconds apart, and the
    first commit would reach the other node before the second write). Every second round the
    clock (a FakeClock from `start`) jumps past the lease and a new Relay takes over (the
    last one died): both race for the lease, in the same instant, on two nodes. After each
    round it puts (index, round, leader, owner, error) on `results`."""
    from central import models
    from central.db import connect as connect_database
    from central.outbox import Relay
    from tests.support.central_fakes import FakeClock, FakePublisher

    db = connect_database(database_url)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    clock = FakeClock(start)
    relay = Relay(db, FakePublisher(), clock, lease_seconds=LEASE_SECONDS)
    try:
        for n in range(rounds):
            if n % 2 == 0:
                clock.advance(LEASE_SECONDS + 1)
                relay = Relay(db, FakePublisher(), clock, lease_seconds=LEASE_SECONDS)
            while go.value < n:
                os.sched_yield()
            error = ""
            try:
                relay.run_once()
            except Exception as exc:  # reported to the test, which fails on it
                error = f"{type(exc).__name__}: {exc}"
            results.put((index, n, relay.stats.leader, relay.owner, error))
    finally:
        db.close_all()


LEASE_SECONDS = 10
