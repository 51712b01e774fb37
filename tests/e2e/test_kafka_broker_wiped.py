"""The broker lost its topics' data: stopped, its partition directories deleted, started again.

A dedicated one-node cluster (scripts/kafka), since the session's is shared. What is wiped is
what a broker that lost its data disk loses: every partition's log (central's topics, the
consumer groups' offsets) and their checkpoints. The KRaft metadata log stays (in production
it lives with the controllers, or on its own disk): topics, their ids, the SCRAM users and the
ACLs survive, so central and the stores still log in. Losing that too is a new cluster, with
a new cluster id (the agents refuse their replicas) and no users: not covered here
(docs/operations.md, "Kafka data loss").

Central's relay, stuck while the broker is down, says `failing` and recovers by itself: it
finds its topics short and republishes its whole state. A running store, a store stopped
before the wipe and started after it, and a new store all end equal to central; each that
had read the lost log says so while it is not yet equal; none crashes.
"""

import shutil
import time

import httpx
import pytest

from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from tests.support.log_loss import (
    log_reasons,
    stale,
    stock_when_first_ready,
    write_catalog,
)
from tests.support.processes import stack, while_alive

# What a broker keeps when its topics' data is lost: its identity and the metadata log.
KEPT = frozenset({"meta.properties", "bootstrap.checkpoint", "__cluster_metadata-0"})
CONFIG = "[central]\nrelay_failing_after_seconds = 2\n"


@pytest.fixture
def own_kafka(tmp_path_factory, kafka_script, free_kafka_port):
    """A one-node cluster of this test's own: (its directory, the cluster)."""
    root = tmp_path_factory.mktemp("kafka-wiped")
    started = kafka_script("start", "--dir", str(root), "--port", str(free_kafka_port(1)))
    if started.returncode != 0:
        pytest.fail(f"scripts/kafka start failed:\n{started.stderr}", pytrace=False)
    try:
        yield root, KafkaCluster.from_client_env(root / "client.env", root / "clients")
    finally:
        kafka_script("stop", "--dir", str(root))


def wipe_topic_data(root):
    """Every partition's log and checkpoint of the (stopped) node; the metadata stays."""
    data = root / "node-1" / "data"
    wiped = [entry for entry in data.iterdir() if entry.name not in KEPT]
    for entry in wiped:
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return {entry.name for entry in wiped}


def relay_word(s):
    return httpx.get(f"{s.central_url}/readyz", timeout=10).json()["checks"]["relay"]


def readiness(agent):
    """The agent's readiness checks, as /readyz names them."""
    answer = httpx.get(f"{agent.url}/readyz", timeout=10)
    body = answer.json()
    return body["checks"] if answer.status_code == 200 else body["error"]["details"]["checks"]


def central_logged(central, event):
    return any(f'"event": "{event}"' in line for line in central.log_lines())


def test_a_broker_that_lost_its_data_is_refilled_by_central_and_every_store_follows(
    tmp_path, own_kafka, kafka_script, topic_prefix
):
    root, kafka = own_kafka
    catalog = tmp_path / "catalog.csv"
    write_catalog(catalog)
    config = tmp_path / "central.toml"
    config.write_text(CONFIG)
    config.chmod(0o600)
    with stack(tmp_path, kafka, topic_prefix) as s:
        central = s.start_central(["--config", str(config)])
        s.login_admin()
        s.invctl("import", str(catalog))
        for quantity in (20, 21, 22):
            s.invctl("stock", "set", "ITEM-001", str(quantity))
        keys = {
            n: s.invctl_json("store", "add", f"store-{n}", "--name", f"S{n}")["api_key"]
            for n in (1, 2, 3)
        }
        running, stopped = (s.start_agent(f"store-{n}", keys[n]) for n in (1, 2))
        eventually(
            lambda: (
                s.stock_at_agent(running.url)
                == s.stock_at_agent(stopped.url)
                == s.stock_at_central()
            ),
            60,
            "both stores replicated",
        )
        assert stopped.stop() == 0

        down = kafka_script("stop", "--dir", str(root))
        assert down.returncode == 0, down.stderr
        s.invctl("stock", "set", "ITEM-002", "77")  # waits in the outbox: the relay is stuck
        eventually(lambda: relay_word(s) == "failing", 30, "central: relay failing")
        eventually(lambda: not readiness(running)["broker"], 30, "store 1: broker unreachable")
        wiped = wipe_topic_data(root)
        assert any(name.startswith(topic_prefix) for name in wiped), wiped
        up = kafka_script("start", "--dir", str(root))
        assert up.returncode == 0, up.stderr
        restarted = time.monotonic()

        eventually(lambda: log_reasons(running), 60, "store 1 finds the loss and says so")
        eventually(lambda: central_logged(central, "relay.republished"), 60, "a republish")
        eventually(lambda: relay_word(s) == "leader", 60, "central: relay publishing again")

        stopped = s.start_agent("store-2", keys[2], wait_ready=False)
        shown = stock_when_first_ready(s, stopped)
        assert stale(shown, s.stock_at_central()) == {}, "ready with stale rows"
        new = s.start_agent("store-3", keys[3], wait_ready=False)

        expected = s.stock_at_central()
        left = max(restarted + 60 - time.monotonic(), 1)
        for agent in (running, stopped, new):
            eventually(
                while_alive(agent.process, lambda: s.stock_at_agent(agent.url) == expected),  # noqa: B023
                left,
                f"{agent.name} equal to central",
            )
        ready = [
            httpx.get(f"{a.url}/readyz", timeout=10).status_code for a in (running, stopped, new)
        ]
        alive = [a.process.poll() is None for a in (central, running, stopped, new)]

    assert expected["ITEM-002"] == 77 and expected["ITEM-001"] == 22
    assert alive == [True] * 4
    assert ready == [200, 200, 200]
    assert log_reasons(running) and log_reasons(stopped), "each said what happened"
    assert log_reasons(new) == []
