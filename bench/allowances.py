"""Orders through HTTP with per-store allowances on, next to off, in one run: the same
central process and database (SQLite, then MariaDB), the same 8 clients and orders, rounds
interleaved so that drift favours no side.

- *off*: no live allowance exists; every order takes what any store may take.
- *on*: before the round, every unit any store may take of each SKU is set aside as live
  allowances, split evenly between the 4 stores (`POST /allowances`), so every line of every
  order is short of available stock and takes its units from its store's own grants (the
  `allowance.used` ledger movement and the grant's update in the order's transaction). The
  order answers' `allowances` field must account for every unit ordered, or the run fails.
  After the round the grants are returned.
- *rule*: as *on*, with a top-up rule on every SKU, and each store reading
  `GET /allowances/mine` back to back during the round (as its agent does while its online
  sales are of SKUs it holds grants of). Before the round the stores' reads top them up from
  the RULE_LEFT units left available until the rules grant no more; the last units are set
  aside for one store.
- */healthz*: a trivial endpoint of the same process, the ceiling of its HTTP stack.

    python -m bench.allowances [--quick] [--plaintext]
"""

from __future__ import annotations

import itertools
import random
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, cast

import httpx

from bench.common import (
    RUN,
    Sample,
    error_kind,
    errors_told,
    machine_facts,
    module_args,
    ms,
    run_clients,
    security_mode,
    start_kafka,
    start_mariadb,
)
from bench.orders import SKUS, STORES, fresh_database, random_lines, seed, trivial_endpoint
from bench.stack import central_process
from bench.sync_latency import admin_headers
from harness.kafka_security import KafkaCluster

CLIENTS = 8
OFF, ON, RULE, HEALTHZ = "off", "on", "rule", "/healthz"
KINDS = (OFF, ON, RULE, HEALTHZ)
TTL_S = 86_400  # far beyond the run: no grant expires or settles during it
RULE_LEFT = 10  # units of each SKU left for the rules to top the stores up with
RULE_BODY = {"units": 1_000_000_000, "threshold": 1_000_000_000, "ttl_s": TTL_S}  # always due
SETUP_THREADS = 4
MAX_PASSES = 20  # of the stores' reads topping them up before a *rule* round
API = "/api/v1"


@dataclass
class Drawn:
    """What one client's orders took from their store's grants (the answers' `allowances`)."""

    orders: int = 0
    drew: int = 0  # orders whose answer named at least one grant
    units: int = 0  # units ordered
    units_drawn: int = 0  # units the answers say came from grants

    def add(self, other: Drawn) -> None:
        self.orders += other.orders
        self.drew += other.drew
        self.units += other.units
        self.units_drawn += other.units_drawn


@dataclass
class Reads:
    """The stores' reads of `GET /allowances/mine` during a *rule* round."""

    done: int = 0
    elapsed: float = 0.0
    error_kinds: Counter[str] = field(default_factory=Counter)


@dataclass
class Round:
    kind: str
    sample: Sample
    drawn: Drawn
    reads: Reads | None = None
    top_ups: int = 0  # grants the rules made as the stores read their allowances before it
    top_ups_during: int = 0  # and during it


# --- the load ---------------------------------------------------------------------------------


