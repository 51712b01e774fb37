"""Kafka chaos tests' shared parts: a cluster of the test's own, a shop seeded at central, a
steady store workload, and the checks that must hold after any fault (no oversell, no lost
or duplicated order, every replica equal to central, no lost event)."""

from __future__ import annotations

import itertools
import json
import random
import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from tests.support.shop import Shop

API = "/api/v1"
# A check that meets a restarting process or a stopped broker has not failed yet.
TRANSIENT = (httpx.HTTPError, OSError)
BACKLOG = re.compile(r"^invctl_outbox_backlog (\S+)$", re.MULTILINE)


# --- a Kafka cluster of the test's own --------------------------------------------------------


@dataclass
class Cluster:
    """scripts/kafka on a directory and base port, secure by default (TLS, SCRAM logins,
    ACLs); stopping it disturbs no other test. `clients` is how its clients reach it."""

    script: Callable[..., subprocess.CompletedProcess[str]]
    directory: Path
    port: int
    nodes: int = 1
    bootstrap: str = ""

    def start(self) -> str:
        args = ["start", "--dir", str(self.directory), "--port", str(self.port)]
        done = self._run(*args, "--nodes", str(self.nodes))
        self.bootstrap = done.stdout.strip().splitlines()[-1]
        return self.bootstrap

    def stop(self) -> None:
        self._run("stop", "--dir", str(self.directory))

    def kill(self, node: int) -> None:
        self._run("kill", "--dir", str(self.directory), "--node", str(node))

    def broker(self, node: int) -> str:
        return f"127.0.0.1:{self.port + node - 1}"

    @property
    def clients(self) -> KafkaCluster:
        return KafkaCluster.from_client_env(
            self.directory / "client.env", self.directory.parent / "kafka-clients"
        )

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.script(*args)
        failed = f"scripts/kafka {args[0]} exited {done.returncode}:\n{done.stderr[-3000:]}"
        assert done.returncode == 0, failed
        return done


@contextmanager
def own_cluster(
    script: Callable[..., subprocess.CompletedProcess[str]], directory: Path, port: int, nodes: int
) -> Iterator[Cluster]:
    cluster = Cluster(script, directory, port, nodes)
    try:
        cluster.start()
        yield cluster
    finally:
        script("stop", "--dir", str(directory))


# --- the shop at central ---------------------------------------------------------------------


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, f"{response.request.url}: {response.status_code} {response.text}"
    return response.json()


def outbox_backlog(central: str) -> int | None:
    """`invctl_outbox_backlog` from central's /metrics (None if the scrape has no value)."""
    found = BACKLOG.search(httpx.get(central + "/metrics", timeout=5).text)
    return None if found is None else int(float(found.group(1)))


def central_stock(shop: Shop) -> dict[str, tuple[int, int]]:
    """SKU -> (quantity, stock_version) at central."""
    with httpx.Client(base_url=shop.central + API, headers=shop.admin, timeout=10) as http:
        levels = [_ok(http.get(f"/stock/{sku}")) for sku in shop.skus]
    return {s["sku"]: (s["quantity"], s["stock_version"]) for s in levels}


def replica_stock(agent: str) -> dict[str, tuple[int, int]]:
    items = _ok(httpx.get(agent + "/products", timeout=10))["items"]
    return {i["sku"]: (i["quantity"], i["stock_version"]) for i in items}


# --- the workload ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    at: float
    kind: str  # "order" | "adjust" | "cancel"
    status: int  # 0: no HTTP answer
    code: str | None


@dataclass(frozen=True)
class Sale:
    store: str
    key: str
    order_id: str
    lines: tuple[tuple[str, int], ...]


