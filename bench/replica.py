"""The store agent's replica: apply rate next to raw Kafka consumption, bootstrap time, memory.

    python -m bench.replica [--quick] [--plaintext]

- *apply rate*: the agent's real consumer + apply path (KafkaRecordSource, SyncLoop,
  apply_batch into a fresh SQLite replica, in this process) draining a backlog of 200,000
  stock events (quick: 20,000), next to a plain KafkaConsumer reading the same backlog in the
  same run without processing it.
- *bootstrap*: a real `storeagent run` process with a new replica over a catalog of 100,000
  products (quick: 10,000), one product and one stock record each, from spawn to /readyz 200.
- *RSS*: VmRSS of that process, sampled while it bootstraps (peak = loaded) and once it has
  been idle and caught up for a few seconds.

Kafka runs with TLS, SCRAM logins and ACLs (`--plaintext`: without), and every consumer logs
in as a store's key, as an agent does. BENCH_KAFKA_ENV=DIR/client.env uses that running
secure cluster (its user must be able to make users and ACLs, like scripts/kafka's admin)
instead of starting one, BENCH_KAFKA=host:port a running plaintext broker; BENCH_OUT=FILE also
writes the report there.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition

from bench.common import BIN, RUN, machine_facts, module_args, security_mode, start_kafka, verdict
from bench.stack import clean_environ
from harness.kafka_security import KafkaCluster
from harness.topics import create_topics
from invwire.events import Event as WireEvent
from invwire.events import ProductChanged, StockChanged, encode
from invwire.identity import consumer_group
from storeagent.ops import runtime
from storeagent.replica.db import META_EVENTS_APPLIED, open_replica
from storeagent.sync.kafka_login import KafkaLogin
from storeagent.sync.kafka_source import KafkaRecordSource
from storeagent.sync.loop import SyncLoop, topic_names
from storeagent.sync.progress import SyncProgress

Event = tuple[str, bytes, bytes]
VERSIONS_PER_SKU = 100
APPLY_TARGET = 0.7  # of the raw consume rate (the throughput issue's bound; 0.5 before)
IDLE_S = 5.0
OCCURRED_AT = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)  # one moment for every event
APPLY_BUDGET_S = 60.0  # the apply rate is measured over at most this long
APPLY_STORE, BOOT_STORE = "bench-apply", "bench"  # whose keys the consumers log in with


@dataclass(frozen=True)
class Sizes:
    backlog: int
    products: int

    @classmethod
    def pick(cls, quick: bool) -> Sizes:
        return cls(20_000, 10_000) if quick else cls(200_000, 100_000)


@dataclass(frozen=True)
class ApplyRun:
    """One backlog drained twice: by the agent's sync loop and by a plain consumer."""

    backlog: int
    raw_s: float
    applied: int
    agent_s: float


@dataclass(frozen=True)
class BootstrapRun:
    products: int
    seconds: float
    rss_loaded_kb: int
    rss_idle_kb: int


@dataclass(frozen=True)
class Results:
    apply: ApplyRun
    bootstrap: BootstrapRun


