"""Flat cost: orders through HTTP and central's CPU per order on a new database and on one
into which 1,000,000 orders (their lines, ledger rows and sent outbox rows) were written
first, with the same load, in turns. Whatever costs more as the tables grow (a scan, a
missing index, the relay's queries over the outbox) shows as the difference.

    python -m bench.flat_cost [--quick] [--plaintext]
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.common import (
    RUN,
    machine_facts,
    module_args,
    process_cpu_seconds,
    run_clients,
    security_mode,
    start_kafka,
    start_mariadb,
    verdict,
    wait_published,
)
from bench.orders import SKUS, STORES, fresh_database, http_orders, seed
from bench.stack import central_process
from harness.kafka_security import KafkaCluster
from invwire.events import StockChanged, encode
from invwire.orders import CONFIRMED

CLIENTS = 8
BATCH = 2_000  # orders a transaction while filling
ALLOWED_CHANGE = 0.10  # the bound on the difference, either way
CELLS = 6  # of each database, in turns: new, full, full, new, new, full, ...
SETTLE_S = 300.0  # at most, for MariaDB to flush what the filling wrote


@dataclass(frozen=True)
class Load:
    """Median of a few cells of CLIENTS clients: orders/s and central's CPU ms per order."""

    orders_s: float
    cpu_ms: float


def cell(url: str, keys: dict[str, str], port: int, seconds: float) -> Load:
    """CLIENTS clients for `seconds`: orders/s and central's CPU ms per order."""
    before = process_cpu_seconds(port)
    sample = run_clients(CLIENTS, seconds, http_orders(url, keys))
    spent = process_cpu_seconds(port) - before
    if sample.errors:
        raise RuntimeError(f"{sample.errors} orders failed during the measurement")
    return Load(sample.rate, spent / len(sample.latencies) * 1000)


def median_load(cells: list[Load]) -> Load:
    return Load(
        statistics.median(c.orders_s for c in cells), statistics.median(c.cpu_ms for c in cells)
    )


# --- filling: the rows of a past order, as central writes them ------------------------------

STATEMENTS = {
    "orders": 'INSERT INTO "orders" ("id", "store_id", "status", "idempotency_key", '
    '"fingerprint", "created_by", "created_at") VALUES (?, ?, ?, ?, ?, ?, ?)',
    "order_lines": 'INSERT INTO "order_lines" ("order_id", "sku", "quantity", "unit_price", '
    '"stock_after", "stock_version") VALUES (?, ?, ?, ?, ?, ?)',
    "stock_movements": 'INSERT INTO "stock_movements" ("sku", "delta", "quantity", '
    '"stock_version", "reason", "order_id", "actor", "note", "created_at") '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "outbox": 'INSERT INTO "outbox" ("event_id", "topic", "key", "payload", "created_at", '
    '"published_at") VALUES (?, ?, ?, ?, ?, ?)',
}


def past_orders(first: int, count: int) -> dict[str, list[tuple[Any, ...]]]:
    """`count` 2-line orders numbered from `first`: each table's rows."""
    rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in STATEMENTS}
    now = datetime.now(UTC)
    stamp = now.replace(tzinfo=None).isoformat(sep=" ")
    for number in range(first, first + count):
        order_id, store = str(uuid.uuid4()), STORES[number % len(STORES)]
        actor = f"store:{store}"
        rows["orders"].append(
            (order_id, store, CONFIRMED, f"fill-{number}", "0" * 64, actor, stamp)
        )
        for offset in (0, 1):
            sku, version = SKUS[(number + offset) % len(SKUS)], number + 1
            event = StockChanged(sku, 1_000_000, -1, "order", version, order_id)
            envelope = encode(event, now)
            rows["order_lines"].append((order_id, sku, 1, "1.00", 1_000_000, version))
            rows["stock_movements"].append(
                (sku, -1, 1_000_000, version, "order", order_id, actor, "", stamp)
            )
            rows["outbox"].append(
                (envelope.event_id, envelope.topic, envelope.key, envelope.value, stamp, stamp)
            )
    return rows


def fill(database_url: str, count: int) -> float:
    """Write `count` past orders into the database; the seconds it took."""
    started = time.perf_counter()
    with _connection(database_url) as (connection, dialect):
        cursor = connection.cursor()
        for first in range(0, count, BATCH):
            for table, rows in past_orders(first, min(BATCH, count - first)).items():
                cursor.executemany(dialect(STATEMENTS[table]), rows)
            connection.commit()
    return time.perf_counter() - started