@dataclass
class Workload:
    """Buyers at each agent (POST /orders) and one admin at central adjusting stock and now
    and then cancelling a sale; every answer is recorded with its time."""

    shop: Shop
    agents: dict[str, str]  # store id -> agent URL
    agent_headers: dict[str, str]  # the agents' terminal token (Stack.agent_headers())
    skus: list[str] = field(default_factory=list)  # the SKUs it touches; default: all
    pause: float = 0.12  # between two requests of one thread
    seed: int = 7
    outcomes: list[Outcome] = field(default_factory=list)
    sales: list[Sale] = field(default_factory=list)
    adjusted: Counter[str] = field(default_factory=Counter)
    cancelled: set[str] = field(default_factory=set)
    unresolved: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.skus = self.skus or self.shop.skus
        for n, (store, url) in enumerate(sorted(self.agents.items())):
            rng = random.Random(self.seed + n)
            self._spawn(f"buyer-{store}", lambda s=store, u=url, r=rng: self._buy(s, u, r))
        rng = random.Random(self.seed - 1)
        self._spawn("admin", lambda: self._administer(rng))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        stuck = [t.name for t in self._threads if t.is_alive()]
        assert not stuck, f"workload threads did not stop: {stuck}"

    def count(self, since: float = 0.0, until: float = float("inf")) -> Counter[tuple[str, int]]:
        """(kind, status) -> answers received in [since, until) (time.monotonic())."""
        with self._lock:
            return Counter((o.kind, o.status) for o in self.outcomes if since <= o.at < until)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _record(self, kind: str, response: httpx.Response | None) -> None:
        status = 0 if response is None else response.status_code
        code = None if response is None or response.is_success else _error_code(response)
        with self._lock:
            self.outcomes.append(Outcome(time.monotonic(), kind, status, code))

    def _buy(self, store: str, url: str, rng: random.Random) -> None:
        with httpx.Client(base_url=url, headers=self.agent_headers, timeout=15) as http:
            while not self._stop.wait(self.pause):
                skus = rng.sample(self.skus, rng.choice((1, 1, 2)))
                lines = tuple((sku, rng.randint(1, 2)) for sku in skus)
                self._sell(http, store, lines)

    def _sell(self, http: httpx.Client, store: str, lines: tuple[tuple[str, int], ...]) -> None:
        """One sale; an unanswered or unavailable attempt is retried with the same key."""
        key = uuid.uuid4().hex
        body = {"lines": [{"sku": sku, "quantity": qty} for sku, qty in lines]}
        for _ in range(20):
            try:
                response = http.post("/orders", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                response = None
            self._record("order", response)
            if response is not None and response.status_code == 201:
                order = response.json()["order"]
                with self._lock:
                    self.sales.append(Sale(store, key, order["id"], lines))
                return
            if response is not None and response.status_code == 202:
                break  # queued offline: central was never down here, so this is a failure
            if response is not None and not _retry_sale(response):
                return  # refused (409 stock.insufficient and the like): nothing was sold
            time.sleep(0.5)
        with self._lock:
            self.unresolved.append(f"sale {key} at {store}")

    def _administer(self, rng: random.Random) -> None:
        with httpx.Client(
            base_url=self.shop.central + API, headers=self.shop.admin, timeout=15
        ) as http:
            for turn in itertools.count(1):
                if self._stop.wait(self.pause * 2):
                    return
                if turn % 6 == 0:
                    self._cancel_one(http, rng)
                else:
                    self._adjust(http, rng)

    def adjust(self, sku: str, delta: int) -> dict[str, Any] | None:
        """Adjust at central as the admin, counted like the workload's own; the new stock."""
        with httpx.Client(
            base_url=self.shop.central + API, headers=self.shop.admin, timeout=15
        ) as http:
            return self._adjust_one(http, sku, delta)

    def _adjust(self, http: httpx.Client, rng: random.Random) -> None:
        self._adjust_one(http, rng.choice(self.skus), rng.choice((6, 4, 3, -2)))

    def _adjust_one(self, http: httpx.Client, sku: str, delta: int) -> dict[str, Any] | None:
        try:
            response = http.post(f"/stock/{sku}/adjustments", json={"delta": delta})
        except httpx.HTTPError:
            response = None
        self._record("adjust", response)
        if response is not None and response.status_code == 200:
            with self._lock:
                self.adjusted[sku] += delta
            return dict(response.json())
        if response is None or response.status_code != 409:
            with self._lock:
                self.unresolved.append(f"adjust {sku} {delta:+d}")
        return None

    def _cancel_one(self, http: httpx.Client, rng: random.Random) -> None:
        with self._lock:
            candidates = [s.order_id for s in self.sales if s.order_id not in self.cancelled]
        if not candidates:
            return
        order_id = rng.choice(candidates)
        try:
            response = http.post(f"/orders/{order_id}/cancel")
        except httpx.HTTPError:
            response = None
        self._record("cancel", response)
        if response is not None and response.status_code == 200:
            with self._lock:
                self.cancelled.add(order_id)
        else:
            with self._lock:
                self.unresolved.append(f"cancel {order_id}")


def _retry_sale(response: httpx.Response) -> bool:
    """Central unavailable, or the same key still being resolved: try the key again."""
    return response.status_code == 503 or _error_code(response) == "order.in_progress"


def _error_code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


# --- the checks ------------------------------------------------------------------------------


def central_orders(shop: Shop) -> dict[str, dict[str, Any]]:
    """Every order at central, by id, for every store of the shop."""
    found: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=shop.central + API, headers=shop.admin, timeout=15) as http:
        for store in shop.keys:
            before = 0
            while True:
                page = _ok(
                    http.get("/orders", params={"store": store, "limit": 200, "before": before})
                )
                found.update((o["id"], o) for o in page["items"])
                if page["next_before"] is None:
                    break
                before = page["next_before"]
    return found


