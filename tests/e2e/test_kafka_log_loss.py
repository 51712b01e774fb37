"""Kafka's inventory topic deleted and re-created under a running store (an operator's
mistake, or a broker that lost its data), against real processes: the agent does not crash,
reports `kafka.log_behind` and rebuilds its replica from the log by itself; central puts its
whole state back on Kafka (`central republish`), and the running store ends equal to central
by itself within 60 s of it; an `invctl sync resync` then rebuilds it again while the till
reads stock all along. Stores stopped
meanwhile come back saying what happened, not ready with stale rows, and a new store
bootstraps; all end equal to central (the broker's data wiped: test_kafka_broker_wiped)."""

import subprocess
import threading
import time
from contextlib import suppress

import httpx
from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from harness.topics import create_topics
from harness.waiting import eventually
from invwire.topics import PARTITIONS, TOPIC_INVENTORY
from tests.support.log_loss import (
    PRODUCTS,
    end_offsets,
    log_reasons,
    problem_shown,
    stale,
    stock_when_first_ready,
    stored_offsets,
    write_catalog,
    write_stock,
)
from tests.support.processes import BIN, stack, while_alive


def logged(agent, event):
    return any(f'"{event}"' in line for line in agent.log_lines())


def recreate(kafka_cluster, topic):
    with KafkaAdminClient(
        bootstrap_servers=kafka_cluster.bootstrap, **kafka_cluster.admin_config()
    ) as admin:
        admin.delete_topics([topic])
        eventually(lambda: topic not in admin.list_topics(), what=f"{topic} deleted")
    with suppress(TopicAlreadyExistsError):  # central's relay may have made it again first
        create_topics(
            kafka_cluster.bootstrap,
            topic.removesuffix(TOPIC_INVENTORY),
            {TOPIC_INVENTORY: PARTITIONS[TOPIC_INVENTORY]},
            **kafka_cluster.admin_config(),
        )


class TillReads:
    """A till reading stock at the agent in a loop; counts what was not a 200."""

    def __init__(self, url):
        self.url, self.refused, self.reads = url, [], 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                answer = client.get("/stock/ITEM-000")
                self.reads += 1
                if answer.status_code != 200:
                    self.refused.append(answer.status_code)


