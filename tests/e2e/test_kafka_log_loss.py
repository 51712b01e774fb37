"""Kafka's inventory topic deleted and re-created under a running store (an operator's
mistake, or a broker that lost its data), against real processes: the agent does not crash,
reports `kafka.log_behind` and rebuilds its replica from the log by itself; central puts its
whole state back on Kafka (`central republish`); after `invctl sync resync` the store's
replica equals central again, and the till could read stock all along."""

import subprocess
import threading
from contextlib import suppress

import httpx
from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from invwire.topics import PARTITIONS, TOPIC_INVENTORY
from tests.support.processes import BIN, stack
from tests.support.topics import create_topics
from tests.support.waiting import eventually

PRODUCTS = 12
HEADER = "kind,name,sku,price,category,description,active,quantity"


def write_catalog(path):
    rows = [HEADER, "category,Dairy,,,,,,"]
    rows += [f"product,Item {i},ITEM-{i:03d},1.00,Dairy,,true,{10 + i}" for i in range(PRODUCTS)]
    path.write_text("\n".join(rows) + "\n")


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
