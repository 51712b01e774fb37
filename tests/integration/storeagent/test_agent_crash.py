"""Exactly once under crashes, with the real `storeagent run` process and the real broker.

A stream of 50,000 events (500 SKUs x 96 stock versions + 4 product versions each, every
version strictly newer than the last) is produced in chunks by a thread while the agent
consumes it. The agent is SIGKILLed at 20 random points spread over the stream (each once
the replica has counted that many applied events, plus a random few milliseconds so the kill
lands anywhere in the next batch) and restarted every time. Because every event is newer
than its predecessor, each must be applied exactly once: the replica's own `events_applied`
counter (kept in the same transaction as the rows and offsets) must end at exactly 50,000.
"""

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from harness.kafka_security import KafkaCluster
from harness.topics import create_topics
from harness.waiting import eventually
from storeagent.sync.loop import topic_names
from tests.support.agent_fakes import product_event, stock_event
from tests.support.processes import BIN, while_alive

SKUS = [f"CRASH-{n:03d}" for n in range(500)]
STOCK_VERSIONS = 96
PRODUCT_VERSIONS = 4
TOTAL = len(SKUS) * (STOCK_VERSIONS + PRODUCT_VERSIONS)
KILLS = 20
CHUNKS = 10
SEED = 20261129

Event = tuple[str, bytes, bytes]
Offsets = dict[tuple[str, int], int]


def quantity(n: int, version: int) -> int:
    return (n * 31 + version * 7) % 1000


def product_round(version: int) -> int:
    return (version - 1) * (STOCK_VERSIONS // PRODUCT_VERSIONS) + 1


def event_stream(rng: random.Random) -> list[Event]:
    """Round v holds stock version v of every SKU, shuffled; some rounds a product version."""
    rounds = {product_round(v): v for v in range(1, PRODUCT_VERSIONS + 1)}
    events: list[Event] = []
    for version in range(1, STOCK_VERSIONS + 1):
        for n in rng.sample(range(len(SKUS)), len(SKUS)):
            events.append(
                stock_event(sku=SKUS[n], quantity=quantity(n, version), stock_version=version)
            )
            if version in rounds:
                p = rounds[version]
                events.append(
                    product_event(sku=SKUS[n], name=f"Item {n} v{p}", price=f"{p}.00", version=p)
                )
    return events


def expected_checksums() -> tuple[str, str]:
    stock = [(sku, quantity(n, STOCK_VERSIONS), STOCK_VERSIONS) for n, sku in enumerate(SKUS)]
    last = PRODUCT_VERSIONS
    products = [(sku, f"Item {n} v{last}", f"{last}.00", last) for n, sku in enumerate(SKUS)]
    return checksum(stock), checksum(products)


def checksum(rows: list[tuple[object, ...]]) -> str:
    digest = hashlib.sha256()
    for row in sorted(rows):
        digest.update(repr(row).encode())
    return digest.hexdigest()


def read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)


def replica_checksums(db: Path) -> tuple[str, str]:
    with closing(read_only(db)) as conn:
        stock = conn.execute("SELECT sku, quantity, stock_version FROM stock").fetchall()
        products = conn.execute("SELECT sku, name, price, version FROM products").fetchall()
    return checksum(stock), checksum(products)


