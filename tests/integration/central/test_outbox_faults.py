"""The outbox under faults: a stopped broker delays events, a relay crash repeats them;
neither loses one."""

from collections import Counter

import pytest

from central.kafka import KafkaPublisher
from central.models import Outbox
from central.outbox import Relay
from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from invwire.topics import TOPIC_CATEGORY, TOPIC_INVENTORY, TOPIC_PRODUCT
from tests.support.central_harness import read_events, running_central

TOPICS = [TOPIC_CATEGORY, TOPIC_PRODUCT, TOPIC_INVENTORY]


@pytest.fixture
def own_broker(tmp_path, kafka_script, free_kafka_port):
    """A broker of this test's own, so stopping it does not disturb other tests."""
    cluster = str(tmp_path / "kafka")
    port = str(free_kafka_port(1))
    started = kafka_script("start", "--dir", cluster, "--port", port)
    assert started.returncode == 0, started.stderr
    yield cluster, port, KafkaCluster.from_client_env(tmp_path / "kafka" / "client.env", tmp_path)
    kafka_script("stop", "--dir", cluster)


def stock_versions(events, sku):
    return [
        e[2]["data"]["stock_version"]
        for e in events
        if e[1] == sku and e[0].endswith("inventory-updated")
    ]


def test_changes_made_while_the_broker_is_down_are_published_in_order_when_it_returns(
    database_url, own_broker, kafka_script, topic_prefix
):
    cluster, port, kafka = own_broker
    with running_central(database_url, kafka, topic_prefix) as h:
        admin = h.admin()
        cat = h.call("POST", "/api/v1/categories", admin, json={"name": "Dairy"})
        h.call(
            "POST",
            "/api/v1/products",
            admin,
            json={"sku": "MILK", "name": "Milk", "price": "1", "category_id": cat["id"]},
        )
        eventually(lambda: h.central.relay.backlog() == 0, what="outbox drained")

        assert kafka_script("stop", "--dir", cluster).returncode == 0
        for quantity in range(1, 21):
            h.call("PUT", "/api/v1/stock/MILK", admin, json={"quantity": quantity})
        assert h.central.relay.backlog() == 20

        assert kafka_script("start", "--dir", cluster, "--port", port).returncode == 0
        eventually(lambda: h.central.relay.backlog() == 0, 90, "outbox drained")

    events = read_events(kafka, [topic_prefix + t for t in TOPICS], expected=22)
    versions = stock_versions(events, "MILK")
    assert sorted(set(versions)) == list(range(1, 21))
    first_seen = list(dict.fromkeys(versions))
    assert first_seen == list(range(1, 21))


def publisher(kafka, prefix):
    """Central's publisher, logged in as the cluster's admin."""
    return KafkaPublisher(kafka.bootstrap, prefix, security=kafka.admin_config())


class CrashAfterPublish:
    """Publishes for real, then dies before the relay can mark the rows sent."""

    def __init__(self, inner):
        self.inner = inner

    def publish(self, records):
        self.inner.publish(records)
        raise SystemExit("relay killed between publishing and marking")

    def close(self):
        self.inner.close()


def test_a_relay_killed_between_publish_and_mark_republishes_never_loses(
    database_url, kafka_cluster, topic_prefix
):
    with running_central(database_url, prefix=topic_prefix) as h:
        admin = h.admin()
        cat = h.call("POST", "/api/v1/categories", admin, json={"name": "Dairy"})
        h.call(
            "POST",
            "/api/v1/products",
            admin,
            json={"sku": "MILK", "name": "Milk", "price": "1", "category_id": cat["id"]},
        )
        for quantity in (5, 6, 7):
            h.call("PUT", "/api/v1/stock/MILK", admin, json={"quantity": quantity})
        db, clock = h.central.db, h.central.clock
        with db.connection_context():
            outbox_ids = {r.event_id for r in Outbox.select()}

        crashing = Relay(
            db,
            CrashAfterPublish(publisher(kafka_cluster, topic_prefix)),
            clock,
            lease_seconds=0,
        )
        with pytest.raises(SystemExit):
            crashing.run_once()
        crashing.publisher.close()
        assert crashing.backlog() == 5

        successor = Relay(db, publisher(kafka_cluster, topic_prefix), clock)
        assert successor.run_once() == 5
        successor.publisher.close()

    events = read_events(kafka_cluster, [topic_prefix + t for t in TOPICS], expected=10)
    published = Counter(e[2]["event_id"] for e in events)
    assert set(published) == outbox_ids
    assert set(published.values()) == {2}
    assert stock_versions(events, "MILK") == [1, 2, 3, 1, 2, 3]
