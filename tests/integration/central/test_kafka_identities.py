"""Against a real TLS + SASL/SCRAM broker with ACLs: a store's API key is its Kafka login,
good for reading the topics and committing in its own group and nothing else; a key issued
before a topic existed is granted it when the relay starts; a revoked key no longer logs in;
the relay publishes as its own, write-only user."""

from __future__ import annotations

import json
import secrets
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ACLOperation, ACLPermissionType
from kafka.errors import (
    GroupAuthorizationFailedError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)
from kafka.structs import OffsetAndMetadata

from central.api import create_app
from central.app import Central, bootstrap
from central.domain.kafka_access import store_grants
from central.kafka import every_acl_of, grant_acl
from central.services import accounts
from central.services.identities import grant_store_access, pending_revocations
from central.settings import Settings, load
from harness.waiting import eventually
from invwire.identity import consumer_group, kafka_username
from invwire.topics import PARTITIONS, TOPICS
from invwire.topics import TOPIC_ORDER as ORDERS

RELAY_USER = "central-relay"
ADMIN_PASSWORD = "admin-password-1"


def read_client_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = shlex.split(value)[0]
    return env


@pytest.fixture(scope="module")
def secure_kafka(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_script: Callable[..., Any],
    free_kafka_port: Callable[[int], int],
) -> Iterator[dict[str, str]]:
    """A 1-node TLS + SCRAM-SHA-512 broker with ACLs; its client.env (the admin's login)."""
    cluster = tmp_path_factory.mktemp("kafka-sasl-ssl")
    started = kafka_script(
        "start", "--dir", str(cluster), "--port", str(free_kafka_port(1)), "--security", "sasl_ssl"
    )
    if started.returncode != 0:
        pytest.fail(f"scripts/kafka start --security sasl_ssl failed:\n{started.stderr}")
    try:
        yield read_client_env(cluster / "client.env")
    finally:
        kafka_script("stop", "--dir", str(cluster))


@dataclass
class Secure:
    central: Central
    client: TestClient
    settings: Settings
    headers: dict[str, str]

    @property
    def topics(self) -> list[str]:
        return [self.settings.topic(t) for t in TOPICS]

    def call(self, method: str, path: str, **kw: Any) -> Any:
        response = self.client.request(method, path, headers=self.headers, **kw)
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def new_store(self, store_id: str) -> dict[str, Any]:
        made = self.call("POST", "/api/v1/stores", json={"id": store_id, "name": store_id})
        return dict(made)

    def security(self, username: str, password: str) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.settings.kafka,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": username,
            "sasl_plain_password": password,
            "ssl_cafile": self.settings.kafka_ca_file,
            "bootstrap_timeout_ms": 5000,
            "request_timeout_ms": 10000,
        }

    def admin(self) -> KafkaAdminClient:
        s = self.settings
        return KafkaAdminClient(**self.security(s.kafka_admin_username, s.kafka_admin_password))


@pytest.fixture(scope="module")
def secure(
    secure_kafka: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secure]:
    """Central on SQLite with the broker's admin as its admin credential and its own relay
    user, with one record on each of the topics."""
    home = tmp_path_factory.mktemp("central")
    relay_password = home / "relay.password"
    relay_password.write_text(secrets.token_hex(16))
    relay_password.chmod(0o600)
    env = {
        **secure_kafka,
        "INVCTL_KAFKA_ADMIN_USERNAME": secure_kafka["INVCTL_KAFKA_USERNAME"],
        "INVCTL_KAFKA_ADMIN_PASSWORD_FILE": secure_kafka["INVCTL_KAFKA_PASSWORD_FILE"],
        "INVCTL_KAFKA_USERNAME": RELAY_USER,
        "INVCTL_KAFKA_PASSWORD_FILE": str(relay_password),
        "INVCTL_JWT_SECRET": secrets.token_hex(32),
        "INVCTL_DATABASE_URL": f"sqlite:///{home / 'central.db'}",
        "INVCTL_TOPIC_PREFIX": f"t{secrets.token_hex(4)}.",
    }
    settings = replace(load(env=env), relay_poll_seconds=0.2)
    central = bootstrap(settings)
    accounts.create_user(central.uow(), accounts.NewUser("admin", ADMIN_PASSWORD, "admin"))
    try:
        with TestClient(create_app(central)) as client:
            token = client.post(
                "/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}
            ).json()["access_token"]
            secure = Secure(central, client, settings, {"Authorization": f"Bearer {token}"})
            category = secure.call("POST", "/api/v1/categories", json={"name": "Dairy"})
            secure.call(
                "POST",
                "/api/v1/products",
                json={
                    "sku": "MILK-1L",
                    "name": "Milk",
                    "price": "1.25",
                    "category_id": category["id"],
                },
            )
            secure.call("PUT", "/api/v1/stock/MILK-1L", json={"quantity": 10})
            _cancelled_order(secure)
            yield secure
    finally:
        central.close()