class _connection:
    """A DB-API connection to `database_url` and the function turning this module's
    statements into its dialect."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._connection: Any = None

    def __enter__(self) -> tuple[Any, Any]:
        if self._url.startswith("sqlite:///"):
            import sqlite3

            self._connection = sqlite3.connect(self._url.removeprefix("sqlite:///"))
            return self._connection, lambda text: text
        from urllib.parse import urlparse

        import pymysql

        parsed = urlparse(self._url)
        self._connection = pymysql.connect(
            host=parsed.hostname,
            port=parsed.port or 3306,
            user=parsed.username,
            password=parsed.password,
            database=parsed.path.lstrip("/"),
        )
        return self._connection, lambda text: text.replace('"', "`").replace("?", "%s")

    def __exit__(self, *_: object) -> None:
        self._connection.close()


def settle(database_url: str) -> float:
    """Until what the filling wrote is on disk, so that the cells do not pay for its
    writeback: SQLite's WAL checkpointed into the file; MariaDB's dirty buffer pool pages
    flushed (SETTLE_S at most). Then the kernel's dirty pages synced. The seconds it took."""
    started = time.perf_counter()
    with _connection(database_url) as (connection, _):
        cursor = connection.cursor()
        if database_url.startswith("sqlite:///"):
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            _wait_flushed(cursor, started + SETTLE_S)
    os.sync()
    return time.perf_counter() - started


def _wait_flushed(cursor: Any, deadline: float) -> None:
    """Idle, MariaDB leaves dirty pages in its buffer pool as long as they stay under
    innodb_max_dirty_pages_pct: set to 0 for the wait, they are flushed in seconds."""
    cursor.execute("SELECT @@GLOBAL.innodb_max_dirty_pages_pct")
    (kept,) = cursor.fetchone()
    cursor.execute("SET GLOBAL innodb_max_dirty_pages_pct = 0")
    try:
        while (dirty := _dirty_pages(cursor)) > 0:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"MariaDB still held {dirty} dirty pages after {SETTLE_S:g} s")
            time.sleep(0.2)
    finally:
        cursor.execute("SET GLOBAL innodb_max_dirty_pages_pct = %s", (kept,))


def _dirty_pages(cursor: Any) -> int:
    cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
    return int(cursor.fetchone()[1])


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    url: str
    keys: dict[str, str]
    port: int


