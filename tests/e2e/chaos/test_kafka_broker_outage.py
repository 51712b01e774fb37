"""Chaos: the only broker stops for 10 s under a steady load of sales at two stores and
adjustments and cancels at central. Central keeps taking writes (its outbox holds the events),
the agents keep serving their replicas and say they are not ready; when the broker is back the
outbox drains, both replicas converge, and no sale, stock unit or event is lost or doubled."""

import time

from harness.waiting import eventually
from tests.support.chaos import (
    TRANSIENT,
    Workload,
    agents_ready,
    assert_no_event_lost,
    assert_no_oversell,
    assert_orders_exactly_once,
    outbox_backlog,
    own_cluster,
    wait_converged,
    watch_agents,
)
from tests.support.processes import stack
from tests.support.shop import seed_shop

OUTAGE_S = 10.0
NOTICE_LIMIT_S = 25.0  # the broker stays down longer only until both agents said not ready
CONVERGE_LIMIT_S = 25.0  # the relay's backoff is capped at 10 s; the agents reconnect in ~1 s
STORES = ["store-a", "store-b"]
INITIAL = {"APPLE": 60, "BREAD": 60, "CHEESE": 60}


def test_a_ten_second_broker_outage_loses_nothing_and_the_agents_converge(
    tmp_path, kafka_script, free_kafka_port, topic_prefix
):
    with (
        own_cluster(kafka_script, tmp_path / "kafka", free_kafka_port(1), nodes=1) as kafka,
        stack(tmp_path, kafka.clients, topic_prefix) as s,
    ):
        s.start_central()
        shop = seed_shop(s.central_url, INITIAL, STORES)
        agents = {store: s.start_agent(store, shop.keys[store]).url for store in STORES}
        wait_converged(shop, agents, timeout=30)

        work = Workload(shop, agents, s.agent_headers())
        work.start()
        try:
            time.sleep(3)
            kafka.stop()
            down_at = time.monotonic()
            during = watch_agents(
                agents, shop.skus, at_least=down_at + OUTAGE_S, at_most=down_at + NOTICE_LIMIT_S
            )
            backlog_at_restart = outbox_backlog(s.central_url)
            restart_at = time.monotonic()
            kafka.start()
            up_at = time.monotonic()
            time.sleep(3)
        finally:
            work.stop()

        eventually(
            lambda: outbox_backlog(s.central_url) == 0,
            60,
            "central's outbox drains",
            interval=0.2,
            ignoring=TRANSIENT,
        )
        drained_s = time.monotonic() - up_at
        wait_converged(shop, agents, timeout=60)
        converged_s = time.monotonic() - up_at
        eventually(
            lambda: agents_ready(agents),
            30,
            "both agents ready again",
            interval=0.2,
            ignoring=TRANSIENT,
        )
        orders = assert_orders_exactly_once(shop, work)
        assert_no_oversell(shop, work, orders)
        stream = assert_no_event_lost(shop, kafka.clients, topic_prefix + "inventory-updated")

    outage = work.count(down_at, restart_at)
    print(
        f"\nwhile the broker was down ({restart_at - down_at:.1f} s): {dict(outage)}; "
        f"agents noticed after {[w.not_ready_after for w in during.values()]} s; outbox "
        f"backlog {backlog_at_restart}; broker back in {up_at - restart_at:.1f} s, then the "
        f"outbox drained in {drained_s:.1f} s and replicas converged in {converged_s:.1f} s "
        f"(workload ran 3 s of it); {len(work.sales)} sales, {len(work.cancelled)} cancels, "
        f"{sum(work.adjusted.values()):+d} adjusted; {stream.events} stock events, "
        f"{stream.duplicates} duplicates"
    )
    assert outage["order", 201] >= 20, f"sales confirmed while the broker was down: {outage}"
    assert outage["adjust", 200] >= 10, f"adjustments taken while the broker was down: {outage}"
    failed = {k: n for k, n in work.count().items() if k[1] >= 500 or k[1] == 0}
    assert not failed, f"5xx or unanswered requests: {failed}"
    assert backlog_at_restart, f"events waited in central's outbox: {backlog_at_restart}"
    assert converged_s <= CONVERGE_LIMIT_S, (
        f"replicas converged {converged_s:.1f} s after the broker returned "
        f"(limit {CONVERGE_LIMIT_S:.0f} s; the outbox drained after {drained_s:.1f} s)"
    )
    for store, seen in during.items():
        assert set(seen.reads) == {200}, f"{store} stock reads while the broker was down: {seen}"
        assert seen.not_ready_after is not None, f"{store} said ready all through the outage"
        assert seen.readyz["status"] == 503, f"{store} /readyz in the outage: {seen.readyz}"
        checks = seen.readyz["error"]["details"]["checks"]
        assert checks["broker"] is False, f"{store} /readyz in the outage: {seen.readyz}"
