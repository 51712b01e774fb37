"""What the end-to-end tests of Kafka data loss share: a small catalog, what a store shows and
says (its stock rows, its sync problem, the reasons it logged), and the offsets on both sides."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, TopicPartition

from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from tests.support.processes import Service, Stack, while_alive

PRODUCTS = 12
HEADER = "kind,name,sku,price,category,description,active,quantity"


def write_catalog(path: Path) -> None:
    """One category and PRODUCTS products ITEM-000.., each with stock 10 + its number."""
    rows = [HEADER, "category,Dairy,,,,,,"]
    rows += [f"product,Item {i},ITEM-{i:03d},1.00,Dairy,,true,{10 + i}" for i in range(PRODUCTS)]
    path.write_text("\n".join(rows) + "\n")


def write_stock(path: Path, quantities: Mapping[str, int]) -> None:
    """An import that only sets stock: the catalog's product rows for these SKUs."""
    rows = [HEADER] + [
        f"product,Item {int(sku[-3:])},{sku},1.00,Dairy,,true,{quantity}"
        for sku, quantity in quantities.items()
    ]
    path.write_text("\n".join(rows) + "\n")


def end_offsets(kafka: KafkaCluster, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap, **kafka.admin_config())
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: end for tp, end in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def stored_offsets(replica_path: Path, topic: str) -> dict[int, int]:
    """The next offsets a stopped agent's replica holds for `topic`."""
    with closing(sqlite3.connect(f"file:{replica_path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT partition, next_offset FROM offsets WHERE topic = ?", (topic,))
        return dict(rows.fetchall())


def log_reasons(agent: Service) -> list[str | None]:
    """The reasons of the agent's `kafka.log_behind` log lines, in order."""
    events = [json.loads(line) for line in agent.log_lines() if line.startswith("{")]
    return [e.get("reason") for e in events if e.get("event") == "kafka.log_behind"]


def stock_rows(s: Stack, agent: Service) -> dict[str, tuple[int, int]]:
    """{sku: (quantity, stock version)} as the agent shows them; version 0: no stock row."""
    shown = s.invctl("--agent", agent.url, "--json", "stock", "list", "--all")
    return {row["sku"]: (row["quantity"], row["stock_version"]) for row in json.loads(shown.stdout)}


def stock_when_first_ready(s: Stack, agent: Service, timeout: float = 90) -> dict[str, Any]:
    """The agent's stock rows as it shows them once its /readyz first says 200."""
    ready = while_alive(
        agent.process, lambda: httpx.get(f"{agent.url}/readyz", timeout=5).status_code == 200
    )
    eventually(ready, timeout, f"{agent.name} ready", interval=0.1, ignoring=(httpx.HTTPError,))
    return stock_rows(s, agent)


def stale(shown: Mapping[str, tuple[int, int]], central: Mapping[str, int]) -> dict[str, Any]:
    """The SKUs the agent shows with another quantity than central's (a missing stock row is
    the log's loss until central republishes it, and the agent says so meanwhile)."""
    return {
        sku: (quantity, central.get(sku))
        for sku, (quantity, version) in shown.items()
        if version and quantity != central.get(sku)
    }


def problem_shown(agent: Service, timeout: float = 60) -> dict[str, Any]:
    """The agent's first sync problem as /sync/status shows it, once it shows one."""
    status = while_alive(
        agent.process, lambda: httpx.get(f"{agent.url}/sync/status", timeout=5).json()["problems"]
    )
    return eventually(status, timeout, f"{agent.name} says", ignoring=(httpx.HTTPError,))[0]