def _cancelled_order(secure: Secure) -> None:
    """A record on order-updated too: an order of a store of its own, cancelled."""
    key = secure.new_store("s-fixture")["api_key"]
    placed = secure.client.post(
        "/api/v1/orders",
        json={"lines": [{"sku": "MILK-1L", "quantity": 1}]},
        headers={"X-API-Key": key, "Idempotency-Key": "fixture-1"},
    )
    assert placed.status_code == 201, placed.text
    secure.call("POST", f"/api/v1/orders/{placed.json()['id']}/cancel")


@pytest.fixture
def store_id(unique_id: str) -> str:
    return f"s-{unique_id}"


def store_consumer(secure: Secure, store_id: str, api_key: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        group_id=group,
        enable_auto_commit=False,
        **secure.security(kafka_username(store_id, api_key), api_key),
    )


def assign_from_start(consumer: KafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(eventually(lambda t=topic: consumer.partitions_for_topic(t), 30, topic))
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return partitions


def read_until(consumer: KafkaConsumer, enough: Callable[[list[Any]], bool]) -> list[Any]:
    records: list[Any] = []

    def arrived() -> bool:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
        return enough(records)

    eventually(arrived, 30, "records", interval=0)
    return records


def test_a_stores_key_reads_the_topics_and_commits_in_its_own_group(secure, store_id):
    key = secure.new_store(store_id)["api_key"]
    consumer = store_consumer(secure, store_id, key, consumer_group(store_id))
    try:
        partitions = assign_from_start(consumer, secure.topics)
        records = read_until(consumer, lambda rs: {r.topic for r in rs} == set(secure.topics))
        assert {r.topic for r in records} == set(secure.topics)
        positions = {tp: consumer.position(tp) for tp in partitions}
        consumer.commit({tp: OffsetAndMetadata(p, "", -1) for tp, p in positions.items()})
        assert {tp: consumer.committed(tp) for tp in partitions} == positions
    finally:
        consumer.close()
    fleet = secure.call("GET", "/api/v1/sync/stores")
    (row,) = [item for item in fleet["items"] if item["store_id"] == store_id]
    assert (fleet["kafka"], row["group"], row["lag"]) == ("ok", consumer_group(store_id), 0)


def test_a_stores_key_cannot_produce_to_any_topic(secure, store_id):
    key = secure.new_store(store_id)["api_key"]
    producer = KafkaProducer(
        acks=1,
        enable_idempotence=False,
        max_block_ms=10000,
        **secure.security(kafka_username(store_id, key), key),
    )
    try:
        for topic in secure.topics:
            with pytest.raises(TopicAuthorizationFailedError):
                producer.send(topic, key=b"MILK-1L", value=b"{}").get(timeout=15)
    finally:
        producer.close(timeout=5)


def test_a_stores_key_cannot_use_another_stores_group(secure, store_id):
    key = secure.new_store(store_id)["api_key"]
    secure.new_store(f"{store_id}-b")
    consumer = store_consumer(secure, store_id, key, consumer_group(f"{store_id}-b"))
    try:
        (partition, *_) = assign_from_start(consumer, secure.topics)
        with pytest.raises(GroupAuthorizationFailedError):
            consumer.commit({partition: OffsetAndMetadata(0, "", -1)})
        with pytest.raises(GroupAuthorizationFailedError):
            consumer.committed(partition)
    finally:
        consumer.close()


def test_a_stores_key_cannot_read_a_fourth_topic(secure, store_id):
    other = secure.settings.topic("secrets")
    admin = secure.admin()
    try:
        admin.create_topics({other: {"num_partitions": 1, "replication_factor": 1}})
    finally:
        admin.close()
    key = secure.new_store(store_id)["api_key"]
    consumer = store_consumer(secure, store_id, key, consumer_group(store_id))
    try:
        assert not consumer.partitions_for_topic(other)
        consumer.assign([TopicPartition(other, 0)])
        with pytest.raises(TopicAuthorizationFailedError):
            consumer.poll(timeout_ms=5000)
    finally:
        consumer.close()


def test_a_revoked_key_can_no_longer_log_in_and_the_rotated_one_still_can(secure, store_id):
    old = secure.new_store(store_id)
    new = secure.call("POST", f"/api/v1/stores/{store_id}/keys")
    secure.call("DELETE", f"/api/v1/stores/{store_id}/keys/{old['key_id']}")

    old_user = kafka_username(store_id, old["api_key"])
    new_user = kafka_username(store_id, new["api_key"])
    admin = secure.admin()
    try:
        described = admin.describe_user_scram_credentials([old_user])[old_user]
        acls, _ = admin.describe_acls(every_acl_of(old_user))
        kept, _ = admin.describe_acls(every_acl_of(new_user))
    finally:
        admin.close()
    assert described["credential_infos"] == [] and described["error"]
    assert acls == [] and kept  # the filter finds a user's ACLs where there are some
    assert pending_revocations(secure.central.uow()) == []

    with pytest.raises(KafkaTimeoutError):
        store_consumer(secure, store_id, old["api_key"], consumer_group(store_id)).topics()
    consumer = store_consumer(secure, store_id, new["api_key"], consumer_group(store_id))
    try:
        assign_from_start(consumer, secure.topics)
        assert read_until(consumer, lambda rs: len(rs) > 0)
    finally:
        consumer.close()


def test_the_relay_publishes_as_its_own_user_that_may_only_write_the_three_topics(secure, store_id):
    key = secure.new_store(store_id)["api_key"]
    secure.call("PUT", "/api/v1/stock/MILK-1L", json={"quantity": 77})
    consumer = store_consumer(secure, store_id, key, consumer_group(store_id))
    try:
        assign_from_start(consumer, [secure.settings.topic("inventory-updated")])
        read_until(consumer, lambda rs: any(_quantity(r.value) == 77 for r in rs))
    finally:
        consumer.close()

    admin = secure.admin()
    try:
        acls, _ = admin.describe_acls(every_acl_of(RELAY_USER))
    finally:
        admin.close()
    granted = {(a.resource_pattern.resource_name, a.operation, a.permission_type) for a in acls}
    allow = ACLPermissionType.ALLOW
    assert granted == {
        (topic, op, allow)
        for topic in secure.topics
        for op in (ACLOperation.WRITE, ACLOperation.DESCRIBE)
    }


def _quantity(value: bytes) -> Any:
    return json.loads(value)["data"].get("quantity")


def test_a_key_issued_before_order_updated_is_granted_it_when_the_relay_starts(secure, store_id):
    """As after an upgrade: the key's user has no ACL on order-updated until central grants
    every active key the store grants of today (services.identities.grant_store_access)."""
    key = secure.new_store(store_id)["api_key"]
    username = kafka_username(store_id, key)
    order_topic = secure.settings.topic(ORDERS)
    grants = store_grants(store_id, secure.settings.topic_prefix)
    order_acls = [grant_acl(username, g) for g in grants if g.name == order_topic]
    admin = secure.admin()
    try:
        deleted = admin.delete_acls(order_acls)
        assert order_acls and not any(error.errno for _, _, error in deleted)
    finally:
        admin.close()
    consumer = store_consumer(secure, store_id, key, consumer_group(store_id))
    try:
        consumer.assign([TopicPartition(order_topic, p) for p in range(PARTITIONS[ORDERS])])
        eventually(lambda: _refused(consumer, order_topic), 30, "the ACL gone")

        assert secure.central.identities is not None
        granted = grant_store_access(secure.central.db, secure.central.identities)

        assert granted >= 1
        consumer.seek_to_beginning()
        assert read_until(consumer, lambda rs: any(r.topic == order_topic for r in rs))
    finally:
        consumer.close()


def _refused(consumer: KafkaConsumer, topic: str) -> bool:
    try:
        consumer.end_offsets([TopicPartition(topic, 0)])
    except TopicAuthorizationFailedError:
        return True
    return False