def assert_orders_exactly_once(shop: Shop, work: Workload) -> dict[str, dict[str, Any]]:
    """Every confirmed sale is one order at central under its key, and central has no other."""
    assert not work.unresolved, f"requests left without a definite answer: {work.unresolved}"
    orders = central_orders(shop)
    with httpx.Client(base_url=shop.central + API, timeout=15) as http:
        for sale in work.sales:
            found = _ok(
                http.get(
                    "/orders",
                    params={"idempotency_key": sale.key},
                    headers=shop.store_headers(sale.store),
                )
            )["items"]
            assert [o["id"] for o in found] == [sale.order_id], (
                f"sale {sale.key} at {sale.store}: central holds {found}"
            )
            assert sorted((ln["sku"], ln["quantity"]) for ln in found[0]["lines"]) == sorted(
                sale.lines
            ), f"sale {sale.key}: lines differ at central"
    sold_ids = [s.order_id for s in work.sales]
    assert len(sold_ids) == len(set(sold_ids)), "two confirmed sales share one central order"
    assert set(orders) == set(sold_ids), (
        f"central orders nobody was told about: {sorted(set(orders) - set(sold_ids))}; "
        f"confirmed sales missing at central: {sorted(set(sold_ids) - set(orders))}"
    )
    cancelled = {i for i, o in orders.items() if o["status"] == "cancelled"}
    assert cancelled == work.cancelled, "cancelled orders at central differ from the cancels made"
    return orders


def assert_no_oversell(shop: Shop, work: Workload, orders: dict[str, dict[str, Any]]) -> None:
    """Central's stock = initial - confirmed lines + adjustments, and the ledger never < 0."""
    sold: Counter[str] = Counter()
    for order in orders.values():
        if order["status"] == "confirmed":
            for line in order["lines"]:
                sold[line["sku"]] += line["quantity"]
    stock = central_stock(shop)
    for sku in shop.skus:
        expected = shop.initial[sku] - sold[sku] + work.adjusted[sku]
        assert stock[sku][0] == expected, (
            f"{sku}: central holds {stock[sku][0]}, initial {shop.initial[sku]} - sold "
            f"{sold[sku]} + adjusted {work.adjusted[sku]} = {expected}"
        )
        negative = [m for m in ledger(shop, sku) if m["quantity"] < 0]
        assert not negative, f"{sku} went below zero: {negative[:3]}"


def ledger(shop: Shop, sku: str) -> list[dict[str, Any]]:
    """Every stock movement of `sku`, oldest first."""
    rows: list[dict[str, Any]] = []
    with httpx.Client(base_url=shop.central + API, headers=shop.admin, timeout=15) as http:
        before = 0
        while True:
            params = {"limit": 1000, "before": before} if before else {"limit": 1000}
            page = _ok(http.get(f"/stock/{sku}/movements", params=params))["items"]
            rows += page
            if len(page) < 1000:
                break
            before = page[-1]["id"]
    return rows[::-1]


def wait_converged(shop: Shop, agents: dict[str, str], timeout: float) -> float:
    """Seconds until every replica holds central's (quantity, stock_version) for every SKU."""
    began = time.monotonic()
    want = central_stock(shop)
    seen: dict[str, dict[str, tuple[int, int]]] = {}

    def converged() -> bool:
        for store, url in agents.items():
            seen[store] = {sku: v for sku, v in replica_stock(url).items() if sku in want}
        return all(levels == want for levels in seen.values())

    try:
        eventually(
            converged, timeout, "replicas converge to central", interval=0.2, ignoring=TRANSIENT
        )
    except AssertionError:
        raise AssertionError(f"replicas differ from central {want}: {seen}") from None
    return time.monotonic() - began


