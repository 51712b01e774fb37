"""Orders through HTTP on SQLite and MariaDB at 1, 8 and 32 clients, next to two ceilings
measured in the same run: the same reservation transaction called directly in a loop, and a
trivial endpoint (/healthz) of the same HTTP stack.

    python -m bench.orders [--quick] [--plaintext]
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.common import (
    RUN,
    Sample,
    errors_told,
    machine_facts,
    module_args,
    ms,
    run_clients,
    security_mode,
    start_kafka,
    start_mariadb,
    verdict,
)
from bench.cpu_budget import Spent, metered, order_parts
from bench.order_ceiling import raw_orders
from bench.stack import SECRET, catalog_rows, central_process, seed_central
from harness.kafka_security import KafkaCluster

SKUS = [f"BENCH-{i:03d}" for i in range(50)]
STORES = [f"bench-{i}" for i in range(4)]
ONE, TWO = "1 process", "--workers 2"
WORKERS_ARGS = ("--workers", "2")


def fresh_database(backend: str, mariadb_url: str) -> str:
    if backend == "sqlite":
        path = RUN / f"orders-{uuid.uuid4().hex[:8]}.db"
        return f"sqlite:///{path}"
    from urllib.parse import urlparse

    import pymysql

    parsed = urlparse(mariadb_url)
    name = "bench_" + uuid.uuid4().hex[:8]
    with pymysql.connect(
        host=parsed.hostname,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        autocommit=True,
    ) as conn:
        conn.cursor().execute(f"CREATE DATABASE `{name}`")
    return f"mysql://{parsed.username}:{parsed.password}@{parsed.hostname}:{parsed.port}/{name}"


def seed(database_url: str) -> dict[str, str]:
    return seed_central(database_url, catalog_rows(SKUS, 100_000_000), STORES)


def random_lines(rng: random.Random) -> list[dict[str, object]]:
    return [{"sku": sku, "quantity": 1} for sku in rng.sample(SKUS, rng.randint(1, 3))]


def http_orders(url: str, keys: dict[str, str]) -> Callable[[int], Callable[[], None]]:
    def make(index: int) -> Callable[[], None]:
        client = httpx.Client(base_url=url, timeout=30)
        rng = random.Random(index)
        key = keys[STORES[index % len(STORES)]]

        def order() -> None:
            response = client.post(
                "/api/v1/orders",
                json={"lines": random_lines(rng)},
                headers={"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex},
            )
            if response.status_code != 201:
                raise RuntimeError(response.text)

        return order

    return make


def trivial_endpoint(url: str) -> Callable[[int], Callable[[], None]]:
    def make(index: int) -> Callable[[], None]:
        client = httpx.Client(base_url=url, timeout=30)

        def health() -> None:
            client.get("/healthz").raise_for_status()

        return health

    return make


def two_lines(rng: random.Random) -> list[dict[str, object]]:
    return [{"sku": sku, "quantity": 1} for sku in rng.sample(SKUS, 2)]


def direct_transactions(
    database_url: str,
    lines: Callable[[random.Random], list[dict[str, object]]] = random_lines,
) -> tuple[Callable[[int], Callable[[], None]], Callable[[], None]]:
    from central.app import bootstrap
    from central.services import orders
    from central.services.principal import Principal, Role
    from central.settings import Settings

    central = bootstrap(Settings(database_url=database_url, jwt_secret=SECRET), with_relay=False)

    def make(index: int) -> Callable[[], None]:
        rng = random.Random(1000 + index)
        principal = Principal(STORES[index % len(STORES)], Role.STORE, STORES[index % len(STORES)])

        def order() -> None:
            orders.place_order(central.uow(), principal, uuid.uuid4().hex, lines(rng))

        return order

    return make, central.close


def measure(
    backend: str,
    database_url: str,
    kafka: KafkaCluster,
    levels: list[int],
    seconds: float,
    port: int,
) -> list[dict[str, object]]:
    """Each level on one `central serve` process, then 8 clients on `--workers 2` (same
    database, same topics: a restart), each next to its own /healthz rate."""
    keys = seed(database_url)
    rows = []
    direct_make, close_direct = direct_transactions(database_url)
    try:
        # topics of their own: a fresh database on another run's topics would be behind
        # them, and central refuses to start so (central.behind_kafka)
        prefix = f"orders{uuid.uuid4().hex[:6]}."
        direct = {}
        with central_process(database_url, kafka, port, prefix) as url:
            for clients in levels:
                http, spent = metered_orders(clients, seconds, url, keys, port)
                trivial = metered_trivial(clients, seconds, url, port)
                direct[clients] = run_clients(clients, seconds, direct_make)
                rows.append(_row(backend, ONE, clients, http, direct[clients], *trivial, spent))
                print(_line(rows[-1]), file=sys.stderr)
        with central_process(database_url, kafka, port, prefix, args=WORKERS_ARGS) as url:
            run_clients(8, max(1.0, seconds / 5), http_orders(url, keys))  # warm both workers
            http, spent = metered_orders(8, seconds, url, keys, port)
            trivial = metered_trivial(8, seconds, url, port)
            rows.append(_row(backend, TWO, 8, http, direct[8], *trivial, spent))
            print(_line(rows[-1]), file=sys.stderr)
    finally:
        close_direct()
    return rows


def metered_orders(
    clients: int, seconds: float, url: str, keys: dict[str, str], port: int
) -> tuple[Sample, Spent]:
    with metered(order_parts(port)) as spent:
        http = run_clients(clients, seconds, http_orders(url, keys))
    return http, spent


def metered_trivial(clients: int, seconds: float, url: str, port: int) -> tuple[Sample, Spent]:
    with metered(order_parts(port)) as spent:
        trivial = run_clients(clients, seconds, trivial_endpoint(url))
    return trivial, spent


def storage_ceiling(seconds: float) -> dict[str, float]:
    """2-line orders in one thread on a fresh SQLite database: central's use case called
    directly, then the same writes with plain sqlite3 (bench.order_ceiling), same file."""
    database_url = fresh_database("sqlite", "")
    seed(database_url)
    direct_make, close_direct = direct_transactions(database_url, two_lines)
    try:
        direct = run_clients(1, seconds, direct_make)
    finally:
        close_direct()
    raw_make, close_raw = raw_orders(database_url.removeprefix("sqlite:///"), SKUS, STORES[0])
    try:
        raw = run_clients(1, seconds, raw_make)
    finally:
        close_raw()
    if direct.errors or raw.errors:
        raise RuntimeError(f"storage ceiling: {errors_told(direct)} {errors_told(raw)}")
    return {"direct_s": direct.rate, "raw_s": raw.rate, "ratio": direct.rate / raw.rate}


def ceiling_table(ceiling: dict[str, float]) -> str:
    ratio = ceiling["ratio"]
    return "\n".join(
        [
            "| 2-line orders, 1 thread, SQLite | tx/s |",
            "| --- | ---: |",
            f"| central's place_order, in-process | {ceiling['direct_s']:.0f} |",
            f"| the same writes with plain sqlite3 | {ceiling['raw_s']:.0f} |",
            f"| central / plain sqlite3 | {ratio:.3f} |",
            "",
            verdict("direct tx/s / plain sqlite3 tx/s", ratio, "at least 0.25", ratio >= 0.25),
        ]
    )


def _row(
    backend: str,
    layout: str,
    clients: int,
    http: Sample,
    direct: Sample,
    trivial: Sample,
    trivial_spent: Spent,
    spent: Spent,
) -> dict[str, object]:
    ceiling = min(direct.rate, trivial.rate)
    return {
        "backend": backend,
        "layout": layout,
        "clients": clients,
        "orders_s": http.rate,
        "p50": http.pct(50),
        "p99": http.pct(99),
        "errors": http.errors,
        "direct_s": direct.rate,
        "direct_p50": direct.pct(50),
        "trivial_s": trivial.rate,
        "trivial_p50": trivial.pct(50),
        "ratio": http.rate / ceiling if ceiling else float("nan"),
        "of_trivial": http.rate / trivial.rate if trivial.rate else float("nan"),
        "ceiling": ceiling,
        "cpu_ms": spent.per_unit_ms(len(http.latencies)),
        "trivial_cpu_ms": trivial_spent.per_unit_ms(len(trivial.latencies)),
        "busy": spent.machine_busy,
    }


def _line(r: dict[str, object]) -> str:
    return (
        f"{r['backend']:7} {r['layout']:10} c={r['clients']:<3} orders/s={r['orders_s']:.0f} "
        f"p50={ms(r['p50'])}ms p99={ms(r['p99'])}ms | direct tx/s={r['direct_s']:.0f} "  # type: ignore[arg-type]
        f"| /healthz req/s={r['trivial_s']:.0f} | ratio={r['ratio']:.2f}"
    )


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| backend | central | clients | orders/s | p50 ms | p99 ms | errors | direct tx/s "
        "| /healthz req/s | orders / /healthz | orders / smaller ceiling |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['layout']} | {r['clients']} | {r['orders_s']:.0f} "
            f"| {ms(r['p50'])} "  # type: ignore[arg-type]
            f"| {ms(r['p99'])} | {r['errors']} | {r['direct_s']:.0f} | {r['trivial_s']:.0f} "  # type: ignore[arg-type]
            f"| {r['of_trivial']:.2f} | {r['ratio']:.2f} |"
        )
    for r in (r for r in rows if r["clients"] == 8):
        lines += ["", _verdict_of(r, "of_trivial", "/healthz req/s (the throughput issue's)")]
        lines += ["", _verdict_of(r, "ratio", "smaller ceiling (the benchmark issue's)")]
    return "\n".join(lines)


def _verdict_of(r: dict[str, object], key: str, against: str) -> str:
    ratio = float(r[key])  # type: ignore[arg-type]
    what = f"{r['backend']} orders/s at 8 clients / {against}, {r['layout']}"
    return verdict(what, ratio, "at least 0.5", ratio >= 0.5)


CPU_PARTS = ("central", "mariadb", "kafka", "load generator")


def cpu_table(rows: list[dict[str, object]]) -> str:
    """CPU per order by process at 8 clients, and what the 0.5 target leaves central."""
    lines = [
        "| backend | central | orders/s | central ms | MariaDB server ms | Kafka broker ms "
        "| load generator ms | machine busy |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for r in (r for r in rows if r["clients"] == 8):
        cpu: dict[str, float] = r["cpu_ms"]  # type: ignore[assignment]
        cells = " | ".join(f"{cpu.get(part, 0.0):.2f}" for part in CPU_PARTS)
        lines.append(
            f"| {r['backend']} | {r['layout']} | {r['orders_s']:.0f} | {cells} "
            f"| {float(r['busy']):.0%} |"  # type: ignore[arg-type]
        )
        notes.append(_budget_note(r, cpu))
    return "\n".join([*lines, "", *notes])


def _budget_note(r: dict[str, object], cpu: dict[str, float]) -> str:
    """What the machine's cores leave central per order at half of each ceiling, given what
    the other processes took per order in this run."""
    trivial_cpu: dict[str, float] = r["trivial_cpu_ms"]  # type: ignore[assignment]
    half_ceiling = _left_for_central("half the smaller ceiling", float(r["ceiling"]), cpu)  # type: ignore[arg-type]
    half_trivial = _left_for_central("half of /healthz", float(r["trivial_s"]), cpu)  # type: ignore[arg-type]
    return (
        f"- {r['backend']}, {r['layout']}: {half_ceiling} {half_trivial} Central took "
        f"{cpu.get('central', 0.0):.2f} ms per order, and "
        f"{trivial_cpu.get('central', 0.0):.2f} ms per /healthz request."
    )


def _left_for_central(what: str, ceiling: float, cpu: dict[str, float]) -> str:
    cores = os.cpu_count() or 1
    target = 0.5 * ceiling
    budget = cores * 1000 / target
    others = sum(ms for part, ms in cpu.items() if part != "central")
    left = budget - others
    leaves = f"{left:.2f} ms" if left > 0 else f"nothing ({left:.2f} ms)"
    return (
        f"At {what} ({target:.0f} orders/s) the machine's {cores} cores give {budget:.2f} ms of "
        f"CPU per order in all; the MariaDB server, the broker and the load generator took "
        f"{others:.2f} ms per order, which would leave central {leaves}."
    )


def run(quick: bool = False, plaintext: bool = False) -> str:
    RUN.mkdir(parents=True, exist_ok=True)
    seconds = 1.0 if quick else 5.0
    levels = [1, 8] if quick else [1, 8, 32]
    kafka, stop_kafka = start_kafka(plaintext=plaintext)
    mariadb, stop_mariadb = start_mariadb()
    ports = itertools.count(18900)
    try:
        ceiling = storage_ceiling(seconds)
        print(ceiling, file=sys.stderr)
        rows = []
        for backend in ("sqlite", "mariadb"):
            url = fresh_database(backend, mariadb)
            rows += measure(backend, url, kafka, levels, seconds, next(ports))
    finally:
        stop_mariadb()
        stop_kafka()
    facts = ", ".join(f"{k} {v}" for k, v in machine_facts().items())
    return (
        f"Machine: {facts}. {seconds:.0f} s per cell{' (quick mode)' if quick else ''}.\n\n"
        "Each client is a thread with its own keep-alive connection placing 1-3 line orders "
        "back to back. *direct tx/s*: the same `place_order` use case (one transaction: order "
        "row, locked stock rows, conditional decrements, lines, ledger, outbox) called in a loop "
        "in-process with the same number of threads; */healthz*: a trivial endpoint of the same "
        "uvicorn + FastAPI server. The load generator shares the 2 cores with the server. "
        "*1 process*: `central serve`; *--workers 2*: `central serve --workers 2` on the same "
        "database and topics right after (one worker holds the relay lease).\n\n"
        + table(rows)
        + "\n\n*CPU per order at 8 clients*, by process, from /proc over the orders run "
        "(central: its process and any workers; machine busy: all cores, from /proc/stat):\n\n"
        + cpu_table(rows)
        + "\n\n*Storage ceiling*: 2-line orders in one thread on a fresh SQLite file, first "
        "through central's `place_order`, then as the same statements written by hand with the "
        "standard library's `sqlite3` (bench/order_ceiling.py: idempotency lookup, order row, "
        "prices, stock rows, conditional updates, ledger, lines, outbox), one transaction per "
        "order, WAL, synchronous=NORMAL.\n\n"
        + ceiling_table(ceiling)
        + f"\n\nKafka: {security_mode(plaintext)}."
    )


def main(argv: list[str] | None = None) -> None:
    args = module_args("bench.orders", __doc__, argv)
    report = run(quick=args.quick, plaintext=args.plaintext)
    print(report)
    if os.environ.get("BENCH_OUT"):
        Path(os.environ["BENCH_OUT"]).write_text(report)


if __name__ == "__main__":
    main()
