"""A topic added to the wire (order-updated) reaches the store keys issued before it: before
the relay's first publish, every active key of an active store gets the store grants of today;
revoked keys and deactivated stores get nothing back."""

from __future__ import annotations

import pytest

from central.app import bootstrap, relay_access
from central.domain.kafka_access import Grant, Operation, Resource, store_grants
from central.services import accounts
from central.services.identities import grant_store_access
from central.settings import Settings
from invwire.identity import kafka_username
from tests.support.central_fakes import FakeClock, FakePublisher
from tests.support.kafka_identities_fake import FakeKafkaIdentities

PREFIX = "t."


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


def order_topic_read(username: str) -> Grant:
    return Grant(Resource.TOPIC, PREFIX + "order-updated", Operation.READ)


def issued_before_the_topic(kafka: FakeKafkaIdentities, username: str) -> None:
    """The key's ACLs as central gave them before order-updated existed."""
    kafka.acls[username] = {g for g in kafka.acls[username] if "order-updated" not in g.name}


def test_keys_issued_before_the_topic_get_read_on_it_and_nothing_else_changes(central, kafka):
    kept = accounts.create_store(central.uow(), "store-1", "One", kafka)
    username = kafka_username("store-1", kept["api_key"])
    issued_before_the_topic(kafka, username)

    granted = grant_store_access(central.db, kafka)

    assert granted == 1
    assert order_topic_read(username) in kafka.acls[username]
    assert kafka.acls[username] == set(store_grants("store-1", PREFIX))


def test_revoked_keys_and_deactivated_stores_get_nothing_back(central, kafka):
    revoked = accounts.create_store(central.uow(), "store-1", "One", kafka)
    accounts.rotate_key(central.uow(), "store-1", kafka)
    accounts.revoke_key(central.uow(), "store-1", revoked["key_id"], kafka)
    accounts.create_store(central.uow(), "store-2", "Two", kafka)
    accounts.deactivate_store(central.uow(), "store-2", kafka)
    before = {user: set(grants) for user, grants in kafka.acls.items()}

    granted = grant_store_access(central.db, kafka)

    assert granted == 1  # store-1's rotated key only
    assert kafka.acls == before
    assert kafka_username("store-1", revoked["api_key"]) not in kafka.acls


def test_the_relays_preparation_grants_the_stores_even_when_it_runs_as_the_admin(central, kafka):
    made = accounts.create_store(central.uow(), "store-1", "One", kafka)
    username = kafka_username("store-1", made["api_key"])
    issued_before_the_topic(kafka, username)
    settings = Settings(
        database_url="sqlite://",
        jwt_secret="k" * 32,
        kafka_username="admin",
        kafka_admin_username="admin",
    )

    prepare = relay_access(settings, kafka, central.db)

    assert prepare is not None
    prepare()
    assert order_topic_read(username) in kafka.acls[username]
