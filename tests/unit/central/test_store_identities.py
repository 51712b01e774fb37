"""Each store key gets its own Kafka user, made before the key is saved and deleted when the
key is revoked; Kafka being down refuses a new key and never loses a revocation."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from central.api import create_app
from central.app import bootstrap
from central.domain.kafka_access import Grant, Operation, Resource
from central.models import ApiKey, Store
from central.revocations import RevocationRetrier
from central.security import hash_api_key
from central.services import accounts
from central.services.identities import key_username, pending_revocations
from central.settings import Settings
from harness.waiting import eventually
from invwire.errors.central import AuthInvalid, KafkaUnavailable, StoreExists, StoreNotFound
from invwire.identity import consumer_group, kafka_username
from tests.support.central_fakes import FakeClock, FakePublisher
from tests.support.kafka_identities_fake import FakeKafkaIdentities

PREFIX = "t."
READ, WRITE, DESCRIBE = Operation.READ, Operation.WRITE, Operation.DESCRIBE


@pytest.fixture
def kafka():
    return FakeKafkaIdentities(topic_prefix=PREFIX)


@pytest.fixture
def central(tmp_path, kafka):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'central.db'}", jwt_secret="k" * 32)
    app = bootstrap(
        settings, publisher=FakePublisher(), clock=FakeClock(), with_relay=False, identities=kafka
    )
    yield app
    app.close()


@pytest.fixture
def client(central):
    accounts.create_user(central.uow(), accounts.NewUser("root", "root-password-1", "admin"))
    with TestClient(create_app(central, manage_relay=False)) as client:
        token = client.post(
            "/api/v1/auth/token", data={"username": "root", "password": "root-password-1"}
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def store_grants(store_id: str) -> set[Grant]:
    topics = ["t.new-category", "t.new-product", "t.inventory-updated", "t.order-updated"]
    return {Grant(Resource.TOPIC, t, op) for t in topics for op in (READ, DESCRIBE)} | {
        Grant(Resource.GROUP, f"storeagent.{store_id}", READ)
    }


def stores_and_keys(central) -> tuple[list[str], int]:
    with central.db.connection_context():
        return [s.id for s in Store.select()], ApiKey.select().count()


def test_the_username_is_the_store_id_and_the_first_16_hex_of_the_keys_sha256():
    key = "ik_example"
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16]
    assert kafka_username("store-042", key) == f"store.store-042.{fingerprint}"
    assert key_username("store-042", hash_api_key(key)) == kafka_username("store-042", key)
    assert consumer_group("store-042") == "storeagent.store-042"


def test_adding_a_store_gives_its_key_a_user_that_may_only_read_the_topics_and_its_group(
    central, kafka
):
    made = accounts.create_store(central.uow(), "store-1", "One", kafka)
    username = kafka_username("store-1", made["api_key"])
    assert kafka.passwords == {username: made["api_key"]}
    assert kafka.acls == {username: store_grants("store-1")}
    assert made["kafka_username"] == username


def test_without_kafka_identities_the_answer_names_no_kafka_user(central):
    made = accounts.create_store(central.uow(), "store-1", "One", None)
    rotated = accounts.rotate_key(central.uow(), "store-1", None)
    assert made["kafka_username"] is None and rotated["kafka_username"] is None


def test_rotating_provisions_the_new_key_and_keeps_the_old_until_revoked(central, kafka):
    first = accounts.create_store(central.uow(), "store-1", "One", kafka)
    second = accounts.rotate_key(central.uow(), "store-1", kafka)
    old, new = (kafka_username("store-1", k["api_key"]) for k in (first, second))
    assert old != new
    assert kafka.passwords == {old: first["api_key"], new: second["api_key"]}

    accounts.revoke_key(central.uow(), "store-1", first["key_id"], kafka)
    assert kafka.users() == {new}
    assert kafka.acls[new] == store_grants("store-1")
    assert pending_revocations(central.uow()) == []


def test_revoking_a_revoked_key_again_changes_nothing(central, kafka):
    made = accounts.create_store(central.uow(), "store-1", "One", kafka)
    accounts.revoke_key(central.uow(), "store-1", made["key_id"], kafka)
    kafka.removed.clear()
    accounts.revoke_key(central.uow(), "store-1", made["key_id"], kafka)
    assert kafka.removed == []
    assert pending_revocations(central.uow()) == []


def test_kafka_down_refuses_a_new_store_with_503_and_creates_nothing(central, kafka, client):
    kafka.down = True
    response = client.post("/api/v1/stores", json={"id": "store-1", "name": "One"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "kafka.unavailable"
    assert stores_and_keys(central) == ([], 0)
    assert kafka.users() == set()


def test_kafka_down_refuses_a_new_key_with_503_and_the_old_one_still_works(central, kafka, client):
    made = client.post("/api/v1/stores", json={"id": "store-1", "name": "One"}).json()
    kafka.down = True
    response = client.post("/api/v1/stores/store-1/keys")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "kafka.unavailable"
    assert stores_and_keys(central) == (["store-1"], 1)
    assert kafka.users() == {kafka_username("store-1", made["api_key"])}
    assert accounts.store_principal(central.uow(), made["api_key"]).store_id == "store-1"


def test_a_half_made_user_is_queued_for_removal_and_the_store_is_not_created(central, kafka):
    kafka.half_made = True
    with pytest.raises(KafkaUnavailable):
        accounts.create_store(central.uow(), "store-1", "One", kafka)
    assert stores_and_keys(central) == ([], 0)
    (username,) = kafka.users()
    assert pending_revocations(central.uow()) == [username]

    RevocationRetrier(central.uow, kafka).run_once()
    assert kafka.users() == set()
    assert pending_revocations(central.uow()) == []


def test_a_store_whose_transaction_fails_after_provisioning_loses_its_new_user(central, kafka):
    def rival_creates_the_store(_: str) -> None:
        with central.uow():
            Store.create(id="store-1", name="Rival")

    kafka.after_provision = rival_creates_the_store
    with pytest.raises(StoreExists):
        accounts.create_store(central.uow(), "store-1", "One", kafka)
    assert kafka.users() == set()
    assert len(kafka.removed) == 1
    assert pending_revocations(central.uow()) == []


def test_a_key_whose_transaction_fails_after_provisioning_loses_its_new_user(central, kafka):
    made = accounts.create_store(central.uow(), "store-1", "One", kafka)

    def store_vanishes(_: str) -> None:
        with central.uow():
            ApiKey.delete().execute()
            Store.delete().execute()

    kafka.after_provision = store_vanishes
    with pytest.raises(StoreNotFound):
        accounts.rotate_key(central.uow(), "store-1", kafka)
    assert kafka.users() == {kafka_username("store-1", made["api_key"])}


def test_compensation_kafka_cannot_take_is_queued_and_drained_later(central, kafka):
    def rival_then_kafka_goes_down(_: str) -> None:
        with central.uow():
            Store.create(id="store-1", name="Rival")
        kafka.down = True

    kafka.after_provision = rival_then_kafka_goes_down
    with pytest.raises(StoreExists):
        accounts.create_store(central.uow(), "store-1", "One", kafka)
    (orphan,) = kafka.users()
    assert pending_revocations(central.uow()) == [orphan]

    kafka.down = False
    assert RevocationRetrier(central.uow, kafka).run_once() == 1
    assert kafka.users() == set()
    assert pending_revocations(central.uow()) == []


def test_a_revocation_kafka_cannot_take_is_kept_and_retried_until_it_is(central, kafka):
    made = accounts.create_store(central.uow(), "store-1", "One", kafka)
    username = kafka_username("store-1", made["api_key"])
    kafka.down = True

    accounts.revoke_key(central.uow(), "store-1", made["key_id"], kafka)
    with pytest.raises(AuthInvalid):
        accounts.store_principal(central.uow(), made["api_key"])
    assert username in kafka.users()
    assert pending_revocations(central.uow()) == [username]

    retrier = RevocationRetrier(central.uow, kafka)
    with pytest.raises(KafkaUnavailable):
        retrier.run_once()
    assert pending_revocations(central.uow()) == [username]

    kafka.down = False
    assert retrier.run_once() == 1
    assert kafka.users() == set()
    assert pending_revocations(central.uow()) == []


def test_the_retrier_thread_drains_pending_revocations_once_kafka_is_back(central, kafka):
    keys = [accounts.create_store(central.uow(), f"store-{i}", "S", kafka) for i in range(3)]
    kafka.down = True
    for i, made in enumerate(keys):
        accounts.revoke_key(central.uow(), f"store-{i}", made["key_id"], kafka)
    assert len(pending_revocations(central.uow())) == 3

    central.revocations = RevocationRetrier(central.uow, kafka, poll_seconds=0.05)
    central.start_revocations()
    kafka.down = False
    central.revocations.wake()
    eventually(lambda: pending_revocations(central.uow()) == [], 10, "revocations drained")
    assert kafka.users() == set()


def test_revoke_over_http_answers_204_even_while_kafka_is_down(central, kafka, client):
    made = client.post("/api/v1/stores", json={"id": "store-1", "name": "One"}).json()
    kafka.down = True
    response = client.delete(f"/api/v1/stores/store-1/keys/{made['key_id']}")
    assert response.status_code == 204
    assert pending_revocations(central.uow()) == [kafka_username("store-1", made["api_key"])]


def test_without_an_admin_credential_stores_and_keys_work_as_before(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", jwt_secret="k" * 32)
    app = bootstrap(settings, publisher=FakePublisher(), with_relay=False)
    try:
        assert app.identities is None and app.revocations is None
        made = accounts.create_store(app.uow(), "store-1", "One", app.identities)
        again = accounts.rotate_key(app.uow(), "store-1", app.identities)
        accounts.revoke_key(app.uow(), "store-1", made["key_id"], app.identities)
        assert accounts.store_principal(app.uow(), again["api_key"]).store_id == "store-1"
        assert pending_revocations(app.uow()) == []
    finally:
        app.close()


def test_the_api_key_is_stored_only_as_its_hash(central, kafka):
    made = accounts.create_store(central.uow(), "store-1", "One", kafka)
    with central.db.connection_context():
        row = ApiKey.get_by_id(made["key_id"])
    assert row.key_hash == hash_api_key(made["api_key"])
    assert made["api_key"] not in (row.key_hash, row.prefix)