def test_a_topic_recreated_under_a_running_store_is_shown_and_mended_without_a_gap(
    tmp_path, kafka_cluster, topic_prefix
):
    catalog = tmp_path / "catalog.csv"
    write_catalog(catalog)
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        s.invctl("import", str(catalog))
        for quantity in (20, 21, 22):  # more records than the new log will hold
            s.invctl("stock", "set", "ITEM-001", str(quantity))
        store = s.invctl_json("store", "add", "store-1", "--name", "First Street")
        agent = s.start_agent("store-1", store["api_key"])
        eventually(lambda: s.stock_at_agent(agent.url) == s.stock_at_central(), what="replicated")

        recreate(kafka_cluster, topic_prefix + TOPIC_INVENTORY)
        s.invctl("stock", "set", "ITEM-001", "45")  # lands at the start of the new log

        # shown while it stands; the agent's own rebuild may end it within a second here
        eventually(lambda: logged(agent, "kafka.log_behind"), what="kafka.log_behind found")
        assert agent.process.poll() is None, "the agent runs on"

        republished = subprocess.run(
            [str(BIN / "central"), "republish"],
            env={**s.env, **s.central_env()},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # by itself, within 60 s of the republish: its own rebuild and then its live loop
        eventually(
            lambda: s.stock_at_agent(agent.url) == s.stock_at_central(),
            60,
            "the running store equal to central by itself",
        )
        till = TillReads(agent.url)
        till.thread.start()
        resynced = s.invctl("--agent", agent.url, "sync", "resync", check=False)
        till.stop.set()
        till.thread.join(10)
        central = s.stock_at_central()
        # the rebuild read the log up to where it stood when it began; the relay may still
        # have been publishing the republished rows, which the live loop then reads
        eventually(lambda: s.stock_at_agent(agent.url) == central, what="equal to central")
        after = s.stock_at_agent(agent.url)
        ready = httpx.get(f"{agent.url}/readyz")

    assert any("being rebuilt from the log" in line for line in agent.log_lines())
    assert republished.returncode == 0, republished.stderr
    assert resynced.returncode == 0, resynced.stderr
    assert after == central and central["ITEM-001"] == 45
    assert len(after) == PRODUCTS
    assert ready.status_code == 200, ready.text
    assert till.reads > 0 and till.refused == [], "the till read stock all along"


# --- stores that were stopped, and a new one ------------------------------------------------


def published_all(s):
    metrics = httpx.get(f"{s.central_url}/metrics", timeout=10).text
    return "invctl_outbox_backlog 0.0" in metrics.splitlines()


def central_logged(central, event):
    return any(f'"event": "{event}"' in line for line in central.log_lines())


def test_stopped_stores_come_back_not_ready_with_stale_rows_and_a_new_store_bootstraps(
    tmp_path, kafka_cluster, topic_prefix
):
    """Store 1 comes back to the re-created, empty topic (its offsets are past the end): it
    says so, rebuilds from the log as it is and stays not ready, counting the rows it lacks,
    until central republishes them, which central does by itself once its next record is
    acknowledged at a lower offset than before. Store 2 comes back after the republish and
    more changes refilled the topic past its offsets (only the topic's new id tells). Store 3
    is new. Each ends equal to central within 60 s of the republish; none is ready with a
    stale row."""
    inventory = topic_prefix + TOPIC_INVENTORY
    catalog = tmp_path / "catalog.csv"
    write_catalog(catalog)
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        central_process = s.start_central()
        s.login_admin()
        s.invctl("import", str(catalog))
        for quantity in (20, 21, 22):
            s.invctl("stock", "set", "ITEM-001", str(quantity))
        keys = {
            n: s.invctl_json("store", "add", f"store-{n}", "--name", f"S{n}")["api_key"]
            for n in (1, 2, 3)
        }
        first, second = (s.start_agent(f"store-{n}", keys[n]) for n in (1, 2))
        eventually(
            lambda: (
                s.stock_at_agent(first.url) == s.stock_at_agent(second.url) == s.stock_at_central()
            ),
            60,
            "both replicated",
        )
        assert first.stop() == 0 and second.stop() == 0

        s.invctl("stock", "set", "ITEM-002", "77")  # read by neither store before the loss
        eventually(lambda: published_all(s), 30, "77 published to the log about to be lost")
        recreate(kafka_cluster, inventory)

        first = s.start_agent("store-1", keys[1], wait_ready=False)
        said = problem_shown(first)
        assert said["code"] == "kafka.log_behind"
        assert log_reasons(first)[:1] == ["past_end"]
        eventually(
            lambda: "holds fewer rows than this replica did" in problem_shown(first)["message"],
            60,
            "store 1 rebuilt from the empty log, short of rows",
        )
        assert httpx.get(f"{first.url}/readyz", timeout=10).status_code == 503

        s.invctl("stock", "set", "ITEM-003", "55")  # the new log's first record
        eventually(lambda: central_logged(central_process, "relay.republished"), 60, "republish")
        republished = time.monotonic()
        shown = stock_when_first_ready(s, first)
        assert stale(shown, s.stock_at_central()) == {}, "ready with stale rows"
        others = {f"ITEM-{i:03d}": 100 + i for i in range(PRODUCTS) if i != 2}
        for round_ in range(3):  # refill store 2's partitions past its offsets; not ITEM-002
            write_stock(catalog, {sku: q + round_ for sku, q in others.items()})
            s.invctl("import", str(catalog))
        stored = stored_offsets(tmp_path / "replica-store-2.db", inventory)
        eventually(
            lambda: all(
                end >= stored.get(p, 0) for p, end in end_offsets(kafka_cluster, inventory).items()
            ),
            60,
            "the new log past store 2's offsets",
        )

        second = s.start_agent("store-2", keys[2], wait_ready=False)
        shown = stock_when_first_ready(s, second)
        assert stale(shown, s.stock_at_central()) == {}, "ready with stale rows"
        assert log_reasons(second)[:1] == ["topic_replaced"]
        third = s.start_agent("store-3", keys[3], wait_ready=False)

        central = s.stock_at_central()
        left = max(republished + 60 - time.monotonic(), 1)
        for agent in (first, second, third):
            eventually(
                while_alive(agent.process, lambda: s.stock_at_agent(agent.url) == central),  # noqa: B023
                left,
                f"{agent.name} equal to central",
            )
        statuses = [
            httpx.get(f"{a.url}/sync/status", timeout=10).json() for a in (first, second, third)
        ]
        alive = [a.process.poll() is None for a in (first, second, third)]

    assert central["ITEM-002"] == 77 and len(central) == PRODUCTS
    assert alive == [True, True, True]
    assert [st["problems"] for st in statuses] == [[], [], []]
    assert [st.get("rebuild", {}).get("state") for st in statuses] == ["adopted", "adopted", None]
