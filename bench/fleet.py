"""The fleet view at 1,000 stores: `GET /api/v1/sync/stores` p50/p99 next to `/healthz` in
the same run, central's memory, and `invctl sync status --all` at that size.

    python -m bench.fleet [--quick] [--plaintext]

One central (SQLite, its relay publishing a small catalog) and 1,000 stores (quick: 50),
each with one consumer-group offset committed in its agent's group (`storeagent.<id>`) and
a heartbeat every 10 s (the agent's default) sent with its own key during the whole
measurement, spread evenly over the interval (100 heartbeats a second at 1,000 stores).

The stores are made through central's service layer, with no Kafka user each: making 1,000
SCRAM credentials and their ACLs is what `POST /stores` adds, and it costs a Kafka admin
connection per store and once more per store at each central start (the grants of today).
The fleet view never uses them: it reads heartbeats from the database and every group's
committed offsets with central's admin credential, and the offsets here are committed with
the admin credential as well. BENCH_KAFKA_ENV=DIR/client.env uses that running secure
cluster (its user must be able to make users and ACLs) instead of starting one.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import (
    BIN,
    RUN,
    Sample,
    machine_facts,
    module_args,
    ms,
    process_memory_kib,
    security_mode,
    wait_published,
)
from bench.relay_failover import kafka_cluster
from bench.stack import (
    SECRET,
    catalog_rows,
    central_process,
    clean_environ,
    seed_central,
    sqlite_url,
)
from bench.sync_latency import admin_headers
from central.services.fleet_lags import LAG_CACHE_S
from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from invwire.identity import consumer_group
from invwire.topics import TOPICS

PORT = 18990
EVERY_S = 10.0  # the agent's default heartbeat interval (storeagent.settings)
TARGET_P99_S = 1.0
PRODUCTS = 20


@dataclass(frozen=True)
class Size:
    stores: int
    requests: int  # of each measured route
    fresh_requests: int  # of the fleet, each after the kept lag reading expired
    invctl_runs: int


FULL = Size(stores=1000, requests=200, fresh_requests=20, invctl_runs=5)
QUICK = Size(stores=50, requests=30, fresh_requests=3, invctl_runs=2)


@dataclass
class Figures:
    size: Size
    healthz: Sample = field(default_factory=Sample)
    fleet: Sample = field(default_factory=Sample)
    fresh: Sample = field(default_factory=Sample)  # each request read Kafka
    fresh_read: int = 0  # of them, how many answers carried a new lag_as_of
    fleet_bytes: int = 0
    kafka: str = ""
    lags_known: int = 0
    states: Counter[str] = field(default_factory=Counter)
    heartbeats: Sample = field(default_factory=Sample)
    memory_idle: dict[str, int] = field(default_factory=dict)
    memory_after: dict[str, int] = field(default_factory=dict)
    invctl: dict[str, list[float]] = field(default_factory=dict)
    made_s: float = 0.0


def make_stores(database_url: str, stores: list[str]) -> dict[str, str]:
    """Each store and its first key through central's service layer, without Kafka users
    (see the module's docstring); each store's API key."""
    from central.app import bootstrap
    from central.services import accounts
    from central.settings import Settings

    central = bootstrap(Settings(database_url=database_url, jwt_secret=SECRET), with_relay=False)
    try:
        return {s: accounts.create_store(central.uow(), s, s)["api_key"] for s in stores}
    finally:
        central.close()


def commit_offsets(kafka: KafkaCluster, prefix: str, stores: list[str]) -> None:
    """One committed offset per partition in each store's group, as its agent commits them:
    store i is i % 4 events behind on each partition that has that many (so lags differ)."""
    from kafka import KafkaAdminClient, OffsetSpec, TopicPartition
    from kafka.structs import OffsetAndMetadata

    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap, **kafka.admin_config())
    try:
        described = admin.describe_topics([prefix + topic for topic in TOPICS])
        partitions = [
            TopicPartition(topic["name"], p["partition_index"])
            for topic in described
            for p in topic["partitions"]
        ]
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
        for index, store in enumerate(stores):
            behind = index % 4
            offsets = {
                tp: OffsetAndMetadata(max(0, ends[tp].offset - behind), "", -1) for tp in partitions
            }
            _alter_when_coordinated(admin, consumer_group(store), offsets)
    finally:
        admin.close()


def _alter_when_coordinated(admin: Any, group: str, offsets: dict[Any, Any]) -> None:
    """A new broker answers CoordinatorNotAvailable until its offsets topic is ready (and a
    moved coordinator NotCoordinator): wait for that state, then commit."""
    from kafka.errors import CoordinatorNotAvailableError, NotCoordinatorError

    eventually(
        lambda: admin.alter_group_offsets(group, offsets) or True,
        timeout=60,
        what=f"a group coordinator for {group}",
        interval=0.2,
        ignoring=(CoordinatorNotAvailableError, NotCoordinatorError),
    )


def forget(kafka: KafkaCluster, prefix: str, stores: list[str]) -> None:
    """Delete the run's groups and topics: the cluster may be one others use."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap, **kafka.admin_config())
    try:
        admin.delete_groups([consumer_group(store) for store in stores])
        admin.delete_topics([prefix + topic for topic in TOPICS])
    except Exception as exc:  # left behind, not fatal: the prefix is the run's own
        print(f"bench.fleet: not cleaned up: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        admin.close()


class Heartbeats:
    """Every store's heartbeat every EVERY_S with its own key, as its agent sends it, each
    store at its own phase so that they are spread evenly over the interval."""

    def __init__(self, central: str, keys: dict[str, str], threads: int = 8) -> None:
        self.central = central
        self.keys = list(keys.items())
        self.threads = threads
        self.stop = threading.Event()
        self.sample = Sample()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._started = 0.0

    def __enter__(self) -> Heartbeats:
        self._started = time.monotonic()
        for index in range(self.threads):
            worker = threading.Thread(target=self._send, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(30)
        self.sample.elapsed = time.monotonic() - self._started

    def _send(self, index: int) -> None:
        mine = [(n, store, key) for n, (store, key) in enumerate(self.keys)][index :: self.threads]
        own, errors = [], Counter[str]()
        with httpx.Client(base_url=self.central, timeout=30) as client:
            rounds = 0
            while not self.stop.is_set():
                for n, store, key in mine:
                    due = self._started + (rounds + n / len(self.keys)) * EVERY_S
                    if self.stop.wait(max(0.0, due - time.monotonic())):
                        break
                    started = time.perf_counter()
                    try:
                        beat(client, store, key)
                    except httpx.HTTPError as exc:
                        errors[type(exc).__name__] += 1
                        continue
                    own.append(time.perf_counter() - started)
                rounds += 1
        with self._lock:
            self.sample.latencies.extend(own)
            self.sample.errors += errors.total()
            self.sample.error_kinds.update(errors)


def beat(client: httpx.Client, store: str, key: str) -> None:
    report = {
        "instance_id": f"bench-{store}",
        "every_s": EVERY_S,
        "ready": True,
        "lag": 0,
        "offline_queue": 0,
        "rejected_offline": 0,
        "dead_letters": 0,
        "staleness_s": 0.5,
        "clock_offset_s": 0.0,
    }
    response = client.post("/api/v1/stores/heartbeat", json=report, headers={"X-API-Key": key})
    response.raise_for_status()


def wait_all_ok(client: httpx.Client, headers: dict[str, str], count: int) -> Counter[str]:
    """Until every store is `ok` (each heartbeated once, its key accepted): the states."""
    deadline = time.monotonic() + 3 * EVERY_S
    states: Counter[str] = Counter()
    while time.monotonic() < deadline:
        answer = client.get("/api/v1/sync/stores", headers=headers).raise_for_status().json()
        states = Counter(item["state"] for item in answer["items"])
        if states["ok"] == count:
            return states
        time.sleep(0.5)
    raise RuntimeError(f"not every store is ok after {3 * EVERY_S:.0f} s: {dict(states)}")


def measure_routes(client: httpx.Client, headers: dict[str, str], figures: Figures) -> None:
    """`/healthz` and the fleet, one after the other, so both meet the same load."""
    for _ in range(figures.size.requests):
        figures.healthz.latencies.append(timed(lambda: client.get("/healthz")))
        figures.fleet.latencies.append(
            timed(lambda: client.get("/api/v1/sync/stores", headers=headers))
        )
    last = client.get("/api/v1/sync/stores", headers=headers).raise_for_status()
    figures.fleet_bytes = len(last.content)
    answer = last.json()
    figures.kafka = answer["kafka"]
    figures.lags_known = sum(1 for item in answer["items"] if item["lag"] is not None)


def measure_fresh(client: httpx.Client, headers: dict[str, str], figures: Figures) -> None:
    """The fleet once the kept lag reading has expired: each answer read Kafka (counted by
    its new `lag_as_of`), as the first operator to look after a quiet spell sees it."""
    seen = None
    for _ in range(figures.size.fresh_requests):
        time.sleep(LAG_CACHE_S + 0.2)  # the cache time itself is what is waited out
        started = time.perf_counter()
        answer = client.get("/api/v1/sync/stores", headers=headers).raise_for_status().json()
        figures.fresh.latencies.append(time.perf_counter() - started)
        figures.fresh_read += answer["lag_as_of"] != seen
        seen = answer["lag_as_of"]


def timed(request: Callable[[], httpx.Response]) -> float:
    started = time.perf_counter()
    request().raise_for_status()
    return time.perf_counter() - started


def measure_invctl(central: str, headers: dict[str, str], runs: int) -> dict[str, list[float]]:
    """Wall time of whole `invctl` processes: the default table (the 50 worst, after a count
    per state) and every store as JSON."""
    token = headers["Authorization"].removeprefix("Bearer ")
    env = {**clean_environ(), "INVCTL_TOKEN": token, "COLUMNS": "120"}
    base = [str(BIN / "invctl"), "--central", central]
    commands = {
        "invctl sync status --all": [*base, "sync", "status", "--all"],
        "invctl --json sync status --all": [*base, "--json", "sync", "status", "--all"],
    }
    walls: dict[str, list[float]] = {}
    for name, argv in commands.items():
        walls[name] = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(argv, env=env, capture_output=True, check=True, timeout=120)
            walls[name].append(time.perf_counter() - started)
    return walls


def run(quick: bool = False, plaintext: bool = False) -> str:
    RUN.mkdir(parents=True, exist_ok=True)
    figures = Figures(QUICK if quick else FULL)
    prefix = f"flt{uuid.uuid4().hex[:6]}."
    stores = [f"fleet-{n:04d}" for n in range(figures.size.stores)]
    with kafka_cluster(plaintext) as kafka:
        try:
            measure(kafka, prefix, stores, figures)
        finally:
            forget(kafka, prefix, stores)
    return f"{report(figures, quick)}\n\nKafka: {security_mode(plaintext)}."


def measure(kafka: KafkaCluster, prefix: str, stores: list[str], figures: Figures) -> None:
    database_url = sqlite_url()
    skus = [f"FLT-{n:03d}" for n in range(PRODUCTS)]
    seed_central(database_url, catalog_rows(skus, 10), [], kafka, prefix)
    with (
        central_process(database_url, kafka, PORT, prefix) as central,
        httpx.Client(base_url=central, timeout=60) as client,
    ):
        headers = admin_headers(client, database_url)
        wait_published(central)
        started = time.perf_counter()
        keys = make_stores(database_url, stores)
        commit_offsets(kafka, prefix, stores)
        figures.made_s = time.perf_counter() - started
        figures.memory_idle = process_memory_kib(PORT)
        with Heartbeats(central, keys) as heartbeats:
            figures.states = wait_all_ok(client, headers, len(stores))
            measure_routes(client, headers, figures)
            measure_fresh(client, headers, figures)
            figures.invctl = measure_invctl(central, headers, figures.size.invctl_runs)
            figures.memory_after = process_memory_kib(PORT)
        figures.heartbeats = heartbeats.sample


def report(f: Figures, quick: bool) -> str:
    facts = ", ".join(f"{k} {v}" for k, v in machine_facts().items())
    beats = f.heartbeats
    lines = [
        f"Machine: {facts}.{' Quick mode.' if quick else ''} One central (SQLite, one "
        f"process) and {f.size.stores:,} stores made through its service layer (with their "
        f"committed group offsets in {f.made_s:.0f} s), each heartbeating every "
        f"{EVERY_S:.0f} s with its own key throughout: {beats.rate:.0f} heartbeats/s "
        f"(p50 {ms(beats.pct(50))} ms, p99 {ms(beats.pct(99))} ms, {beats.errors} failed). "
        f"Every store `ok` before measuring ({_states(f.states)}). {f.size.requests} "
        "requests of each route, one at a time, alternating (central keeps one lag reading "
        f"{LAG_CACHE_S:g} s, so most of these answers reuse it); then {f.size.fresh_requests} "
        f"of the fleet {LAG_CACHE_S:g} s apart, each reading Kafka ({f.fresh_read} did). The "
        f"fleet answer is {f.fleet_bytes / 1024:.0f} KiB, Kafka `{f.kafka}`, a lag for "
        f"{f.lags_known:,} of {f.size.stores:,} stores.",
        "",
        "| route | p50 ms | p99 ms | max ms | p50 / healthz p50 | p99 / healthz p99 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        _route_row("`GET /healthz` (baseline)", f.healthz, f.healthz),
        _route_row(f"`GET /api/v1/sync/stores` ({f.size.stores:,} stores)", f.fleet, f.healthz),
        _route_row("the same, each reading Kafka", f.fresh, f.healthz),
        "",
        *_memory_lines(f),
        "",
        *_invctl_lines(f),
        "",
        _target_line(f),
    ]
    return "\n".join(lines)


def _target_line(f: Figures) -> str:
    """Judged on the worse p99 of the two series: a reused reading and a fresh one."""
    worst = max(f.fleet.pct(99), f.fresh.pct(99))
    met = "met" if worst < TARGET_P99_S else "MISSED"
    return (
        f"**Target p99 under 1 s: {met}** (`GET /api/v1/sync/stores` at {f.size.stores:,} "
        f"stores, the worse p99 of the two series: {ms(worst)} ms)."
    )


def _states(states: Counter[str]) -> str:
    return ", ".join(f"{count} {state}" for state, count in states.most_common())


def _route_row(name: str, sample: Sample, baseline: Sample) -> str:
    return (
        f"| {name} | {ms(sample.pct(50))} | {ms(sample.pct(99))} | {ms(max(sample.latencies))} "
        f"| {sample.pct(50) / baseline.pct(50):.1f}x | {sample.pct(99) / baseline.pct(99):.1f}x |"
    )


def _memory_lines(f: Figures) -> list[str]:
    def mib(kib: int) -> str:
        return f"{kib / 1024:.0f}"

    return [
        "| central memory (/proc) | MiB |",
        "| --- | ---: |",
        f"| RSS idle, {f.size.stores:,} stores made, before heartbeats | "
        f"{mib(f.memory_idle['VmRSS'])} |",
        f"| RSS after the measurement | {mib(f.memory_after['VmRSS'])} |",
        f"| peak RSS (VmHWM) | {mib(f.memory_after['VmHWM'])} |",
    ]


def _invctl_lines(f: Figures) -> list[str]:
    lines = [
        f"| command, {f.size.stores:,} stores (whole process) | median ms | max ms |",
        "| --- | ---: | ---: |",
    ]
    for name, walls in f.invctl.items():
        lines.append(f"| `{name}` | {ms(statistics.median(walls))} | {ms(max(walls))} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = module_args("bench.fleet", __doc__, argv)
    print(run(quick=args.quick, plaintext=args.plaintext))


if __name__ == "__main__":
    main()