def stock_events(kafka: KafkaCluster, topic: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every `stock.changed` event's data on `topic`, read from the beginning to its end."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        enable_auto_commit=False,
        group_id=None,
        **kafka.admin_config(),
    )
    try:
        ids = eventually(
            lambda: consumer.partitions_for_topic(topic),
            timeout,
            f"{topic} exists",
            interval=0.2,
            ignoring=TRANSIENT,
        )
        partitions = [TopicPartition(topic, p) for p in sorted(ids)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []

        def read_to_end() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            return all(consumer.position(tp) >= ends[tp] for tp in partitions)

        what = f"{topic} read to its end offsets {ends}"
        eventually(read_to_end, timeout, what, interval=0, ignoring=TRANSIENT)
    finally:
        consumer.close()
    return [json.loads(r.value)["data"] for r in records]


@dataclass(frozen=True)
class StreamReport:
    events: int
    duplicates: int


def assert_no_event_lost(shop: Shop, kafka: KafkaCluster, topic: str) -> StreamReport:
    """Each SKU's stream holds every stock_version 1..N, each with the ledger's quantity."""
    events = stock_events(kafka, topic)
    by_version: dict[tuple[str, int], set[int]] = {}
    for data in events:
        by_version.setdefault((data["sku"], data["stock_version"]), set()).add(data["quantity"])
    for sku in shop.skus:
        rows = ledger(shop, sku)
        want = {m["stock_version"]: m["quantity"] for m in rows}
        assert sorted(want) == list(range(1, len(rows) + 1)), f"{sku}: ledger versions have gaps"
        missing = [v for v in want if (sku, v) not in by_version]
        assert not missing, f"{sku}: stock_versions missing from {topic}: {missing}"
        wrong = {v: by_version[sku, v] for v, q in want.items() if by_version[sku, v] != {q}}
        assert not wrong, f"{sku}: event quantities differ from the ledger: {wrong}"
    return StreamReport(events=len(events), duplicates=len(events) - len(by_version))


# --- the agents while Kafka is away ----------------------------------------------------------


@dataclass
class AgentWatch:
    """What one agent answered while watched: stock read statuses, and when (seconds after
    the watch began) its /sync/status first said not ready, with the /readyz body then."""

    reads: Counter[int] = field(default_factory=Counter)
    not_ready_after: float | None = None
    readyz: dict[str, Any] = field(default_factory=dict)


def watch_agents(
    agents: dict[str, str], skus: list[str], at_least: float, at_most: float
) -> dict[str, AgentWatch]:
    """Read stock at every agent and ask for its sync status until time.monotonic() reaches
    `at_least`, and on until every agent said it is not ready or `at_most` is reached."""
    began = time.monotonic()
    watched = {store: AgentWatch() for store in agents}

    def watching() -> bool:
        now = time.monotonic()
        noticed = all(w.not_ready_after is not None for w in watched.values())
        return now < at_least or (now < at_most and not noticed)

    with httpx.Client(timeout=5) as http:
        while watching():
            for store, url in agents.items():
                seen = watched[store]
                for sku in skus:
                    seen.reads[http.get(f"{url}/stock/{sku}").status_code] += 1
                status = http.get(f"{url}/sync/status").json()
                if seen.not_ready_after is None and status["ready"] is False:
                    seen.not_ready_after = time.monotonic() - began
                    ready = http.get(f"{url}/readyz")
                    seen.readyz = {"status": ready.status_code, **ready.json()}
            time.sleep(0.5)
    return watched


def agents_ready(agents: dict[str, str]) -> bool:
    return all(httpx.get(f"{url}/readyz", timeout=5).status_code == 200 for url in agents.values())


# --- a topic's layout on the cluster ---------------------------------------------------------


@dataclass(frozen=True)
class PartitionLayout:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    end_offset: int


def topic_layout(kafka: KafkaCluster, topic: str) -> list[PartitionLayout]:
    """Leader, replicas, in-sync replicas and end offset of every partition of `topic`."""
    from kafka import KafkaAdminClient, OffsetSpec, TopicPartition

    admin = KafkaAdminClient(
        bootstrap_servers=kafka.bootstrap, request_timeout_ms=10_000, **kafka.admin_config()
    )
    try:
        (described,) = admin.describe_topics([topic])
        parts = described["partitions"]
        ends = admin.list_partition_offsets(
            {TopicPartition(topic, p["partition_index"]): OffsetSpec.LATEST for p in parts}
        )
    finally:
        admin.close()
    return [
        PartitionLayout(
            p["partition_index"],
            p["leader_id"],
            tuple(sorted(p["replica_nodes"])),
            tuple(sorted(p["isr_nodes"])),
            ends[TopicPartition(topic, p["partition_index"])].offset,
        )
        for p in sorted(parts, key=lambda p: p["partition_index"])
    ]


def topic_configs(kafka: KafkaCluster, topic: str) -> dict[str, str]:
    """The topic's own (non-default) configs."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(
        bootstrap_servers=kafka.bootstrap, request_timeout_ms=10_000, **kafka.admin_config()
    )
    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    return {key: entry["value"] for key, entry in found["topic"][topic].items()}


def key_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` (murmur2, as the Java client)."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
