"""Chaos: central with no single point of failure. Two central hosts (`central serve
--workers 2` each, on nodes 1 and 2 of a 3-node Galera cluster) behind HAProxy, a 3-node Kafka
cluster, and four store agents pointed at HAProxy selling steadily while, in turn, one central
worker is SIGKILLed, then the relay's lease holder, then Galera node 2 (host b's database),
then a Kafka node. After each fault and its repair: every sale a till was
told succeeded is one order at central under its key and nothing else is, no SKU is oversold,
every replica equals central; at the end every stock event is on Kafka with new versions of a
SKU in order. The longest spell in which the tills saw failures is printed."""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from itertools import combinations
from typing import Any

import httpx

from harness.relay_lease import read_lease, worker_pids
from harness.waiting import eventually
from tests.support.chaos import (
    TRANSIENT,
    Workload,
    assert_no_event_lost,
    assert_no_oversell,
    assert_orders_exactly_once,
    ledger,
    outbox_backlog,
    own_cluster,
    stock_events,
    wait_converged,
)
from tests.support.galera import free_galera_port
from tests.support.ha_stack import (
    create_admin,
    create_database,
    own_galera,
    start_central_host,
    start_proxy,
)
from tests.support.processes import stack
from tests.support.shop import Shop, seed_shop

STORES = [f"ha-{n}" for n in range(1, 5)]
INITIAL = {sku: 300 for sku in ("APPLE", "BREAD", "CHEESE", "DATES")}
SALES_AROUND_A_FAULT = 15
# HAProxy's httplog: `client [accept date] frontend backend/server timers status ...`
PROXY_LINE = re.compile(r"\[(?P<at>[^\]]+)\] \S+ \S+ \S+ (?P<status>\d{3}) ")


def sales_after(work: Workload, count: int) -> Callable[[], bool]:
    return lambda: len(work.sales) >= count


def merged(phases: list[Workload]) -> Workload:
    """One Workload holding what every phase did, for the checks over the whole run."""
    first = phases[0]
    total = Workload(first.shop, first.agents, first.agent_headers)
    for work in phases:
        total.sales += work.sales
        total.adjusted.update(work.adjusted)  # `+=` would drop the SKUs taken below zero
        total.cancelled |= work.cancelled
        total.unresolved += work.unresolved
        total.outcomes += work.outcomes
    return total


def settle_doubts(shop: Shop, work: Workload) -> None:
    """An admin request whose process was killed under it gets no answer (HAProxy's 502: it
    repeats no POST without an Idempotency-Key), so whether it happened is read back: a
    stock adjustment from the ledger (the adjustments recorded there must be those answered
    200 plus some of those in doubt), a cancellation from the order. `work` then holds what
    happened; a sale still in doubt stays in `unresolved`, for the checks to refuse."""
    doubted: dict[str, list[int]] = {}
    left = []
    for what in work.unresolved:
        kind, *args = what.split()
        if kind == "adjust":
            doubted.setdefault(args[0], []).append(int(args[1]))
        elif kind == "cancel" and order_status(shop, args[0]) == "cancelled":
            work.cancelled.add(args[0])
        elif kind != "cancel":
            left.append(what)
    for sku, deltas in doubted.items():
        booked = sum(m["delta"] for m in ledger(shop, sku) if m["reason"] == "adjust")
        extra = booked - work.adjusted[sku]
        sums = {sum(c) for n in range(len(deltas) + 1) for c in combinations(deltas, n)}
        assert extra in sums, f"{sku}: the ledger's adjustments exceed those made by {extra}"
        work.adjusted[sku] = booked
    work.unresolved = left


def order_status(shop: Shop, order_id: str) -> str:
    answer = httpx.get(f"{shop.central}/api/v1/orders/{order_id}", headers=shop.admin, timeout=15)
    answer.raise_for_status()
    return str(answer.json()["status"])


def longest_failing_spell(work: Workload) -> float:
    """Seconds from a till's first failed sale attempt (no answer, or 5xx / 503) to the next
    sale confirmed at any till, the longest such spell of the phase."""
    spell, failing_since = 0.0, None
    for outcome in sorted((o for o in work.outcomes if o.kind == "order"), key=lambda o: o.at):
        if outcome.status == 201:
            if failing_since is not None:
                spell = max(spell, outcome.at - failing_since)
            failing_since = None
        elif (outcome.status == 0 or outcome.status >= 500) and failing_since is None:
            failing_since = outcome.at
    return spell


