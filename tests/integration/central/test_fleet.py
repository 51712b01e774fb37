"""The fleet view: lag per store from its Kafka group, last-seen from its heartbeats."""

from datetime import UTC, datetime, timedelta

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from central import migrations, models
from central.db import connect
from harness.waiting import eventually
from invwire.identity import consumer_group
from invwire.topics import TOPIC_CATEGORY, TOPIC_INVENTORY, TOPIC_PRODUCT
from tests.support.central_harness import running_central

TOPICS = [TOPIC_CATEGORY, TOPIC_PRODUCT, TOPIC_INVENTORY]


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
        assert response.status_code == 200 and "server_time" in response.json()

        fleet = by_store(h, admin)
        assert fleet["north"]["lag"] == 0
        assert fleet["south"]["lag"] == 2, "south never consumed: behind by every event"
        assert fleet["north"]["reported"] == {"ready": True, "lag": 0, "offline_queue": 0}
        assert fleet["north"]["seconds_since_seen"] < 60
        assert fleet["south"]["last_seen"] is None

        for quantity in (1, 2, 3):
            h.call("PUT", "/api/v1/stock/A", admin, json={"quantity": quantity})
        eventually(lambda: h.central.relay.backlog() == 0, what="outbox drained")
        # The lags are read again once the kept reading is LAG_CACHE_S old.
        eventually(lambda: by_store(h, admin)["north"]["lag"] == 3, what="north 3 behind")
        commit_everything(kafka_cluster, topic_prefix, "north", keys["north"])
        eventually(lambda: by_store(h, admin)["north"]["lag"] == 0, what="north caught up")


def test_the_answer_says_when_the_lags_were_read(database_url, kafka_cluster, topic_prefix):
    with running_central(database_url, kafka_cluster, topic_prefix) as h:
        admin = h.admin()
        h.call("POST", "/api/v1/stores", admin, json={"id": "east", "name": "east"})
        answer = h.call("GET", "/api/v1/sync/stores", admin)

    read_at = datetime.fromisoformat(answer["lag_as_of"])
    assert answer["kafka"] == "ok" and answer["items"][0]["lag"] is not None
    assert abs((datetime.now(UTC) - read_at).total_seconds()) < 60


def test_two_agents_at_once_are_flagged_on_each_database(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        key = h.call("POST", "/api/v1/stores", admin, json={"id": "north", "name": "N"})
        beat = heartbeat_of(h, key["api_key"])
        first = beat("a" * 32)["server_time"]
        beat("a" * 32)
        alone = by_store(h, admin)["north"]
        beat("b" * 32)
        beat("a" * 32)
        together = by_store(h, admin)["north"]

    assert (alone["problems"], alone["ready"]) == ([], True)
    answered_at, first_seen = (
        datetime.fromisoformat(t) for t in (first, alone["instances"][0]["first_seen"])
    )
    assert first.endswith("+00:00") and len(first.split(".")[1]) == len("123+00:00"), first
    assert answered_at > first_seen - timedelta(milliseconds=1), "central answers once it recorded"
    assert alone["instances"][0]["first_seen"] != alone["instances"][0]["last_seen"]
    assert [(p["code"], sorted(p["instance_ids"])) for p in together["problems"]] == [
        ("duplicate_agents", ["a" * 32, "b" * 32])
    ]
    assert together["ready"] is False
    assert {i["instance_id"]: i["first_seen"] for i in together["instances"]}["a" * 32] == (
        alone["instances"][0]["first_seen"]
    ), "a heartbeat does not move the instance's first one"


def heartbeat_of(h, api_key):
    def beat(instance_id):
        body = {"ready": True, "instance_id": instance_id, "every_s": 30.0}
        response = h.client.post(
            "/api/v1/stores/heartbeat", headers={"X-API-Key": api_key}, json=body
        )
        assert response.status_code == 200, response.text
        return response.json()

    return beat


def test_migration_6_adds_the_agent_instances_to_a_database_from_before(database_url):
    db = connect(database_url)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    with db.connection_context():
        db.create_tables([models.SchemaMigration])
        for version, name, step in migrations.MIGRATIONS[:5]:
            step(db)
            models.SchemaMigration.create(version=version, name=name)

    assert migrations.migrate(db)[0] == 6, "6 and any later ones"
    with db.connection_context():
        assert db.table_exists("agent_instances")
        columns = {column.name for column in db.get_columns("agent_instances")}
    db.close()
    assert {"store_id", "instance_id", "first_seen", "last_seen", "every_s", "report"} <= columns


def test_the_fleet_view_shows_each_store_s_allowance_units_held_and_used(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        key = h.call("POST", "/api/v1/stores", admin, json={"id": "north", "name": "N"})
        body = {"ready": True, "allowance_units_held": 12, "allowance_units_used": 5}
        response = h.client.post(
            "/api/v1/stores/heartbeat", headers={"X-API-Key": key["api_key"]}, json=body
        )
        assert response.status_code == 200, response.text
        reported = by_store(h, admin)["north"]["reported"]

    assert (reported["allowance_units_held"], reported["allowance_units_used"]) == (12, 5)
