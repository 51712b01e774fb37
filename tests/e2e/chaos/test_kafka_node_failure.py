"""Chaos: one node of a three-node cluster is killed (SIGKILL) under a steady load of sales at
two stores and adjustments and cancels at central. The topics central created have three
replicas and min.insync.replicas 2, so central keeps publishing with acks=all, the agents
(bootstrapped with all three nodes) keep applying new events, and once the node is back no
event, sale or stock unit is lost or doubled and both replicas equal central."""

import time

import httpx

from harness.waiting import eventually
from invwire.topics import TOPIC_CATEGORY, TOPIC_INVENTORY, TOPIC_PRODUCT
from tests.support.chaos import (
    TRANSIENT,
    Workload,
    agents_ready,
    assert_no_event_lost,
    assert_no_oversell,
    assert_orders_exactly_once,
    key_partition,
    outbox_backlog,
    own_cluster,
    replica_stock,
    topic_configs,
    topic_layout,
    wait_converged,
)
from tests.support.processes import stack
from tests.support.shop import seed_shop

KILLED_S = 15.0
KEEP_UP_LIMIT_S = 25.0  # Kafka fences a killed node after 9 s; clients reconnect within 1 s
STORES = ["store-a", "store-b"]
SOLD = ["APPLE", "BREAD", "CHEESE"]
CANARY = "DATES"  # not sold: its replica stock moves only through Kafka, never by an answer
INITIAL = {sku: 60 for sku in [*SOLD, CANARY]}
TOPICS = [TOPIC_CATEGORY, TOPIC_PRODUCT, TOPIC_INVENTORY]
ALL_NODES = (1, 2, 3)
SYNC_FIELDS = ("ready", "problems", "last_applied_at", "staleness_s")


def replicas_hold(agents, sku, version):
    """True once every replica holds `sku` at `version` or later; else an AssertionError that
    says where each replica is and what its agent reports (the failure message's last reason)."""
    behind = {}
    for store, url in agents.items():
        held = replica_stock(url)[sku][1]
        if held < version:
            sync = httpx.get(f"{url}/sync/status", timeout=5).json()
            lagging = [p for p in sync.get("partitions", []) if p.get("lag") != 0]
            said = {k: sync.get(k) for k in SYNC_FIELDS}
            behind[store] = {"version": held, "sync": said, "lagging": lagging}
    assert not behind, f"replicas behind version {version}: {behind}"
    return True


def test_a_killed_node_of_three_loses_no_event_and_the_agents_keep_up(
    tmp_path, kafka_script, free_kafka_port, topic_prefix
):
    with (
        own_cluster(kafka_script, tmp_path / "kafka", free_kafka_port(3), nodes=3) as kafka,
        stack(tmp_path, kafka.clients, topic_prefix) as s,
    ):
        assert kafka.bootstrap.split(",") == [kafka.broker(n) for n in ALL_NODES]
        s.start_central()
        shop = seed_shop(s.central_url, INITIAL, STORES)
        agents = {store: s.start_agent(store, shop.keys[store]).url for store in STORES}
        wait_converged(shop, agents, timeout=30)
        stock_topic = topic_prefix + "inventory-updated"
        layouts = {t: topic_layout(kafka.clients, topic_prefix + t) for t in TOPICS}
        configs = {t: topic_configs(kafka.clients, topic_prefix + t) for t in TOPICS}
        for topic in TOPICS:
            assert all(p.replicas == p.isr == ALL_NODES for p in layouts[topic]), (
                f"{topic}: {layouts[topic]}"
            )
            assert configs[topic].get("min.insync.replicas") == "2", f"{topic}: {configs[topic]}"
            assert configs[topic].get("cleanup.policy") == "compact", f"{topic}: {configs[topic]}"
        stock_layout = layouts["inventory-updated"]
        canary = stock_layout[key_partition(CANARY, len(stock_layout))]
        assert canary.end_offset > 0, f"{CANARY}'s first event is in partition {canary.partition}"
        victim = canary.leader
        busy = [p for p in stock_layout if p.end_offset > 0]

        work = Workload(shop, agents, s.agent_headers(), skus=SOLD)
        work.start()
        try:
            time.sleep(3)
            kafka.kill(victim)
            killed_at = time.monotonic()
            time.sleep(1)
            bumped = work.adjust(CANARY, +1)
            assert bumped, "central adjusted the canary with a node down"
            eventually(
                lambda: replicas_hold(agents, CANARY, bumped["stock_version"]),
                60,  # past the limit below, so that a slow catch-up is measured, not cut off
                "an event made after the kill reaches both replicas",
                interval=0.2,
                ignoring=TRANSIENT,
            )
            kept_up_s = time.monotonic() - killed_at
            backlog = []
            while time.monotonic() < killed_at + KILLED_S:
                backlog.append(outbox_backlog(s.central_url))
                time.sleep(0.5)
            degraded = topic_layout(kafka.clients, stock_topic)
            restart_at = time.monotonic()
            kafka.start()
            time.sleep(2)
        finally:
            work.stop()

        eventually(
            lambda: outbox_backlog(s.central_url) == 0,
            60,
            "central's outbox drains",
            interval=0.2,
            ignoring=TRANSIENT,
        )
        wait_converged(shop, agents, timeout=60)
        eventually(
            lambda: agents_ready(agents), 30, "both agents ready", interval=0.2, ignoring=TRANSIENT
        )
        eventually(
            lambda: all(p.isr == ALL_NODES for p in topic_layout(kafka.clients, stock_topic)),
            60,
            f"node-{victim} back in sync for every partition",
            interval=0.2,
            ignoring=TRANSIENT,
        )
        orders = assert_orders_exactly_once(shop, work)
        assert_no_oversell(shop, work, orders)
        stream = assert_no_event_lost(shop, kafka.clients, stock_topic)

    while_down = work.count(killed_at, restart_at)
    leaders = {p.partition: p.leader for p in busy}
    print(
        f"\nkilled node-{victim}, leader of {CANARY}'s partition {canary.partition} (busy "
        f"partitions and leaders: {leaders}); while it was down "
        f"({restart_at - killed_at:.1f} s): {dict(while_down)}; an event made 1 s after the "
        f"kill reached both replicas {kept_up_s:.1f} s after it; outbox backlog then "
        f"{backlog}; {len(work.sales)} sales, {len(work.cancelled)} cancels; "
        f"{stream.events} stock events, {stream.duplicates} duplicates"
    )
    assert all(p.leader != victim and victim not in p.isr for p in degraded), (
        f"leaders and in-sync replicas with node-{victim} down: {degraded}"
    )
    assert while_down["order", 201] >= 20, f"sales confirmed with a node down: {while_down}"
    assert while_down["adjust", 200] >= 10, f"adjustments taken with a node down: {while_down}"
    failed = {k: n for k, n in work.count().items() if k[1] >= 500 or k[1] == 0}
    assert not failed, f"5xx or unanswered requests: {failed}"
    assert kept_up_s <= KEEP_UP_LIMIT_S, (
        f"an event made 1 s after the kill reached the replicas after {kept_up_s:.1f} s "
        f"(limit {KEEP_UP_LIMIT_S:.0f} s)"
    )
    assert backlog and backlog[-1] is not None and backlog[-1] < 50, (
        f"central publishes with a node down (outbox backlog samples {backlog})"
    )
