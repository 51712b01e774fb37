"""Chaos: offline sales under allowances cannot oversell (real processes: two central
processes on one SQLite database, five store agents, a real broker).

Four stores hold allowances of both hot SKUs. Their central process is stopped for 60 s;
they sell offline to the end of their allowances. A fifth store, online at the other central
process, sells everything else of the same SKUs meanwhile. After the first process is back
and the stores replayed: every sale sold under allowances is one confirmed order at central
and none was refused or left for review, every sale a till was refused is not at central,
initial stock minus what was sold is central's stock (zero: everything sold, never below),
and central's ledger, its orders, the events on Kafka and every replica agree.

The agents run without the offline risk policy: a sale their allowances do not cover is
refused (503) while central is away, so every sale they accepted offline is an allowance
sale.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.waiting import eventually
from tests.support.chaos import assert_no_event_lost, ledger
from tests.support.offline_chaos import (
    API,
    TRANSIENT,
    agent_sales,
    assert_one_order_per_confirmed_sale,
    central_orders,
    central_stock,
    orders_for_key,
    restart_central,
    wait_converged,
    wait_settled,
)
from tests.support.processes import BIN, free_port, stack, wait_http
from tests.support.shop import Shop, seed_shop

OUTAGE_S = 60.0
HOT = {"HOT-A": 120, "HOT-B": 90}
OFFLINE_STORES = [f"drawer-{n}" for n in range(1, 5)]
ONLINE_STORE = "counter"
GRANT = {"HOT-A": 9, "HOT-B": 6}  # units of each SKU set aside for each offline store
# After the restart, the stopped process's relay lease may have to run out before the
# replicas see its events (the other process holds it meanwhile): a minute and some.
CONVERGE_S = 90.0


@dataclass
class Sold:
    store: str
    key: str
    sku: str
    units: int
    status: int  # 0: no answer
    body: dict[str, Any]


@dataclass
class Till:
    """Sells one SKU after another at one agent until `done` says the store has sold out."""

    store: str
    url: str
    headers: dict[str, str]
    sales: list[Sold] = field(default_factory=list)

    def sell(self, sku: str, units: int) -> Sold:
        key = f"{self.store}-{uuid.uuid4().hex[:12]}"
        body = {"lines": [{"sku": sku, "quantity": units}]}
        try:
            response = httpx.post(
                f"{self.url}/orders",
                json=body,
                headers={**self.headers, "Idempotency-Key": key},
                timeout=20,
            )
            sold = Sold(self.store, key, sku, units, response.status_code, response.json())
        except httpx.HTTPError:
            sold = Sold(self.store, key, sku, units, 0, {})
        self.sales.append(sold)
        return sold


def grant(shop: Shop, store: str, sku: str, units: int) -> dict[str, Any]:
    body = {"store": store, "sku": sku, "units": units, "ttl_s": 3600}
    response = httpx.post(f"{shop.central}{API}/allowances", json=body, headers=shop.admin)
    assert response.status_code == 201, response.text
    return dict(response.json())


def allowances_at(agent: str) -> dict[str, Any]:
    return dict(httpx.get(f"{agent}/sync/status", timeout=10).json()["allowances"])


def store_allowances(shop: Shop, store: str) -> list[dict[str, Any]]:
    params = {"store": store, "limit": 100}
    response = httpx.get(f"{shop.central}{API}/allowances", params=params, headers=shop.admin)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def sell_offline_to_the_end(till: Till) -> None:
    """One unit at a time, each SKU until the agent refuses it: its allowance is used up."""
    for sku in GRANT:
        while True:
            sold = till.sell(sku, 1)
            if sold.status != 202:
                break


def sell_the_rest_online(till: Till) -> None:
    """Up to 5 units a sale; a short answer says what is left, and that is taken next."""
    for sku in HOT:
        units = 5
        while True:
            sold = till.sell(sku, units)
            if sold.status == 201:
                continue
            assert sold.status == 409, f"online sale: {sold.status} {sold.body}"
            units = min(5, int(sold.body["error"]["details"]["lines"][0]["available"]))
            if units == 0:
                break


def test_four_stores_sell_their_allowances_offline_for_60_s_and_none_is_refused(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        central_a = s.start_central()
        shop = seed_shop(s.central_url, HOT, [*OFFLINE_STORES, ONLINE_STORE])
        for store in OFFLINE_STORES:
            for sku, units in GRANT.items():
                grant(shop, store, sku, units)
        port_b = free_port()
        central_b = s.spawn(
            "central-b",
            [str(BIN / "central"), "serve", "--port", str(port_b)],
            f"http://127.0.0.1:{port_b}",
            s.central_env(),
        )
        wait_http(f"{central_b.url}/readyz", process=central_b.process)
        agents = {store: s.start_agent(store, shop.keys[store]).url for store in OFFLINE_STORES}
        agents[ONLINE_STORE] = s.start_agent(
            ONLINE_STORE, shop.keys[ONLINE_STORE], central=central_b.url
        ).url
        wait_converged(shop, list(agents.values()), 60)
        held = sum(GRANT.values())
        for store in OFFLINE_STORES:  # the grants are fetched as each agent starts
            eventually(lambda a=agents[store]: allowances_at(a)["units_left"] == held, 60)

        tills = {store: Till(store, url, s.agent_headers()) for store, url in agents.items()}
        central_a.stop()
        down_at = time.monotonic()
        threads = [
            threading.Thread(target=sell_offline_to_the_end, args=(tills[store],))
            for store in OFFLINE_STORES
        ]
        threads.append(threading.Thread(target=sell_the_rest_online, args=(tills[ONLINE_STORE],)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(OUTAGE_S)
        assert not any(t.is_alive() for t in threads), "the tills did not sell out in the outage"
        for store in OFFLINE_STORES:
            assert allowances_at(agents[store])["units_left"] == 0, store
        threading.Event().wait(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        restart_central(s)

        offline_agents = [agents[store] for store in OFFLINE_STORES]
        wait_settled(offline_agents, 90)
        eventually(
            lambda: all(allowances_at(a)["units_waiting_replay"] == 0 for a in offline_agents),
            60,
            "allowance sales replayed",
            ignoring=TRANSIENT,
        )

        sold_under_allowances = check_allowance_sales(shop, agents, tills)
        orders = assert_one_order_per_confirmed_sale(shop, agents)
        sold = check_stock(shop, list(agents))
        wait_converged(shop, list(agents.values()), CONVERGE_S)
        stream = assert_no_event_lost(shop, s.kafka, topic_prefix + "inventory-updated")
        check_ledger(shop, sold)

    print(
        f"\nallowance outage of {OUTAGE_S:.0f} s: {sold_under_allowances} units sold offline "
        f"under allowances by {len(OFFLINE_STORES)} stores, all accepted; {orders} orders; "
        f"sold {sold}; {stream.events} stock events"
    )


def check_allowance_sales(shop: Shop, agents: dict[str, str], tills: dict[str, Till]) -> int:
    """Each offline store sold exactly its allowances, every such sale is confirmed at central
    (once, not for review), and no sale a till was refused reached central."""
    total = 0
    for store in OFFLINE_STORES:
        sales = tills[store].sales
        accepted = [sale for sale in sales if sale.status == 202]
        refused = [sale for sale in sales if sale.status != 202]
        assert all(sale.body["status"] == "allowance" for sale in accepted), store
        assert Counter(sale.sku for sale in accepted) == Counter(GRANT), store
        assert all(sale.status == 503 for sale in refused), [s.body for s in refused]
        local = agent_sales(agents[store])
        for sale in accepted:
            assert local[sale.body["local_ref"]]["status"] == "confirmed", sale
            (order,) = orders_for_key(shop, store, sale.key)
            assert order["status"] == "confirmed" and order["review"] is None, order
            assert sum(d["units"] for d in order["allowances"]) == sale.units, order
        for sale in refused:
            assert orders_for_key(shop, store, sale.key) == [], sale
        total += len(accepted)
        grants = store_allowances(shop, store)
        assert sorted(g["sku"] for g in grants) == sorted(GRANT), grants
        assert all(g["remaining"] == 0 for g in grants), grants
    return total


def check_stock(shop: Shop, stores: list[str]) -> dict[str, int]:
    """Initial stock minus the confirmed orders' units is central's stock: zero, as the
    stores sold everything; nothing is held any more."""
    sold: Counter[str] = Counter()
    for store in stores:
        for order in central_orders(shop, store):
            assert order["status"] == "confirmed", order
            for line in order["lines"]:
                sold[line["sku"]] += line["quantity"]
    stock = central_stock(shop)
    for sku, initial in shop.initial.items():
        assert stock[sku][0] == initial - sold[sku] == 0, f"{sku}: {stock[sku]} after {sold}"
    return dict(sold)


def check_ledger(shop: Shop, sold: dict[str, int]) -> None:
    """The ledger's order rows add up to what the orders sold, its allowance rows to nothing
    held, and its last quantity is central's."""
    for sku in shop.skus:
        rows = ledger(shop, sku)
        by_reason: Counter[str] = Counter()
        for row in rows:
            by_reason[row["reason"]] += row["delta"]
        assert by_reason["order"] == -sold[sku], (sku, by_reason)
        held = sum(v for reason, v in by_reason.items() if reason.startswith("allowance."))
        assert held == 0, (sku, by_reason)
        assert rows[-1]["quantity"] == 0, rows[-1]
