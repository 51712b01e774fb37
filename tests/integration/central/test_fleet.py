"""The fleet view: lag per store from its Kafka group, last-seen from its heartbeats."""

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from invwire.identity import consumer_group
from tests.support.central_harness import running_central
from tests.support.waiting import eventually

TOPICS = ["new-category", "new-product", "inventory-updated"]


def commit_everything(kafka, prefix, store, key):
    """What an up-to-date agent does: commit the log-end offset of every partition, logged in
    with its store's key."""
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        group_id=consumer_group(store),
        enable_auto_commit=False,
        **kafka.store_config(store, key),
    )
    try:
        partitions = [
            TopicPartition(prefix + t, p)
            for t in TOPICS
            for p in consumer.partitions_for_topic(prefix + t)
        ]
        ends = consumer.end_offsets(partitions)
        consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
    finally:
        consumer.close()


def by_store(h, admin):
    return {s["store_id"]: s for s in h.call("GET", "/api/v1/sync/stores", admin)["items"]}


def test_lag_and_last_seen_per_store(database_url, kafka_cluster, topic_prefix):
    with running_central(database_url, kafka_cluster, topic_prefix) as h:
        admin = h.admin()
        keys = {
            s: h.call("POST", "/api/v1/stores", admin, json={"id": s, "name": s})["api_key"]
            for s in ("north", "south")
        }
        cat = h.call("POST", "/api/v1/categories", admin, json={"name": "C"})
        h.call(
            "POST",
            "/api/v1/products",
            admin,
            json={"sku": "A", "name": "A", "price": "1", "category_id": cat["id"]},
        )
        eventually(lambda: h.central.relay.backlog() == 0, what="outbox drained")
        commit_everything(kafka_cluster, topic_prefix, "north", keys["north"])
        response = h.client.post(
            "/api/v1/stores/heartbeat",
            headers={"X-API-Key": keys["north"]},
            json={"ready": True, "lag": 0, "offline_queue": 0},
        )
        assert response.status_code == 204

        fleet = by_store(h, admin)
        assert fleet["north"]["lag"] == 0
        assert fleet["south"]["lag"] == 2, "south never consumed: behind by every event"
        assert fleet["north"]["reported"] == {"ready": True, "lag": 0, "offline_queue": 0}
        assert fleet["north"]["seconds_since_seen"] < 60
        assert fleet["south"]["last_seen"] is None

        for quantity in (1, 2, 3):
            h.call("PUT", "/api/v1/stock/A", admin, json={"quantity": quantity})
        eventually(lambda: h.central.relay.backlog() == 0, what="outbox drained")
        assert by_store(h, admin)["north"]["lag"] == 3
        commit_everything(kafka_cluster, topic_prefix, "north", keys["north"])
        assert by_store(h, admin)["north"]["lag"] == 0
