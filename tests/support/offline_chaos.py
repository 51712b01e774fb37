"""Offline-mode chaos tests' shared parts: a shop at a real central process, agents with the
offline policy on, central stopped and started again on its port and database, a till that
keeps selling, and the checks that must hold after any fault: no oversell at central, no
lost sale, no duplicate order, every replica equal to central."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from harness.waiting import eventually
from tests.support.processes import BIN, Service, Stack, wait_http
from tests.support.shop import Shop

API = "/api/v1"
ACCEPTED = (201, 202)  # confirmed, or queued offline: the customer has the goods
# A check that meets a stopped or restarting process, or a replica file being written, has
# not failed yet.
TRANSIENT = (httpx.HTTPError, OSError, sqlite3.Error)


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, f"{response.request.url}: {response.text}"
    return response.json()


def offline_flags(per_order: int, total: int) -> list[str]:
    return [
        "--offline",
        "on",
        "--offline-max-units-per-order",
        str(per_order),
        "--offline-max-queued-units",
        str(total),
    ]


def central_port(stack: Stack) -> int:
    return int(urlsplit(stack.central_url).port or 0)


def restart_central(stack: Stack) -> Service:
    """A new `central serve` on the same port and the same SQLite database."""
    central = stack.spawn(
        "central",
        [str(BIN / "central"), "serve", "--port", str(central_port(stack))],
        stack.central_url,
        stack.central_env(),
    )
    wait_http(f"{stack.central_url}/readyz", process=central.process)
    return central


def replica_file(stack: Stack, store: str) -> Path:
    return stack.workdir / f"replica-{store}.db"


def local_statuses(db: Path) -> dict[str, str]:
    """idempotency key -> status, read from the agent's replica file (even while it is down)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        rows = conn.execute("SELECT idempotency_key, status FROM local_orders").fetchall()
    return dict(rows)


def request_waiting_at(port: int) -> bool:
    """A connection to 127.0.0.1:`port` holds bytes its (stopped) server has not read yet."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        waiting = int(queues.split(":")[1], 16) > 0
        if int(local.split(":")[1], 16) == port and state == "01" and waiting:
            return True
    return False


# --- what agents and central hold --------------------------------------------------------------


def agent_sales(agent: str) -> dict[str, dict[str, Any]]:
    items = httpx.get(f"{agent}/orders", params={"limit": 200}, timeout=10).json()["items"]
    assert len(items) < 200, "more sales than one page: raise the page or sell less"
    return {item["local_ref"]: item for item in items}


def offline_queue(agent: str) -> dict[str, Any]:
    return dict(httpx.get(f"{agent}/sync/status", timeout=10).json()["offline_queue"])


def wait_settled(agents: list[str], timeout: float) -> None:
    """Every agent's queue drained, no sale left pending, no failed one left in doubt."""

    def settled() -> bool:
        queues = [offline_queue(agent) for agent in agents]
        return all(q["depth"] == q["pending"] == q["in_doubt"] == 0 for q in queues)

    eventually(settled, timeout, "offline queues drained", ignoring=TRANSIENT)


def central_orders(shop: Shop, store: str) -> list[dict[str, Any]]:
    """Every order of the store at central, following the pages."""
    orders: list[dict[str, Any]] = []
    params: dict[str, Any] = {"store": store, "limit": 200}
    with httpx.Client(base_url=shop.central + API, timeout=15) as http:
        while True:
            page = _ok(http.get("/orders", params=params, headers=shop.admin))
            orders += page["items"]
            if page["next_before"] is None:
                return orders
            params["before"] = page["next_before"]


def orders_for_key(shop: Shop, store: str, key: str) -> list[dict[str, Any]]:
    params = {"idempotency_key": key}
    response = httpx.get(
        f"{shop.central}{API}/orders", params=params, headers=shop.store_headers(store), timeout=10
    )
    return list(_ok(response)["items"])


def central_stock(shop: Shop) -> dict[str, tuple[int, int]]:
    stock = {}
    for sku in shop.initial:
        body = _ok(httpx.get(f"{shop.central}{API}/stock/{sku}", headers=shop.admin, timeout=10))
        stock[sku] = (body["quantity"], body["stock_version"])
    return stock