def proxy_errors(log_lines: list[str]) -> tuple[int, float]:
    """(5xx answers HAProxy gave, the longest spell of them): from its HTTP log, a spell
    being 5xx answers less than a second apart."""
    times = []
    for line in log_lines:
        found = PROXY_LINE.search(line)
        if found and int(found["status"]) >= 500:
            times.append(datetime.strptime(found["at"], "%d/%b/%Y:%H:%M:%S.%f").timestamp())
    longest, begun = 0.0, None
    for before, at in zip([None, *times], times, strict=False):
        begun = at if before is None or at - before >= 1.0 else begun
        longest = max(longest, at - (begun or at))
    return len(times), longest


def assert_new_versions_in_order(events: list[dict[str, Any]]) -> None:
    """Each SKU's stock_versions first appear in increasing order (a repeat of an older one,
    as at-least-once delivery allows, is not a new version)."""
    newest: dict[str, int] = {}
    for data in events:
        sku, version = data["sku"], data["stock_version"]
        if version > newest.get(sku, 0):
            assert version == newest.get(sku, 0) + 1, f"{sku}: v{version} before v{newest[sku] + 1}"
            newest[sku] = version


def test_sales_go_on_through_the_loss_of_any_one_process_or_node(
    tmp_path, kafka_script, free_kafka_port, topic_prefix
):
    with (
        own_cluster(kafka_script, tmp_path / "kafka", free_kafka_port(3), nodes=3) as kafka,
        own_galera(tmp_path / "galera", free_galera_port()) as galera,
        stack(tmp_path, kafka.clients, topic_prefix) as s,
    ):
        create_database(galera.urls[0], "invctl_ha")
        databases = [url.rstrip("/") + "/invctl_ha" for url in galera.urls]
        create_admin(s, databases[0])
        hosts = {"central-a": start_central_host(s, "central-a", databases[0])}
        hosts["central-b"] = start_central_host(s, "central-b", databases[1])
        proxy = start_proxy(s, hosts)
        s.central_url = proxy.url
        shop = seed_shop(s.central_url, INITIAL, STORES)
        agents = {store: s.start_agent(store, shop.keys[store]).url for store in STORES}
        wait_converged(shop, agents, timeout=60)

        def relay_holder() -> int:
            lease = read_lease(databases[0])
            assert lease is not None and lease.held, f"no relay holds the lease: {lease}"
            return lease.pid

        def a_central_worker() -> Callable[[], None]:
            workers = worker_pids(hosts["central-a"].process.pid) - {relay_holder()}
            os.kill(min(workers), signal.SIGKILL)
            return lambda: None  # its supervisor starts another

        def the_relay_holder() -> Callable[[], None]:
            os.kill(relay_holder(), signal.SIGKILL)
            return lambda: None

        def galera_node_2() -> Callable[[], None]:
            galera.kill_node(2)
            return galera.start

        def a_kafka_node() -> Callable[[], None]:
            kafka.kill(3)

            def restart() -> None:
                kafka.start()

            return restart

        faults = {
            "a central worker": a_central_worker,
            "the relay lease holder": the_relay_holder,
            "Galera node 2": galera_node_2,
            "Kafka node 3": a_kafka_node,
        }
        phases: list[Workload] = []
        spells: dict[str, float] = {}
        for n, (name, fault) in enumerate(faults.items()):
            work = Workload(shop, agents, s.agent_headers(), seed=n + 1)
            work.start()
            try:
                eventually(sales_after(work, SALES_AROUND_A_FAULT), 60, f"sales before {name}")
                repair = fault()
                eventually(sales_after(work, 2 * SALES_AROUND_A_FAULT), 90, f"sales after {name}")
                repair()
                eventually(
                    sales_after(work, 3 * SALES_AROUND_A_FAULT), 90, f"sales after {name} repaired"
                )
            finally:
                work.stop()
            phases.append(work)
            spells[name] = longest_failing_spell(work)
            eventually(
                lambda: outbox_backlog(s.central_url) == 0,
                90,
                f"outbox drained after {name}",
                interval=0.2,
                ignoring=TRANSIENT,
            )
            wait_converged(shop, agents, timeout=90)
            everything = merged(phases)
            settle_doubts(shop, everything)
            orders = assert_orders_exactly_once(shop, everything)
            assert_no_oversell(shop, everything, orders)

        stock_topic = topic_prefix + "inventory-updated"
        assert_no_event_lost(shop, kafka.clients, stock_topic)
        assert_new_versions_in_order(stock_events(kafka.clients, stock_topic))

    errors, error_spell = proxy_errors(proxy.log_lines())
    total = merged(phases)
    statuses = Counter(o.status for o in total.outcomes if o.kind == "order")
    print(
        f"\n{len(total.sales)} sales, {len(total.cancelled)} cancels, "
        f"order answers {dict(statuses)}; longest spell of failed sale attempts at the tills: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in spells.items())
        + f"; HAProxy answered {errors} 5xx, the longest spell {error_spell:.1f} s"
    )
