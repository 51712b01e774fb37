"""Relay failover: SIGKILL the outbox relay's lease holder, time until the next event is out.

    python -m bench.relay_failover [--quick] [--plaintext]

Two `central serve` processes share one database (SQLite, then MariaDB), each with its relay;
one holds the lease (relay_lease.owner names its pid). A run SIGKILLs the holder, writes one
stock change at once (in this process, to the shared database), and times from the kill to
a Kafka consumer receiving that change's record: the lease running out (on the database's
clock), the standby's next poll, its first publish (topics checked, Kafka logins, producer
made). The killed central is started again, as the standby, before the next run. 10 runs per
database (quick: 3).

BENCH_KAFKA_ENV=DIR/client.env uses that running secure cluster (its user must be able to
make users and ACLs, like scripts/kafka's admin) instead of starting one; BENCH_MYSQL_URL=
mysql://USER:PW@HOST:PORT/ a running MariaDB server (the user may create databases).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    BIN,
    RUN,
    machine_facts,
    module_args,
    percentile,
    security_mode,
    start_kafka,
    start_mariadb,
    verdict,
)
from bench.stack import SECRET, catalog_rows, clean_environ, seed_central, wait_ready
from harness.kafka_security import KafkaCluster
from harness.relay_lease import read_lease
from invwire.topics import TOPIC_INVENTORY

SKU = "FAILOVER-1"
TOPIC = TOPIC_INVENTORY
TARGET_SECONDS = 5.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Central:
    """One `central serve` process of the pair, started again on its port after a kill."""

    database_url: str
    kafka: KafkaCluster
    prefix: str
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return RUN / f"failover-central-{self.port}.log"

    def took_lease_after(self, moment: float) -> float:
        """When (time.time()) this central's relay logged taking the lease, after `moment`."""
        for line in reversed(self.log.read_text(errors="replace").splitlines()):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "relay.lease" and record.get("leader"):
                taken = datetime.fromisoformat(record["ts"]).timestamp()
                if taken >= moment:
                    return taken
        return math.nan

    def start(self) -> None:
        env = {
            **clean_environ(),
            "INVCTL_DATABASE_URL": self.database_url,
            "INVCTL_JWT_SECRET": SECRET,
            "INVCTL_TOPIC_PREFIX": self.prefix,
            **self.kafka.central_env(),
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "central"), "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_ready(self.url, self.process, f"central on port {self.port}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


class StockWriter:
    """Stock changes written straight to the shared database (no HTTP, no relay of its own):
    the relays publish them from the outbox like any other."""

    def __init__(self, database_url: str) -> None:
        from central.app import bootstrap
        from central.settings import Settings

        self.central = bootstrap(
            Settings(database_url=database_url, jwt_secret=SECRET), with_relay=False
        )
        self.quantity = 0

    def next(self) -> int:
        """Writes the next stock change; returns its stock version."""
        from central.services import inventory
        from central.services.principal import SYSTEM

        self.quantity += 1
        return int(
            inventory.set_stock(self.central.uow(), SYSTEM, SKU, self.quantity)["stock_version"]
        )

    def close(self) -> None:
        self.central.close()