def orders_counting_draws(
    keys: dict[str, str], drawn: list[Drawn], clients: list[httpx.Client]
) -> Callable[[int], Callable[[], None]]:
    """bench.orders' HTTP orders (1-3 lines of 1 unit, each client for one store), each
    answer's `allowances` counted into a Drawn of the client's own. The clients are made
    beforehand: run_clients' window starts before its workers are made, and making one
    (its TLS context) while the stores' reads keep central and this process busy could
    take all of a short round."""

    def make(index: int) -> Callable[[], None]:
        client = clients[index]
        rng = random.Random(index)
        key = keys[STORES[index % len(STORES)]]
        own = Drawn()
        drawn.append(own)

        def order() -> None:
            lines = random_lines(rng)
            response = client.post(
                f"{API}/orders",
                json={"lines": lines},
                headers={"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex},
            )
            if response.status_code != 201:
                raise RuntimeError(f"{response.status_code} {response.text}")
            draws = response.json()["allowances"]
            own.orders += 1
            own.units += sum(cast(int, line["quantity"]) for line in lines)
            if draws:
                own.drew += 1
                own.units_drawn += sum(int(draw["units"]) for draw in draws)

        return order

    return make


@contextmanager
def keepers_reading(url: str, keys: dict[str, str]) -> Iterator[Reads]:
    """One thread per store reading its allowances back to back until the block ends."""
    reads, lock, stop = Reads(), threading.Lock(), threading.Event()

    def loop(key: str) -> None:
        done, kinds = 0, Counter[str]()
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                try:
                    client.get(
                        f"{API}/allowances/mine", headers={"X-API-Key": key}
                    ).raise_for_status()
                    done += 1
                except Exception as exc:  # counted, as run_clients counts the orders' errors
                    kinds[error_kind(exc)] += 1
        with lock:
            reads.done += done
            reads.error_kinds.update(kinds)

    threads = [threading.Thread(target=loop, args=(keys[s],)) for s in STORES]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        yield reads
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        reads.elapsed = time.perf_counter() - began


# --- setting allowances up and taking them back ----------------------------------------------


class Admin:
    """Central's admin API, from a few threads at once (one client each)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self._url, self._headers = url, headers
        self._local = threading.local()
        self._clients: list[httpx.Client] = []

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(base_url=self._url, timeout=60)
            self._clients.append(client)
        response = client.request(method, API + path, headers=self._headers, **kwargs)
        if response.is_error:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response

    def each(self, work: Callable[[str], int], items: list[str]) -> int:
        with ThreadPoolExecutor(SETUP_THREADS) as pool:
            return sum(pool.map(work, items))

    def close(self) -> None:
        for client in self._clients:
            client.close()


def set_aside(admin: Admin, left: int, stores: list[str] = STORES) -> int:
    """Grant all but `left` available units of each SKU, split evenly between `stores` (the
    last one gets the remainder); how many grants were made."""

    def one_sku(sku: str) -> int:
        available = int(admin.call("GET", f"/stock/{sku}").json()["quantity"])
        units = available - left
        each = units // len(stores)
        made = 0
        for number, store in enumerate(stores):
            share = each + (units - each * len(stores) if number == len(stores) - 1 else 0)
            if share > 0:
                body = {"store": store, "sku": sku, "units": share, "ttl_s": TTL_S}
                admin.call("POST", "/allowances", json=body)
                made += 1
        return made

    return admin.each(one_sku, SKUS)


def live_grants(admin: Admin) -> list[str]:
    ids: list[str] = []
    before: int | None = 0
    while before is not None:
        params = {"state": "live", "limit": 200, "before": before}
        page = admin.call("GET", "/allowances", params=params).json()
        ids += [item["id"] for item in page["items"]]
        before = page["next_before"]
    return ids


def take_back(admin: Admin) -> int:
    """Every live grant returned (its unused units available again); how many."""
    return admin.each(
        lambda grant: bool(admin.call("POST", f"/allowances/{grant}/return")), live_grants(admin)
    )


def put_rules(admin: Admin) -> int:
    return admin.each(
        lambda sku: bool(admin.call("PUT", f"/allowance-rules/sku/{sku}", json=RULE_BODY)), SKUS
    )


def delete_rules(admin: Admin) -> int:
    return admin.each(lambda sku: bool(admin.call("DELETE", f"/allowance-rules/sku/{sku}")), SKUS)


# --- rounds ----------------------------------------------------------------------------------


def plan(cycles: int) -> list[str]:
    """Every kind once a cycle, every other cycle in reverse (off on rule /healthz, /healthz
    rule on off, ...): each kind runs as often early as late."""
    return [
        kind
        for cycle in range(cycles)
        for kind in (KINDS if cycle % 2 == 0 else tuple(reversed(KINDS)))
    ]


def one_round(kind: str, url: str, keys: dict[str, str], admin: Admin, seconds: float) -> Round:
    if kind == HEALTHZ:
        return Round(kind, run_clients(CLIENTS, seconds, trivial_endpoint(url)), Drawn())
    granted = topped_up = 0
    if kind == ON:
        granted = set_aside(admin, left=0)
    elif kind == RULE:
        granted = set_aside(admin, left=RULE_LEFT)
        put_rules(admin)
        topped_up = top_up_fully(url, keys, admin)
        # the last units, which the rules may not grant: to one store, in one grant a SKU
        granted += set_aside(admin, left=0, stores=STORES[-1:])
    drawn: list[Drawn] = []
    clients = [httpx.Client(base_url=url, timeout=30) for _ in range(CLIENTS)]
    reads = None
    try:
        with keepers_reading(url, keys) if kind == RULE else nullcontext() as reads:
            sample = run_clients(CLIENTS, seconds, orders_counting_draws(keys, drawn, clients))
    finally:
        for client in clients:
            client.close()
    total = Drawn()
    for own in drawn:
        total.add(own)
    if kind == RULE:
        delete_rules(admin)
    returned = take_back(admin)
    return Round(kind, sample, total, reads, topped_up, returned - granted - topped_up)


def top_up_fully(url: str, keys: dict[str, str], admin: Admin) -> int:
    """Each store reads its allowances in turn until a pass over them all makes no new grant
    (the rules' top-ups); how many grants the reads made."""
    start = now = len(live_grants(admin))
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(MAX_PASSES):
            for store in STORES:
                headers = {"X-API-Key": keys[store]}
                client.get(f"{API}/allowances/mine", headers=headers).raise_for_status()
            before, now = now, len(live_grants(admin))
            if now == before:
                return now - start
    raise RuntimeError(f"the rules still made grants after {MAX_PASSES} passes")


def checked(r: Round) -> Round:
    """A round whose orders did not take the path it measures is no measurement."""
    d = r.drawn
    if not r.sample.latencies:
        raise RuntimeError(f"{r.kind}: nothing answered ({errors_told(r.sample)})")
    if r.kind == OFF and d.drew:
        raise RuntimeError(f"off: {d.drew} of {d.orders} orders drew on a grant")
    if r.kind in (ON, RULE) and d.units_drawn != d.units:
        raise RuntimeError(
            f"{r.kind}: {d.units_drawn} of {d.units} units ordered came from grants "
            "(all were set aside)"
        )
    return r


def measure(
    backend: str,
    database_url: str,
    kafka: KafkaCluster,
    port: int,
    cycles: int,
    seconds: float,
    warm_up: tuple[str, ...] = (OFF, ON, RULE),
) -> list[Round]:
    keys = seed(database_url)
    prefix = f"allow{uuid.uuid4().hex[:6]}."  # topics of its own, as bench.orders
    rounds = []
    with central_process(database_url, kafka, port, prefix) as url:
        with httpx.Client(base_url=url) as client:
            admin = Admin(url, admin_headers(client, database_url))
        try:
            for kind in warm_up:  # connections, caches, each path once
                checked(one_round(kind, url, keys, admin, 1.0))
            for kind in plan(cycles):
                started = time.perf_counter()
                rounds.append(checked(one_round(kind, url, keys, admin, seconds)))
                took = time.perf_counter() - started
                print(f"{backend:7} {_line(rounds[-1])} ({took:.1f} s)", file=sys.stderr)
        finally:
            admin.close()
    return rounds


def _line(r: Round) -> str:
    s, d = r.sample, r.drawn
    text = f"{r.kind:8} {s.rate:.0f}/s p50={ms(s.pct(50))}ms p99={ms(s.pct(99))}ms"
    if r.kind != HEALTHZ:
        text += f" drew={d.drew}/{d.orders} units={d.units_drawn}/{d.units}"
    if r.reads is not None:
        text += f" reads={r.reads.done} top-ups before={r.top_ups} during={r.top_ups_during}"
    if s.errors:
        text += f" errors={s.errors} ({errors_told(s)})"
    return text


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """One kind's rounds: median rate, pooled latencies, errors, what was drawn."""

    rates: list[float]
    p50: float
    p99: float
    errors: int
    error_text: str
    drawn: Drawn

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def figures(rounds: list[Round], kind: str) -> Figures:
    mine = [r for r in rounds if r.kind == kind]
    pooled = Sample()
    drawn = Drawn()
    for r in mine:
        pooled.latencies += r.sample.latencies
        pooled.errors += r.sample.errors
        pooled.error_kinds.update(r.sample.error_kinds)
        drawn.add(r.drawn)
    return Figures(
        [r.sample.rate for r in mine],
        pooled.pct(50),
        pooled.pct(99),
        pooled.errors,
        errors_told(pooled),
        drawn,
    )


def pair_ratios(rounds: list[Round], kind: str) -> list[float]:
    """`kind` ÷ off, round by round (the n-th of each)."""
    offs = [r.sample.rate for r in rounds if r.kind == OFF]
    mine = [r.sample.rate for r in rounds if r.kind == kind]
    return [m / o for m, o in zip(mine, offs, strict=True) if o]


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def rule_note(backend: str, rounds: list[Round]) -> str:
    reads = [r.reads for r in rounds if r.reads is not None]
    done, spent = sum(r.done for r in reads), sum(r.elapsed for r in reads)
    failed = sum((r.error_kinds for r in reads), Counter[str]())
    before, during = sum(r.top_ups for r in rounds), sum(r.top_ups_during for r in rounds)
    told = "; ".join(f"{count} x {kind}" for kind, count in failed.most_common(3))
    return (
        f"{backend}, *rule* rounds: {before} top-up grants made by the stores' reads before "
        f"them ({before / len(rounds) if rounds else 0:.0f} a round), {during} during them; "
        f"{done / spent if spent else 0:.0f} reads of `/allowances/mine`/s during them, "
        f"{failed.total()} failed{f' ({told})' if told else ''}."
    )


def table(results: list[tuple[str, list[Round]]]) -> str:
    lines = [
        "| backend | allowances | rounds | orders/s | min-max | p50 ms | p99 ms | errors "
        "| orders that drew on grants | units from grants | ÷ off | ÷ /healthz |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for backend, rounds in results:
        by_kind = {kind: figures(rounds, kind) for kind in KINDS}
        off, health = by_kind[OFF].rate, by_kind[HEALTHZ].rate
        for kind in KINDS:
            f, d = by_kind[kind], by_kind[kind].drawn
            is_orders = kind != HEALTHZ
            lines.append(
                f"| {backend} | {kind} | {len(f.rates)} | {f.rate:.0f} "
                f"| {min(f.rates):.0f}-{max(f.rates):.0f} | {ms(f.p50)} | {ms(f.p99)} "
                f"| {f.errors} | {_share(d.drew, d.orders) if is_orders else '-'} "
                f"| {_share(d.units_drawn, d.units) if is_orders else '-'} "
                f"| {f.rate / off:.2f} | {f.rate / health:.2f} |"
            )
            if f.errors:
                notes.append(f"{backend}, {kind}: {f.errors} errors: {f.error_text}.")
        for kind in (ON, RULE):
            spread = pair_ratios(rounds, kind)
            notes.append(
                f"**{backend}: {kind} ÷ off = {by_kind[kind].rate / off:.2f}** (medians; "
                f"round by round {min(spread):.2f}-{max(spread):.2f})."
            )
        notes.append(rule_note(backend, [r for r in rounds if r.kind == RULE]))
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes)


def run(quick: bool = False, plaintext: bool = False) -> str:
    RUN.mkdir(parents=True, exist_ok=True)
    seconds = 1.0 if quick else 5.0
    cycles = 1 if quick else 4
    warm_up = (OFF,) if quick else (OFF, ON, RULE)
    kafka, stop_kafka = start_kafka(plaintext=plaintext)
    mariadb, stop_mariadb = start_mariadb()
    ports = itertools.count(18940)
    results = []
    try:
        for backend in ("sqlite", "mariadb"):
            url = fresh_database(backend, mariadb)
            port = next(ports)
            results.append((backend, measure(backend, url, kafka, port, cycles, seconds, warm_up)))
    finally:
        stop_mariadb()
        stop_kafka()
    facts = ", ".join(f"{k} {v}" for k, v in machine_facts().items())
    return (
        f"Machine: {facts}. {cycles} round{'s' if cycles > 1 else ''} of {seconds:.0f} s per kind"
        f"{' (quick mode)' if quick else ''}, interleaved (off, on, rule, /healthz, then the "
        "reverse, ...) on one central process and database per backend, after 1 s of "
        f"{', '.join(warm_up)} to warm up.\n\n"
        f"{CLIENTS} clients, each a thread with its own keep-alive connection placing 1-3 line "
        f"orders for one of {len(STORES)} stores (its API key) back to back, on {len(SKUS)} "
        "SKUs, as in *Orders through HTTP*. *off*: no live allowance. *on*: before each round "
        "every unit any store may take is set aside as live allowances, split evenly between "
        "the stores, so every line takes its units from its store's grants (the `allowance.used` "
        "movement and the grant's update in the order's transaction; the answers' `allowances` "
        "must account for every unit ordered, or the run fails); returned after the round. "
        f"*rule*: a top-up rule on every SKU (`threshold` = `units`, always due); before each "
        f"round all but {RULE_LEFT} units of each SKU are set aside as in *on*, the stores read "
        "`GET /allowances/mine` in turn until the rules grant no more (the scarcity rule), and "
        "the last units are set aside for one store; during the round each store reads its "
        "allowances back to back (each read evaluates the rules; with nothing available they "
        "grant nothing), and every unit ordered again comes from grants: the worst case; an "
        "agent reads its grants after an online sale of a SKU it holds grants of, but at "
        "most once every 5 s (storeagent/sales/allowance_keeper.py), so a store adds at most "
        "one read per 5 s to its orders. *orders/s*: the "
        "median of the rounds; p50/p99 over all of a kind's orders; *÷ off* and *÷ /healthz*: "
        "medians over medians of the same run. The load generator shares the cores with the "
        "server.\n\n" + table(results) + f"\n\nKafka: {security_mode(plaintext)}."
    )


def main(argv: list[str] | None = None) -> None:
    args = module_args("bench.allowances", __doc__, argv)
    print(run(quick=args.quick, plaintext=args.plaintext))


if __name__ == "__main__":
    main()
