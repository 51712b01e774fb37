"""The till's word is final, with real processes and real files: `central serve` on SQLite,
`storeagent run` agents on their replica files, the real broker.

The stalled disk: the replica's write lock is taken (BEGIN IMMEDIATE from a connection of
this test) the moment central's answer to a sale reaches a small HTTP relay between the
agent and central, before the relay hands it on: the pending sale is saved, central has
answered, and the agent cannot record that answer. Every sale answered with an error must
never be placed (central's stock unchanged once the agent settled everything); every 201 or
202 must be placed exactly once. With offline mode on, one sale also meets central answering
503 while the lock is held, so that the queueing write fails.

Two agents run for one store (the same store id and API key, two replica files): the same
Idempotency-Key at both gives one 201 and one 409 `order.key_conflict`, never two sales
booked as one order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.waiting import eventually
from tests.support.agent_fakes import ReplicaWriteLock
from tests.support.central_relay import ANSWER_503, PASS, CentralRelay
from tests.support.offline_chaos import (
    agent_sales,
    assert_one_order_per_confirmed_sale,
    central_stock,
    offline_flags,
    orders_for_key,
    replica_file,
    wait_settled,
)
from tests.support.processes import Stack, stack
from tests.support.shop import Shop, seed_shop

# What a sale meets when central's answer reaches the relay: nothing (PASS); the replica's
# lock taken first; or the lock taken, and a 503 instead of central's answer (central
# committed the order).
LOCK, LOCK_AND_503 = "lock", "lock-and-503"
SETTLE_S = 120.0  # an unanswered sale is looked up 30 s after the replica records it


@dataclass
class Sale:
    key: str
    quantity: int
    fault: str
    status: int = 0
    body: dict[str, Any] | None = None

    @property
    def error(self) -> dict[str, Any]:
        assert self.body is not None
        return dict(self.body.get("error") or {})


@pytest.fixture
def running(tmp_path, kafka_cluster, topic_prefix) -> Iterator[Stack]:
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        yield s


def start_agent(
    s: Stack, shop: Shop, store: str, *, central: str, db: Path, flags: list[str]
) -> str:
    """`storeagent run` for `store`, on the replica file `db`, talking to `central` (the
    later --central and --db win over Stack's)."""
    args = [*flags, "--central", central, "--db", str(db), "--heartbeat-seconds", "0"]
    return s.start_agent(store, shop.keys[store], extra_args=args).url


class StalledDisk:
    """Which sales meet the held replica lock, and the lock itself (opened on first use,
    once the agent has made its replica file)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.faults: dict[str, str] = {}
        self._lock: ReplicaWriteLock | None = None

    def on_order_answer(self, key: str) -> str:
        fault = self.faults.get(key, PASS)
        if fault != PASS:
            if self._lock is None:
                self._lock = ReplicaWriteLock(self.db)
            self._lock.take()
        return ANSWER_503 if fault == LOCK_AND_503 else PASS

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()


def sell(s: Stack, agent: str, sales: list[Sale], disk: StalledDisk) -> None:
    """One sale after the other, each answered before the next; the lock, when a sale's
    fault took it, is released once the till has its answer."""
    with httpx.Client(base_url=agent, headers=s.agent_headers(), timeout=60) as http:
        for sale in sales:
            disk.faults[sale.key] = sale.fault
            body = {"lines": [{"sku": "MILK-1L", "quantity": sale.quantity}]}
            response = http.post("/orders", json=body, headers={"Idempotency-Key": sale.key})
            sale.status, sale.body = response.status_code, response.json()
            disk.release()


def assert_placed_exactly_as_answered(shop: Shop, store: str, agent: str, sales: list[Sale]):
    local = agent_sales(agent)
    for sale in sales:
        at_central = orders_for_key(shop, store, sale.key)
        live = [order for order in at_central if order["status"] == "confirmed"]
        if sale.status in (201, 202):
            assert sale.body is not None
            assert len(live) == len(at_central) == 1, f"{sale.key}: {at_central}"
            assert local[sale.body["local_ref"]]["status"] == "confirmed"
        else:
            assert live == [], f"{sale.key} was answered {sale.status} yet placed: {live}"
            assert local[sale.error["details"]["local_ref"]]["status"] == "failed"


@pytest.mark.parametrize("offline", ["off", "on"])
def test_a_stalled_disk_never_books_a_sale_the_till_was_told_failed(
    running: Stack, unique_id: str, offline: str
):
    s, store = running, f"disk-{unique_id[:8]}"
    shop = seed_shop(s.central_url, {"MILK-1L": 50}, [store])
    db = replica_file(s, store)
    disk = StalledDisk(db)
    flags = offline_flags(5, 50) if offline == "on" else []
    plan = [LOCK, PASS, LOCK, LOCK, PASS] + ([LOCK_AND_503, PASS] if offline == "on" else [])
    sales = [Sale(f"{store}-{n}", 1 + n % 2, fault) for n, fault in enumerate(plan)]
    try:
        with CentralRelay(s.central_url, disk.on_order_answer) as relay:
            agent = start_agent(s, shop, store, central=relay.url, db=db, flags=flags)
            eventually(lambda: agent_stock_known(agent), 60, "MILK-1L replicated")

            sell(s, agent, sales, disk)
            wait_settled([agent], SETTLE_S)

            assert_placed_exactly_as_answered(shop, store, agent, sales)
            assert_one_order_per_confirmed_sale(shop, {store: agent})
            stock = central_stock(shop)["MILK-1L"][0]
    finally:
        disk.close()

    accepted = sum(sale.quantity for sale in sales if sale.status in (201, 202))
    faulted = [sale for sale in sales if sale.fault != PASS]
    assert all(sale.status in (201, 202) for sale in sales if sale.fault == PASS)
    assert [(sale.status, sale.error["code"]) for sale in faulted] == [
        (503, "database.unavailable")
    ] * len(faulted)
    assert all(sale.error["details"]["outcome"] == "voided" for sale in faulted)
    assert stock == 50 - accepted


def agent_stock_known(agent: str) -> bool:
    return httpx.get(f"{agent}/stock/MILK-1L", timeout=5).status_code == 200


def test_two_agents_for_one_store_never_book_two_sales_as_one_order(running: Stack, unique_id: str):
    s, store = running, f"twin-{unique_id[:8]}"
    shop = seed_shop(s.central_url, {"MILK-1L": 50}, [store])
    dbs = [replica_file(s, store), s.workdir / f"replica-{store}-copy.db"]
    agents = [start_agent(s, shop, store, central=s.central_url, db=db, flags=[]) for db in dbs]
    for agent in agents:
        eventually(lambda agent=agent: agent_stock_known(agent), 60, "MILK-1L replicated")
    key, both = f"{store}-till1-0001", threading.Barrier(2, timeout=30)
    answers: dict[str, httpx.Response] = {}

    def buy(agent: str) -> None:
        with httpx.Client(base_url=agent, headers=s.agent_headers(), timeout=30) as http:
            both.wait()
            body = {"lines": [{"sku": "MILK-1L", "quantity": 2}]}
            answers[agent] = http.post("/orders", json=body, headers={"Idempotency-Key": key})

    tills = [threading.Thread(target=buy, args=(agent,)) for agent in agents]
    for thread in tills:
        thread.start()
    for thread in tills:
        thread.join(60)
    at_central = orders_for_key(shop, store, key)
    stock = central_stock(shop)["MILK-1L"][0]
    logs = "\n".join(line for service in s.services for line in service.log_lines())

    statuses = sorted(response.status_code for response in answers.values())
    [refused] = [response for response in answers.values() if response.status_code == 409]
    [loser] = [agent for agent, response in answers.items() if response.status_code == 409]
    [local] = agent_sales(loser).values()
    assert statuses == [201, 409]
    assert refused.json()["error"]["code"] == "order.key_conflict"
    assert [order["status"] for order in at_central] == ["confirmed"]
    assert refused.json()["error"]["details"]["order_id"] == at_central[0]["id"]
    assert (local["status"], local["reason"].split(":")[0]) == ("failed", "order.key_conflict")
    assert stock == 48
    assert '"level": "error", "event": "order.key_conflict"' in logs