def stock_backlog(count: int, rng: random.Random) -> list[Event]:
    """`count` stock events: VERSIONS_PER_SKU rounds, each every SKU once in random order."""
    skus = [f"BENCH-{n:06d}" for n in range(max(count // VERSIONS_PER_SKU, 1))]
    events: list[Event] = []
    for version in range(1, VERSIONS_PER_SKU + 1):
        for sku in rng.sample(skus, len(skus)):
            events.append(record(StockChanged(sku, version, 1, "adjust", version)))
    return events[:count]


def catalog(products: int) -> list[Event]:
    events: list[Event] = []
    for n in range(products):
        sku = f"CAT-{n:06d}"
        events.append(record(ProductChanged(sku, f"Product {n}", "1.99", 3, "", True, 1)))
        events.append(record(StockChanged(sku, n % 100, n % 100, "create", 1)))
    return events


def record(event: WireEvent) -> Event:
    """(unprefixed topic, key, value) as central's relay publishes the event."""
    envelope = encode(event, OCCURRED_AT)
    return envelope.topic, envelope.key.encode(), envelope.value.encode()


@dataclass(frozen=True)
class Store:
    """A store key with its Kafka user and ACLs on one prefix's topics."""

    id: str
    key: str

    @classmethod
    def provision(cls, kafka: KafkaCluster, store_id: str, prefix: str) -> Store:
        key = f"ik_bench_{uuid.uuid4().hex}"
        kafka.provision_store(store_id, key, prefix)
        return cls(store_id, key)


def produce(kafka: KafkaCluster, prefix: str, events: list[Event]) -> None:
    create_topics(kafka.bootstrap, prefix, **kafka.admin_config())
    producer = KafkaProducer(
        bootstrap_servers=kafka.bootstrap,
        linger_ms=50,
        batch_size=1024 * 1024,
        **kafka.admin_config(),
    )
    try:
        for topic, key, value in events:
            producer.send(prefix + topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def delete_topics(kafka: KafkaCluster, prefix: str) -> None:
    with KafkaAdminClient(bootstrap_servers=kafka.bootstrap, **kafka.admin_config()) as admin:
        admin.delete_topics(list(topic_names(prefix)))


def raw_consume(kafka: KafkaCluster, prefix: str, store: Store) -> tuple[int, float]:
    """Records read by a plain KafkaConsumer from the beginning to the end offsets, seconds."""
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        enable_auto_commit=False,
        **kafka.store_config(store.id, store.key),
    )
    try:
        partitions = [
            KafkaTopicPartition(topic, p)
            for topic in topic_names(prefix)
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        started = time.perf_counter()
        count = 0
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            count += sum(len(batch) for batch in consumer.poll(timeout_ms=500).values())
        return count, time.perf_counter() - started
    finally:
        consumer.close()


def agent_apply(kafka: KafkaCluster, prefix: str, db: Path, store: Store) -> tuple[int, float]:
    """Events applied by the agent's sync loop into a fresh replica until it is bootstrapped
    (the whole backlog is in) or APPLY_BUDGET_S passed, and the seconds that took."""
    replica = open_replica(db)
    login = KafkaLogin.for_store(kafka.protocol, store.id, store.key, kafka.ca_file or None)
    connect = partial(
        KafkaRecordSource.connect,
        kafka.bootstrap,
        group_id=consumer_group(store.id),
        client_id="bench",
        login=login,
    )
    stop = threading.Event()
    loop = SyncLoop(replica, connect, prefix=prefix, stop=stop, progress=SyncProgress())
    thread = threading.Thread(target=loop.run, daemon=True)
    started = time.perf_counter()
    thread.start()
    try:
        deadline = started + APPLY_BUDGET_S
        while not replica.is_bootstrapped() and time.perf_counter() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        return int(replica.get_meta(META_EVENTS_APPLIED) or 0), elapsed
    finally:
        stop.set()
        thread.join(10)
        replica.close()


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def sample_until(done: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float) -> int:
    """Peak VmRSS (kB) of `process` until `done()`; every 50 ms."""
    peak = 0
    deadline = time.monotonic() + timeout
    while not done():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the agent exited or hung; see {RUN}/agent-bench.log")
        peak = max(peak, vm_rss_kb(process.pid))
        time.sleep(0.05)
    return max(peak, vm_rss_kb(process.pid))


def agent_bootstrap(
    kafka: KafkaCluster, prefix: str, db: Path, store: Store, products: int
) -> BootstrapRun:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["run", "--store-id", store.id, "--kafka", kafka.bootstrap, "--topic-prefix", prefix]
    args += ["--db", str(db), "--listen", f"127.0.0.1:{port}"]
    env = {**clean_environ(), **kafka.agent_env(), "STOREAGENT_API_KEY": store.key}
    with (RUN / "agent-bench.log").open("wb") as log:
        process = subprocess.Popen([str(BIN / "storeagent"), *args], stderr=log, env=env)
    started = time.perf_counter()
    try:
        rss_loaded_kb = sample_until(lambda: ready(url), process, timeout=900)
        seconds = time.perf_counter() - started
        time.sleep(IDLE_S)
        return BootstrapRun(products, seconds, rss_loaded_kb, vm_rss_kb(process.pid))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(kafka: KafkaCluster, sizes: Sizes, workdir: Path) -> Results:
    run_id = uuid.uuid4().hex[:8]
    backlog, boot = f"benchr{run_id}.", f"benchb{run_id}."
    try:
        produce(kafka, backlog, stock_backlog(sizes.backlog, random.Random(7)))
        reader = Store.provision(kafka, APPLY_STORE, backlog)
        with agent_interpreter():
            consumed, raw_s = raw_consume(kafka, backlog, reader)
            applied, agent_s = agent_apply(kafka, backlog, workdir / "apply.db", reader)
        apply = ApplyRun(consumed, raw_s, applied, agent_s)
        print(_apply_line(apply), file=sys.stderr)
        produce(kafka, boot, catalog(sizes.products))
        store = Store.provision(kafka, BOOT_STORE, boot)
        bootstrap = agent_bootstrap(kafka, boot, workdir / "boot.db", store, sizes.products)
        print(_bootstrap_line(bootstrap), file=sys.stderr)
    finally:
        delete_topics(kafka, backlog)
        delete_topics(kafka, boot)
    return Results(apply, bootstrap)


@contextmanager
def agent_interpreter() -> Iterator[None]:
    """This process under the agent process's interpreter settings (storeagent.ops.runtime),
    for the raw and the agent run alike; Python's own again after."""
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    runtime.tune()
    runtime.settle()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)


@contextmanager
def broker(plaintext: bool = False) -> Iterator[KafkaCluster]:
    """BENCH_KAFKA_ENV or BENCH_KAFKA if set, otherwise a broker of our own for the duration."""
    env_file, external = os.environ.get("BENCH_KAFKA_ENV"), os.environ.get("BENCH_KAFKA")
    if env_file:
        yield KafkaCluster.from_client_env(Path(env_file), RUN / "kafka-external-clients")
        return
    if external:
        yield KafkaCluster.plaintext(external, RUN / "kafka-external-clients")
        return
    kafka, stop = start_kafka("kafka-replica", port=29392, plaintext=plaintext)
    try:
        yield kafka
    finally:
        stop()


def _apply_line(r: ApplyRun) -> str:
    return (
        f"backlog {r.backlog}: agent {r.applied / r.agent_s:.0f} events/s "
        f"({r.applied} in {r.agent_s:.1f} s), "
        f"raw kafka-python {r.backlog / r.raw_s:.0f} records/s"
    )


def _bootstrap_line(r: BootstrapRun) -> str:
    return (
        f"bootstrap {r.products} products: {r.seconds:.1f} s, RSS loaded "
        f"{r.rss_loaded_kb / 1024:.0f} MiB, idle {r.rss_idle_kb / 1024:.0f} MiB"
    )


def table(results: Results) -> str:
    a, b = results.apply, results.bootstrap
    agent_rate, raw_rate = a.applied / a.agent_s, a.backlog / a.raw_s
    drained = "" if a.applied == a.backlog else f" ({a.applied:,} applied in {a.agent_s:.0f} s)"
    rows = [
        ("agent: consume + apply + offsets, fresh replica", f"{agent_rate:,.0f} events/s{drained}"),
        ("raw kafka-python KafkaConsumer, same backlog", f"{raw_rate:,.0f} records/s"),
        ("agent / raw", f"{agent_rate / raw_rate:.3f}"),
        (f"bootstrap of a new replica, {b.products:,} products", f"{b.seconds:.1f} s"),
        ("bootstrap rate incl. process start", f"{2 * b.products / b.seconds:,.0f} records/s"),
        ("RSS while bootstrapping (peak)", f"{b.rss_loaded_kb / 1024:.0f} MiB"),
        (f"RSS idle, caught up ({IDLE_S:.0f} s after ready)", f"{b.rss_idle_kb / 1024:.0f} MiB"),
    ]
    lines = ["| measure | value |", "| --- | ---: |"]
    ratio = agent_rate / raw_rate
    target = verdict("apply rate / raw consume rate", ratio, "at least 0.7", ratio >= APPLY_TARGET)
    return "\n".join(lines + [f"| {name} | {value} |" for name, value in rows] + ["", target])


def run(quick: bool = False, plaintext: bool = False) -> str:
    RUN.mkdir(parents=True, exist_ok=True)
    sizes = Sizes.pick(quick)
    with broker(plaintext) as kafka, tempfile.TemporaryDirectory(dir=RUN) as workdir:
        results = measure(kafka, sizes, Path(workdir))
    facts = ", ".join(f"{k} {v}" for k, v in machine_facts().items())
    mode = " Quick mode." if quick else ""
    kafka_mode = security_mode(not kafka.secure)
    body = f"{method(sizes)}\n\n{table(results)}\n\nKafka: {kafka_mode}."
    return f"Machine: {facts}.{mode}\n\n{body}"


def method(sizes: Sizes) -> str:
    return (
        f"*Apply rate*: {sizes.backlog:,} stock.changed events ({VERSIONS_PER_SKU} versions of "
        f"{sizes.backlog // VERSIONS_PER_SKU:,} SKUs) already on the broker, drained by the "
        "agent's sync loop in this process (real KafkaRecordSource, batches of up to 2,000 "
        "records, one SQLite transaction per batch with its offsets, then a Kafka offset "
        "commit) into a new replica, from the loop's start until bootstrapped or "
        f"{APPLY_BUDGET_S:.0f} s; *raw*: a plain KafkaConsumer polling the same partitions to "
        "their end offsets in the same run, no processing; both in this process under the agent "
        "process's interpreter settings (storeagent.ops.runtime: the GIL switched every 0.5 ms, "
        "the collector's thresholds at 10,000/10/10, what was made before frozen). "
        f"*Bootstrap*: `storeagent run` as a process over {sizes.products:,} products (one "
        "product.created and one stock.changed each), from spawn to /readyz 200. *RSS*: VmRSS "
        "from /proc/PID/status."
    )


def main(argv: list[str] | None = None) -> None:
    args = module_args("bench.replica", __doc__, argv)
    report = run(quick=args.quick, plaintext=args.plaintext)
    print(report)
    if os.environ.get("BENCH_OUT"):
        Path(os.environ["BENCH_OUT"]).write_text(report)


if __name__ == "__main__":
    main()
