"""Deactivating a store revokes all its API keys at once, Kafka users included (through the
revocation queue, so Kafka being down loses none); activating it brings back none of them."""

from __future__ import annotations

import pytest

from central.app import bootstrap
from central.revocations import RevocationRetrier
from central.services import accounts
from central.services.identities import pending_revocations
from central.settings import Settings
from invwire.errors.central import AuthInvalid, StoreInactive, StoreNotFound
from invwire.identity import kafka_username
from tests.support.central_fakes import FakeClock, FakePublisher
from tests.support.kafka_identities_fake import FakeKafkaIdentities


@pytest.fixture
def kafka():
    return FakeKafkaIdentities(topic_prefix="t.")


@pytest.fixture
def central(tmp_path, kafka):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'central.db'}", jwt_secret="k" * 32)
    app = bootstrap(
        settings, publisher=FakePublisher(), clock=FakeClock(), with_relay=False, identities=kafka
    )
    yield app
    app.close()


@pytest.fixture
def store(central, kafka):
    """store-1 with two keys."""
    first = accounts.create_store(central.uow(), "store-1", "One", kafka)
    second = accounts.rotate_key(central.uow(), "store-1", kafka)
    return [first, second]


def refused(central, api_key: str) -> bool:
    try:
        accounts.store_principal(central.uow(), api_key)
    except AuthInvalid:
        return True
    return False


def test_deactivating_revokes_every_key_and_its_kafka_user_at_once(central, kafka, store):
    answer = accounts.deactivate_store(central.uow(), "store-1", kafka)

    assert (answer["active"], answer["active_keys"], answer["revoked_keys"]) == (False, 0, 2)
    assert all(refused(central, key["api_key"]) for key in store)
    assert kafka.users() == set()
    assert pending_revocations(central.uow()) == []


def test_while_kafka_is_down_the_kafka_users_wait_in_the_queue(central, kafka, store):
    kafka.down = True

    accounts.deactivate_store(central.uow(), "store-1", kafka)

    usernames = sorted(kafka_username("store-1", key["api_key"]) for key in store)
    assert all(refused(central, key["api_key"]) for key in store)
    assert pending_revocations(central.uow()) == usernames
    kafka.down = False
    assert RevocationRetrier(central.uow, kafka).run_once() == 2
    assert kafka.users() == set()


def test_deactivating_twice_revokes_nothing_more(central, kafka, store):
    accounts.deactivate_store(central.uow(), "store-1", kafka)
    kafka.removed.clear()

    again = accounts.deactivate_store(central.uow(), "store-1", kafka)

    assert (again["active"], again["revoked_keys"]) == (False, 0)
    assert kafka.removed == []


def test_an_inactive_store_gets_no_new_key_and_kafka_no_new_user(central, kafka, store):
    accounts.deactivate_store(central.uow(), "store-1", kafka)

    with pytest.raises(StoreInactive) as inactive:
        accounts.rotate_key(central.uow(), "store-1", kafka)

    assert (inactive.value.code, inactive.value.status) == ("store.inactive", 409)
    assert kafka.users() == set()


def test_a_deactivation_while_a_key_is_being_issued_takes_the_new_kafka_user_back(
    central, kafka, store
):
    kafka.after_provision = lambda _username: accounts.deactivate_store(
        central.uow(), "store-1", None
    )

    with pytest.raises(StoreInactive):
        accounts.rotate_key(central.uow(), "store-1", kafka)

    issued = {kafka_username("store-1", key["api_key"]) for key in store}
    assert kafka.users() == issued, "only the keys of before; the new one's user is gone"


def test_activating_brings_the_store_back_without_its_old_keys(central, kafka, store):
    accounts.deactivate_store(central.uow(), "store-1", kafka)

    answer = accounts.activate_store(central.uow(), "store-1")
    fresh = accounts.rotate_key(central.uow(), "store-1", kafka)

    assert (answer["active"], answer["active_keys"]) == (True, 0)
    assert all(refused(central, key["api_key"]) for key in store)
    assert accounts.store_principal(central.uow(), fresh["api_key"]).store_id == "store-1"


def test_the_store_list_shows_which_stores_are_active(central, kafka, store):
    accounts.create_store(central.uow(), "store-2", "Two", kafka)
    accounts.deactivate_store(central.uow(), "store-1", kafka)

    listed = {s["id"]: (s["active"], s["active_keys"]) for s in accounts.list_stores(central.uow())}

    assert listed == {"store-1": (False, 0), "store-2": (True, 1)}


@pytest.mark.parametrize(
    "change",
    [
        lambda uow, kafka: accounts.deactivate_store(uow, "no-such-store", kafka),
        lambda uow, kafka: accounts.activate_store(uow, "no-such-store"),
    ],
)
def test_an_unknown_store_is_store_not_found(central, kafka, change):
    with pytest.raises(StoreNotFound):
        change(central.uow(), kafka)