def replica_stock(agent: str) -> dict[str, tuple[int, int]]:
    items = httpx.get(f"{agent}/products", timeout=10).json()["items"]
    return {item["sku"]: (item["quantity"], item["stock_version"]) for item in items}


def wait_converged(shop: Shop, agents: list[str], timeout: float) -> dict[str, tuple[int, int]]:
    def converged() -> dict[str, tuple[int, int]] | None:
        truth = central_stock(shop)
        return truth if all(replica_stock(agent) == truth for agent in agents) else None

    return eventually(converged, timeout, "replicas equal to central", ignoring=TRANSIENT)


# --- a till that keeps selling -----------------------------------------------------------------


@dataclass
class Sale:
    store: str
    key: str
    status: int  # 0: the agent did not answer
    body: dict[str, Any]
    at: float

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED

    @property
    def local_ref(self) -> str | None:
        ref = self.body.get("local_ref")
        return ref if isinstance(ref, str) else None


@dataclass
class Tills:
    """One selling thread per agent: a fresh key per sale, one to `max_units` units."""

    agents: dict[str, str]
    agent_headers: dict[str, str]  # the agents' terminal token (Stack.agent_headers())
    skus: list[str]
    max_units: int
    pause_s: float = 0.1
    sales: list[Sale] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n, (store, url) in enumerate(self.agents.items()):
            rng = random.Random(n)
            thread = threading.Thread(target=self._sell, args=(store, url, rng), daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def count(self, since: float = 0.0, until: float = float("inf")) -> Counter[int]:
        return Counter(s.status for s in self.sales if since <= s.at < until)

    def _sell(self, store: str, url: str, rng: random.Random) -> None:
        with httpx.Client(base_url=url, headers=self.agent_headers, timeout=20) as http:
            while not self._stop.is_set():
                key = f"{store}-{uuid.uuid4().hex[:12]}"
                line = {"sku": rng.choice(self.skus), "quantity": rng.randint(1, self.max_units)}
                self.sales.append(self._one(http, store, key, line))
                self._stop.wait(self.pause_s)

    def _one(self, http: httpx.Client, store: str, key: str, line: dict[str, Any]) -> Sale:
        at = time.monotonic()
        try:
            response = http.post(
                "/orders", json={"lines": [line]}, headers={"Idempotency-Key": key}
            )
        except httpx.HTTPError:
            return Sale(store, key, 0, {}, at)
        return Sale(store, key, response.status_code, response.json(), at)


# --- the invariants ----------------------------------------------------------------------------


def assert_every_accepted_sale_settled(agents: dict[str, str], sales: list[Sale]) -> Counter[str]:
    """No lost sale: every sale an agent accepted (201 or 202) ended confirmed or rejected."""
    outcomes: Counter[str] = Counter()
    for store, agent in agents.items():
        local = agent_sales(agent)
        for sale in (s for s in sales if s.store == store and s.accepted):
            assert sale.local_ref in local, f"sale {sale.key} is not in the agent's list"
            status = local[str(sale.local_ref)]["status"]
            assert status in ("confirmed", "rejected"), f"sale {sale.key} ended {status}"
            outcomes[status] += 1
    return outcomes


def assert_one_order_per_confirmed_sale(shop: Shop, agents: dict[str, str]) -> int:
    """No duplicate, no phantom: central's live orders of each store are exactly the orders
    its agent recorded as confirmed, one each."""
    total = 0
    for store, agent in agents.items():
        local = [s["order_id"] for s in agent_sales(agent).values() if s["status"] == "confirmed"]
        live = [o["id"] for o in central_orders(shop, store) if o["status"] == "confirmed"]
        assert len(local) == len(set(local)), f"{store}: one order recorded for two sales"
        assert sorted(live) == sorted(local), f"{store}: central's orders differ from the agent's"
        total += len(live)
    return total


def assert_no_oversell(shop: Shop, stores: list[str]) -> dict[str, int]:
    """Central's stock is the initial stock less the confirmed orders' units, never below 0."""
    sold: Counter[str] = Counter()
    for store in stores:
        for order in central_orders(shop, store):
            if order["status"] == "confirmed":
                for line in order["lines"]:
                    sold[line["sku"]] += line["quantity"]
    stock = central_stock(shop)
    for sku, initial in shop.initial.items():
        assert stock[sku][0] == initial - sold[sku] >= 0, f"{sku}: {stock[sku]} after {sold}"
    return dict(sold)