def measure(
    backend: str,
    mariadb: str,
    kafka: KafkaCluster,
    ports: Iterator[int],
    orders: int,
    seconds: float,
) -> dict[str, Any]:
    """Two databases side by side, one new and one holding `orders` past orders, a central
    on each, their cells in turns (new, full, full, new, ...): the machine's speed drifts
    over the minutes of a run, and in turns the drift falls on both alike."""
    full_url = fresh_database(backend, mariadb)
    full_keys = seed(full_url)
    filled_s = fill(full_url, orders)
    print(f"{backend}: {orders:,} orders written in {filled_s:.0f} s", file=sys.stderr)
    new_url = fresh_database(backend, mariadb)
    new_keys = seed(new_url)
    settled_s = settle(full_url)
    print(f"{backend}: settled in {settled_s:.0f} s", file=sys.stderr)
    new_port, full_port = next(ports), next(ports)
    with (
        central_process(new_url, kafka, new_port, topic_prefix()) as new_central,
        central_process(full_url, kafka, full_port, topic_prefix()) as full_central,
    ):
        new = Served(new_central, new_keys, new_port)
        full = Served(full_central, full_keys, full_port)
        for served in (new, full):  # warm-up: connections, caches
            run_clients(CLIENTS, 1.0, http_orders(served.url, served.keys))
        cells: dict[str, list[Load]] = {"new": [], "full": []}
        for turn in range(CELLS * 2):
            name, served = (("new", new), ("full", full))[(turn + turn // 2) % 2]
            for each in (new, full):  # the last cell's relay would otherwise run into this one
                wait_published(each.url)
            cells[name].append(cell(served.url, served.keys, served.port, seconds))
            print(f"{backend}: {name} {cells[name][-1]}", file=sys.stderr)
    empty, loaded = median_load(cells["new"]), median_load(cells["full"])
    print(f"{backend}: new {empty}, full {loaded}", file=sys.stderr)
    return {
        "backend": backend,
        "empty": empty,
        "full": loaded,
        "cells": cells,
        "filled_s": filled_s,
        "settled_s": settled_s,
    }


def topic_prefix() -> str:
    return f"flat{uuid.uuid4().hex[:6]}."  # topics of its own, as bench.orders


def table(rows: list[dict[str, Any]], orders: int) -> str:
    lines = [
        f"| backend | orders/s, new | orders/s, +{orders:,} | change | CPU ms/order, new "
        f"| CPU ms/order, +{orders:,} | change |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for r in rows:
        empty, full = r["empty"], r["full"]
        rate_change = full.orders_s / empty.orders_s - 1
        cpu_change = full.cpu_ms / empty.cpu_ms - 1
        lines.append(
            f"| {r['backend']} | {empty.orders_s:.0f} | {full.orders_s:.0f} | "
            f"{rate_change:+.1%} | {empty.cpu_ms:.2f} | {full.cpu_ms:.2f} | {cpu_change:+.1%} |"
        )
        worst = max(abs(rate_change), abs(cpu_change))
        verdicts.append(
            verdict(
                f"{r['backend']}: largest change of orders/s or CPU per order",
                worst,
                f"at most {ALLOWED_CHANGE:.2f}",
                worst <= ALLOWED_CHANGE,
            )
        )
    return "\n".join([*lines, "", *map(cells_told, rows)]) + "\n\n" + "\n\n".join(verdicts)


def cells_told(r: dict[str, Any]) -> str:
    def rates(name: str) -> str:
        return ", ".join(f"{c.orders_s:.0f}" for c in r["cells"][name])

    told = f"new {rates('new')}; +N {rates('full')}"
    return f"- {r['backend']}, orders/s by cell in its turn: {told}."


def _ports() -> Iterator[int]:
    return itertools.count(18930)


def run(quick: bool = False, plaintext: bool = False) -> str:
    RUN.mkdir(parents=True, exist_ok=True)
    orders = 20_000 if quick else 1_000_000
    seconds = 1.0 if quick else 5.0
    kafka, stop_kafka = start_kafka(plaintext=plaintext)
    mariadb, stop_mariadb = start_mariadb()
    ports = _ports()
    try:
        rows = [
            measure(backend, mariadb, kafka, ports, orders, seconds)
            for backend in ("sqlite", "mariadb")
        ]
    finally:
        stop_mariadb()
        stop_kafka()
    facts = ", ".join(f"{k} {v}" for k, v in machine_facts().items())
    filled = ", ".join(f"{r['backend']} {r['filled_s']:.0f} s" for r in rows)
    settled = ", ".join(f"{r['backend']} {r['settled_s']:.0f} s" for r in rows)
    return (
        f"Machine: {facts}.{' Quick mode.' if quick else ''}\n\n"
        f"{CLIENTS} clients place 1-3 line orders through HTTP (as in *Orders through HTTP*), "
        f"{CELLS} cells of {seconds:.0f} s on each database after a 1 s warm-up, in turns "
        "(new, +N, +N, new, new, +N, ...), each after both centrals had published their whole "
        "outbox, medians; CPU per order is central's user + system time from "
        "/proc over a cell, divided by the orders placed. *new*: a new database (its own orders "
        f"only); *+{orders:,}*: a database into which {orders:,} 2-line orders with their "
        f"lines, ledger rows and sent outbox rows were written first (time to write them: "
        f"{filled}; then, before any cell, SQLite's WAL checkpointed, MariaDB's dirty pages "
        f"flushed and the kernel's synced: {settled}). A central on each, both running, one "
        "loaded at a time: measured in turns, "
        "the machine's drift over the minutes of a run falls on both alike (before 2026-12-04 "
        "the new database was measured first and the same one again after the writing, "
        "minutes later).\n\n" + table(rows, orders) + f"\n\nKafka: {security_mode(plaintext)}."
    )


def main(argv: list[str] | None = None) -> None:
    args = module_args("bench.flat_cost", __doc__, argv)
    print(run(quick=args.quick, plaintext=args.plaintext))


if __name__ == "__main__":
    main()