class Watcher:
    """A consumer at the end of the stock topic, waiting for one version of SKU."""

    def __init__(self, kafka: KafkaCluster, prefix: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            bootstrap_servers=kafka.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            **kafka.admin_config(),
        )
        topic = prefix + TOPIC
        partitions = _wait_for(lambda: self.consumer.partitions_for_topic(topic), 120)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(assigned)
        self.consumer.seek_to_end()
        for partition in assigned:  # now, not lazily at the first poll: that could skip one
            self.consumer.position(partition)

    def wait_for(self, version: int, timeout: float = 60) -> float:
        """Blocks until the record of `version` arrives; returns perf_counter() then."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for batch in self.consumer.poll(timeout_ms=50).values():
                for record in batch:
                    data = json.loads(record.value)["data"]
                    if record.key.decode() == SKU and data["stock_version"] >= version:
                        return time.perf_counter()
        raise RuntimeError(f"stock version {version} of {SKU} not on Kafka within {timeout} s")

    def close(self) -> None:
        self.consumer.close()


def _wait_for(check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"not within {timeout} s: {check}")


@dataclass(frozen=True)
class Failover:
    """Seconds from the SIGKILL of the holder until..."""

    published: float  # a consumer has the first event written after it
    taken: float  # the other central's relay logged taking the lease


def measure(database_url: str, kafka: KafkaCluster, runs: int) -> list[Failover]:
    """`runs` failovers on one database."""
    prefix = f"fo{uuid.uuid4().hex[:6]}."
    seed_central(database_url, catalog_rows([SKU], 0), [])
    pair = [Central(database_url, kafka, prefix), Central(database_url, kafka, prefix)]
    writer = StockWriter(database_url)
    samples: list[Failover] = []
    try:
        for central in pair:
            central.start()
        watcher = Watcher(kafka, prefix)
        try:
            watcher.wait_for(writer.next())  # a leader publishes: the lease is held
            for _ in range(runs):
                samples.append(one_failover(pair, writer, watcher, database_url))
        finally:
            watcher.close()
    finally:
        writer.close()
        for central in pair:
            central.stop()
    return samples


def one_failover(
    pair: list[Central], writer: StockWriter, watcher: Watcher, database_url: str
) -> Failover:
    lease = _wait_for(lambda: _held(database_url), 60)
    (holder,) = [c for c in pair if c.process is not None and c.process.pid == lease.pid]
    (other,) = [c for c in pair if c is not holder]
    killed_at, killed_wall = time.perf_counter(), time.time()
    holder.kill()
    seen_at = watcher.wait_for(writer.next())
    holder.start()  # back as the standby, for the next run
    return Failover(seen_at - killed_at, other.took_lease_after(killed_wall) - killed_wall)


def _held(database_url: str) -> Any:
    lease = read_lease(database_url)
    return lease if lease is not None and lease.held else None


@contextmanager
def kafka_cluster(plaintext: bool) -> Iterator[KafkaCluster]:
    env_file = os.environ.get("BENCH_KAFKA_ENV")
    if env_file:
        yield KafkaCluster.from_client_env(Path(env_file), RUN / "kafka-external-clients")
        return
    kafka, stop = start_kafka(plaintext=plaintext)
    try:
        yield kafka
    finally:
        stop()


@contextmanager
def mariadb_server() -> Iterator[str]:
    external = os.environ.get("BENCH_MYSQL_URL")
    if external:
        yield external
        return
    url, stop = start_mariadb()
    try:
        yield url
    finally:
        stop()


def run(quick: bool = False, plaintext: bool = False) -> str:
    from bench.orders import fresh_database

    RUN.mkdir(parents=True, exist_ok=True)
    runs = 3 if quick else 10
    results: dict[str, list[Failover]] = {}
    with kafka_cluster(plaintext) as kafka, mariadb_server() as mariadb:
        for backend in ("sqlite", "mariadb"):
            results[backend] = measure(fresh_database(backend, mariadb), kafka, runs)
    return report(results, runs, quick, plaintext)


def report(results: dict[str, list[Failover]], runs: int, quick: bool, plaintext: bool) -> str:
    from central.outbox import LEASE_SECONDS
    from central.settings import Settings

    facts = ", ".join(f"{k} {v}" for k, v in machine_facts().items())
    poll = Settings().relay_poll_seconds
    lines = [
        f"Machine: {facts}.{' Quick mode.' if quick else ''} {runs} runs per database. Lease "
        f"{LEASE_SECONDS:g} s (renewed once a third has passed), relay poll {poll:g} s. "
        "Seconds from the SIGKILL of the lease holder to a consumer receiving the first "
        "event written after it, published by the other central (*published*), and to the "
        "other central's relay logging that it took the lease (*lease taken*, from its log "
        "line's time).",
        "",
        "| database | published p50 s | published p100 s | lease taken p50 s "
        "| lease taken p100 s | each run, published (s) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for backend, samples in results.items():
        published = [s.published for s in samples]
        taken = [s.taken for s in samples]
        each = ", ".join(f"{s:.2f}" for s in published)
        lines.append(
            f"| {backend} | {percentile(published, 50):.2f} | {max(published):.2f} "
            f"| {percentile(taken, 50):.2f} | {max(taken):.2f} | {each} |"
        )
    worst = max(s.published for samples in results.values() for s in samples)
    lines += [
        "",
        verdict("failover p100 (s)", worst, f"at most {TARGET_SECONDS:g}", worst <= TARGET_SECONDS),
        "",
        f"Kafka: {security_mode(plaintext)}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = module_args("bench.relay_failover", __doc__, argv)
    print(run(quick=args.quick, plaintext=args.plaintext))


if __name__ == "__main__":
    main()