def replica_dump(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every replicated table, and the counters: what a replay must not change."""
    with closing(read_only(db)) as conn:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall())
            for table in ("stock", "products", "categories", "dead_letters", "meta")
        }


def meta_value(db: Path, key: str) -> str | None:
    try:
        with closing(read_only(db)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return None
    return None if row is None else row[0]


def applied(db: Path) -> int:
    return int(meta_value(db, "events_applied") or 0)


def stored_offsets(db: Path) -> Offsets:
    try:
        with closing(read_only(db)) as conn:
            rows = conn.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
    except sqlite3.OperationalError:
        return {}
    return {(topic, partition): offset for topic, partition, offset in rows}


class ChunkedProducer(threading.Thread):
    """Produces the stream in chunks, each flushed, with a pause between them."""

    def __init__(self, kafka: KafkaCluster, prefix: str, events: list[Event], pause: float) -> None:
        super().__init__(daemon=True)
        self._kafka, self._prefix, self._events, self._pause = kafka, prefix, events, pause
        self.ends: Offsets = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self._kafka.bootstrap,
            linger_ms=20,
            batch_size=256 * 1024,
            **self._kafka.admin_config(),
        )
        try:
            size = len(self._events) // CHUNKS
            for start in range(0, len(self._events), size):
                self._send(producer, self._events[start : start + size])
                time.sleep(self._pause)
        except BaseException as exc:
            self.error = exc
        finally:
            producer.close()

    def _send(self, producer: KafkaProducer, chunk: list[Event]) -> None:
        futures = [
            producer.send(self._prefix + topic, key=key, value=value) for topic, key, value in chunk
        ]
        producer.flush()
        for future in futures:
            meta = future.get(timeout=30)
            tp = (meta.topic, meta.partition)
            self.ends[tp] = max(self.ends.get(tp, 0), meta.offset + 1)


def kill_points(rng: random.Random) -> list[int]:
    """One random applied-event count in each of KILLS equal strata of the stream. The last
    one ends a tenth before the stream's end: an agent applies some 60,000 events a second,
    and the kill comes up to 30 ms (and a check's interval) after its point is reached; it
    must land before the last event is applied."""
    low, high = TOTAL // 50, TOTAL - TOTAL // 10
    width = (high - low) // KILLS
    return [low + i * width + rng.randrange(width) for i in range(KILLS)]


@dataclass
class CrashRun:
    db: Path
    prefix: str
    bootstrap: str
    workdir: Path
    store_id: str
    env: dict[str, str]  # the agent's Kafka login: its API key and the cluster's security
    ends: Offsets = field(default_factory=dict)
    kills: list[tuple[int, int, bool]] = field(default_factory=list)  # point, at kill, producing
    final_exit: int | None = None
    seconds: float = 0.0

    def start_agent(self, db: Path) -> subprocess.Popen[bytes]:
        args = ["run", "--store-id", self.store_id, "--kafka", self.bootstrap]
        args += ["--topic-prefix", self.prefix, "--db", str(db), "--listen", "127.0.0.1:0"]
        env = {**os.environ, **self.env}
        with (self.workdir / "agent.log").open("ab") as log:
            return subprocess.Popen([str(BIN / "storeagent"), *args], stderr=log, env=env)

    def run_to_the_end(self, db: Path) -> int:
        """Start an agent on `db`, wait until it stored every produced offset, SIGTERM it."""
        agent = self.start_agent(db)
        try:
            caught_up = while_alive(agent, lambda: stored_offsets(db) == self.ends)
            eventually(caught_up, 90, "catching up", interval=0.01)
            agent.send_signal(signal.SIGTERM)
            return agent.wait(10)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()


def kill_mid_stream(run: CrashRun, producer: ChunkedProducer, rng: random.Random) -> None:
    for life, point in enumerate(kill_points(rng)):
        agent = run.start_agent(run.db)
        try:
            reached = while_alive(agent, lambda p=point: applied(run.db) >= p)
            eventually(reached, 60, f"{point} applied", interval=0.01)
            time.sleep(rng.uniform(0, 0.03))
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
        assert agent.returncode == -signal.SIGKILL, f"life {life} exited {agent.returncode}"
        run.kills.append((point, applied(run.db), producer.is_alive()))


@pytest.fixture(scope="module")
def crash_run(
    kafka_cluster: KafkaCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CrashRun]:
    rng = random.Random(SEED)
    workdir = tmp_path_factory.mktemp("crash")
    store_id = f"crash-{uuid.uuid4().hex[:8]}"
    prefix = f"t{store_id}."
    api_key = f"sk-{uuid.uuid4().hex}"
    kafka_cluster.provision_store(store_id, api_key, prefix)
    env = {"STOREAGENT_API_KEY": api_key, **kafka_cluster.agent_env()}
    bootstrap, admin_config = kafka_cluster.bootstrap, kafka_cluster.admin_config()
    run = CrashRun(workdir / "replica.db", prefix, bootstrap, workdir, store_id, env)
    create_topics(bootstrap, prefix, **admin_config)
    producer = ChunkedProducer(kafka_cluster, prefix, event_stream(rng), pause=1.5)
    started = time.monotonic()
    try:
        producer.start()
        kill_mid_stream(run, producer, rng)
        producer.join(120)
        assert producer.error is None and not producer.is_alive()
        run.ends = producer.ends
        run.final_exit = run.run_to_the_end(run.db)
        run.seconds = time.monotonic() - started
        producing = sum(1 for *_, alive in run.kills if alive)
        print(
            f"\ncrash run: {TOTAL} events, {len(run.kills)} SIGKILLs ({producing} while "
            f"producing), {run.seconds:.1f} s; kills at {[at for _, at, _ in run.kills]}"
        )
        yield run
    finally:
        with KafkaAdminClient(bootstrap_servers=bootstrap, **admin_config) as admin:
            admin.delete_topics(list(topic_names(prefix)))


def test_twenty_sigkills_land_mid_stream_and_the_last_agent_stops_cleanly(crash_run: CrashRun):
    kills = crash_run.kills

    assert len(kills) == KILLS
    assert all(point <= at_kill < TOTAL for point, at_kill, _ in kills)
    assert any(producing for *_, producing in kills), "no kill while events were produced"
    assert crash_run.final_exit == 0


def test_after_the_crashes_the_replica_holds_exactly_the_produced_final_state(
    crash_run: CrashRun,
):
    assert replica_checksums(crash_run.db) == expected_checksums()
    assert stored_offsets(crash_run.db) == crash_run.ends
    assert sum(crash_run.ends.values()) == TOTAL
    with closing(read_only(crash_run.db)) as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


def test_no_event_was_applied_twice(crash_run: CrashRun):
    """Every event is newer than the last one of its key, so each applies exactly once."""
    assert applied(crash_run.db) == TOTAL


def test_replaying_every_topic_from_offset_0_into_the_replica_changes_nothing(
    crash_run: CrashRun,
):
    replay = crash_run.workdir / "replay.db"
    with closing(read_only(crash_run.db)) as source, closing(sqlite3.connect(replay)) as copy:
        source.backup(copy)
        with copy:
            copy.execute("DELETE FROM offsets")

    code = crash_run.run_to_the_end(replay)

    assert code == 0
    assert replica_dump(replay) == replica_dump(crash_run.db)
