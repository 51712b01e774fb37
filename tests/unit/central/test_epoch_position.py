"""The epoch on the wire and a central that refuses to run behind Kafka: record headers,
`Invctl-Epoch` on every answer, the position check at start and when the relay takes its
lease, the republish at a new epoch, and `central confirm-restore`."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from kafka.errors import KafkaConnectionError

from central.api import create_app
from central.app import bootstrap
from central.confirm_restore import confirm_restored
from central.epochs import current_epoch, start_confirmed_epoch
from central.kafka import record_headers
from central.kafka_position import (
    UNMARKED,
    Position,
    PositionUnreadable,
    check_at_start,
    database_position,
    record_position,
    refuse_if_behind,
)
from central.models import Epoch, Outbox, RelayLease, utcnow
from central.outbox import OutboxRecord, Relay, relay_state
from central.services import accounts, catalog, inventory
from invwire.errors.central import BehindKafka, CentralRunning, RecoveryRefused, RestoreUnconfirmed
from invwire.headers import EPOCH_HEADER, SEQ_HEADER, header_int
from tests.support.central_fakes import FakePositions, FakePublisher

from .conftest import ADMIN


def make_catalog(central, skus=("A", "B")):
    cat = catalog.create_category(central.uow(), "Dairy")
    for sku in skus:
        catalog.create_product(
            central.uow(),
            catalog.NewProduct(sku=sku, name=f"Product {sku}", price="2.50", category_id=cat["id"]),
        )
        inventory.set_stock(central.uow(), ADMIN, sku, 10)


def highest_outbox_id(central):
    with central.db.connection_context():
        return Outbox.select().order_by(Outbox.id.desc()).first().id


def positioned_relay(central, publisher, clock, positions, **kw):
    return Relay(
        central.db,
        publisher,
        clock,
        epoch=central.epoch,
        positions=positions,
        lease_seconds=60,
        **kw,
    )


def at_new_epoch(central, settings_db_url, publisher, clock):
    """The same database after `central confirm-restore`, opened as a restarted central."""
    central.close()
    start_confirmed_epoch(central.db, clock.now())
    settings = replace(central.settings, database_url=settings_db_url)
    return bootstrap(settings, publisher=publisher, clock=clock, with_relay=True)


# --- the headers ---------------------------------------------------------------------------


def test_every_record_carries_its_event_id_epoch_and_outbox_id():
    record = OutboxRecord(17, "e-17", "inventory-updated", "A", "{}", epoch=3)

    headers = record_headers(record)

    assert headers == [("event_id", b"e-17"), ("invctl-epoch", b"3"), ("invctl-seq", b"17")]
    assert header_int(headers, EPOCH_HEADER) == 3 and header_int(headers, SEQ_HEADER) == 17


def test_the_relay_hands_the_publisher_records_of_the_database_epoch(central, publisher, clock):
    make_catalog(central, skus=("A",))
    central.relay.run_once()
    assert {r.epoch for r in publisher.published} == {1}

    url = central.settings.database_url
    restarted = at_new_epoch(central, url, publisher, clock)
    try:
        inventory.set_stock(restarted.uow(), ADMIN, "A", 11)
        restarted.relay.run_once()
    finally:
        restarted.close()

    assert restarted.epoch == 2
    assert publisher.published[-1].epoch == 2


def test_a_record_position_is_read_from_its_headers_and_unmarked_without_them():
    assert record_position([(EPOCH_HEADER, b"2"), (SEQ_HEADER, b"40")]) == Position(2, 40)
    assert record_position([("event_id", b"x")]) == UNMARKED
    assert record_position([(EPOCH_HEADER, b"2")]) == Position(2, 0)
    assert record_position([(EPOCH_HEADER, b"two"), (SEQ_HEADER, b"40")]) == UNMARKED
    assert Position(1, 500) < Position(2, 1), "the epoch counts first"


# --- Invctl-Epoch on every answer ----------------------------------------------------------


def test_every_answer_of_central_says_its_epoch(central):
    accounts.create_user(central.uow(), accounts.NewUser("root", "root-password-1", "admin"))
    central.settings = replace(central.settings, max_body_bytes=64)
    with TestClient(create_app(central, manage_relay=False)) as client:
        answers = [
            client.get("/healthz"),
            client.get("/readyz"),
            client.get("/api/v1/products"),  # 401
            client.get("/no/such/route"),  # 404
            client.post("/api/v1/auth/token", content=b"x" * 100),  # 413
            client.post("/api/v1/auth/token", data={"username": "root", "password": "nope"}),
        ]
    assert [a.status_code for a in answers] == [200, 200, 401, 404, 413, 401]
    assert {a.headers.get("Invctl-Epoch") for a in answers} == {"1"}


def test_the_epoch_answered_is_the_one_central_started_with(central, publisher, clock):
    restarted = at_new_epoch(central, central.settings.database_url, publisher, clock)
    try:
        with TestClient(create_app(restarted, manage_relay=False)) as client:
            assert client.get("/healthz").headers["invctl-epoch"] == "2"
    finally:
        restarted.close()


# --- the position check --------------------------------------------------------------------


def test_a_database_behind_what_was_published_is_refused_naming_both_positions(central):
    make_catalog(central)
    highest = highest_outbox_id(central)
    ahead = FakePositions(Position(1, highest + 5))

    with pytest.raises(BehindKafka) as refused:
        check_at_start(ahead, central.db, central.epoch)

    message = refused.value.message
    assert refused.value.code == "central.behind_kafka"
    assert f"epoch 1, outbox id {highest})" in message
    assert f"epoch 1, outbox id {highest + 5})" in message
    assert "central confirm-restore" in message and "\n" not in message


def test_a_database_level_with_or_ahead_of_kafka_starts(central):
    make_catalog(central)
    highest = highest_outbox_id(central)
    for published in (None, UNMARKED, Position(1, highest), Position(1, highest - 1)):
        assert check_at_start(FakePositions(published), central.db, central.epoch) is True


def test_a_newer_epoch_is_ahead_of_any_outbox_id_of_an_older_one(central):
    make_catalog(central)
    kafka = FakePositions(Position(1, 10_000))
    assert refuse_if_behind(kafka, central.db, 2) == database_position(central.db, 2)
    with pytest.raises(BehindKafka):
        refuse_if_behind(FakePositions(Position(3, 1)), central.db, 2)


@pytest.mark.parametrize(
    "error", [KafkaConnectionError(), OSError("refused"), PositionUnreadable("no READ")]
)
def test_a_kafka_that_cannot_be_read_at_start_does_not_block_it(central, caplog, error):
    kafka = FakePositions()
    kafka.error = error
    with caplog.at_level(logging.WARNING, "central.kafka_position"):
        assert check_at_start(kafka, central.db, central.epoch) is False
    assert [r.msg for r in caplog.records] == ["central.position_unchecked"]


def test_the_outbox_position_survives_the_purge_and_is_never_handed_out_again(central, clock):
    make_catalog(central)
    central.relay.run_once()
    highest = highest_outbox_id(central)
    clock.advance(central.relay.retention.total_seconds() + 61)
    central.relay.run_once()  # nothing pending: the purge runs

    assert database_position(central.db, 1) == Position(1, highest)
    inventory.set_stock(central.uow(), ADMIN, "A", 3)
    assert highest_outbox_id(central) == highest + 1


# --- the relay's check when it takes the lease ---------------------------------------------


def test_a_relay_that_finds_the_database_behind_publishes_nothing_and_says_so(
    central, clock, caplog
):
    make_catalog(central)
    publisher = FakePublisher()
    kafka = FakePositions(Position(1, highest_outbox_id(central) + 1))
    relay = positioned_relay(central, publisher, clock, kafka)

    with caplog.at_level(logging.ERROR, "central.relay"):
        assert relay.run_once() == 0
    assert relay.run_once() == 0
    clock.advance(120)
    assert relay.run_once() == 0

    assert publisher.published == []
    assert relay.stats.behind_kafka.startswith("the database (epoch 1")
    assert relay_state(central.db, clock, relay, kafka=True) == "behind_kafka"
    assert [r.msg for r in caplog.records] == ["relay.behind_kafka"]
    assert kafka.asked == 1


def test_readyz_says_behind_kafka_while_the_relay_refuses(central, clock):
    make_catalog(central)
    relay = positioned_relay(central, FakePublisher(), clock, FakePositions(Position(7, 1)))
    relay.run_once()
    central.relay = relay
    with TestClient(create_app(central, manage_relay=False)) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["checks"]["relay"] == "behind_kafka"


def test_a_relay_level_with_kafka_checks_once_per_lease_and_publishes(central, clock):
    make_catalog(central)
    publisher = FakePublisher()
    kafka = FakePositions(Position(1, 2))
    relay = positioned_relay(central, publisher, clock, kafka)

    assert relay.run_once() == highest_outbox_id(central)
    inventory.set_stock(central.uow(), ADMIN, "A", 4)
    assert relay.run_once() == 1
    assert kafka.asked == 1

    clock.advance(61)
    other = positioned_relay(central, publisher, clock, kafka)
    other.run_once()  # takes over the lease that ran out
    assert kafka.asked == 2


def test_a_relay_that_cannot_read_kafka_publishes_nothing_until_it_can(central, clock):
    make_catalog(central)
    publisher = FakePublisher()
    kafka = FakePositions(None)
    kafka.error = KafkaConnectionError()
    relay = positioned_relay(central, publisher, clock, kafka)

    with pytest.raises(KafkaConnectionError):
        relay.run_once()
    assert publisher.published == []

    kafka.error = None
    assert relay.run_once() == highest_outbox_id(central)


def test_a_relay_whose_login_may_not_read_the_topics_publishes_as_before(central, clock, caplog):
    make_catalog(central)
    publisher = FakePublisher()
    kafka = FakePositions()
    kafka.error = PositionUnreadable("TopicAuthorizationFailedError")
    relay = positioned_relay(central, publisher, clock, kafka)

    with caplog.at_level(logging.WARNING, "central.relay"):
        assert relay.run_once() == highest_outbox_id(central)
    assert [r.msg for r in caplog.records] == ["relay.position_unchecked"]


# --- the republish at a new epoch ----------------------------------------------------------


def test_a_relay_at_a_new_epoch_republishes_the_whole_state_once_at_that_epoch(
    central, publisher, clock, caplog
):
    make_catalog(central)
    central.relay.run_once()
    published_before = highest_outbox_id(central)
    restarted = at_new_epoch(central, central.settings.database_url, publisher, clock)
    sent = len(publisher.published)
    kafka = FakePositions(Position(1, published_before))
    try:
        relay = positioned_relay(restarted, publisher, clock, kafka)
        with caplog.at_level(logging.WARNING, "central.relay"):
            relay.run_once()
        republished = publisher.published[sent:]

        again = positioned_relay(restarted, publisher, clock, FakePositions(Position(2, 99)))
        clock.advance(61)
        relay.stats.leader = False  # this one is gone; the next takes the lease
        again.run_once()
    finally:
        restarted.close()

    # one category, two products, two stock rows: every record at epoch 2
    assert [r.topic for r in republished].count("new-product") == 2
    assert len(republished) == 5 and {r.epoch for r in republished} == {2}
    [logged] = [r.event_fields for r in caplog.records if r.msg == "relay.republished"]
    assert (logged["reason"], logged["published_epoch"], logged["epoch"]) == ("new_epoch", 1, 2)
    assert relay.stats.republishes == 1
    assert again.stats.republishes == 0, "Kafka's newest record is of epoch 2 now"


def test_records_of_an_older_central_without_headers_are_no_new_epoch(central, clock):
    make_catalog(central)
    publisher = FakePublisher()
    relay = positioned_relay(central, publisher, clock, FakePositions(UNMARKED))
    relay.run_once()
    assert relay.stats.republishes == 0
    assert len(publisher.published) == highest_outbox_id(central)


# --- central confirm-restore ---------------------------------------------------------------


def test_confirm_restore_starts_a_new_epoch_and_drops_the_old_lease(central, clock):
    make_catalog(central)
    url = central.settings.database_url
    central.relay.run_once()  # holds the lease
    central.relay.stop()
    central.relay.run()  # stops at once and hands the lease over
    central.close()

    done = confirm_restored(url, utcnow(), lambda where: True)

    assert (done.previous, done.epoch) == (1, 2)
    assert current_epoch(central.db) == 2
    with central.db.connection_context():
        assert Epoch.get_by_id(2).cause == "confirmed"
        assert RelayLease.select().count() == 0


def test_confirm_restore_unconfirmed_changes_nothing(central):
    url = central.settings.database_url
    central.close()
    with pytest.raises(RestoreUnconfirmed):
        confirm_restored(url, utcnow(), lambda where: False)
    assert current_epoch(central.db) == 1


def test_confirm_restore_is_refused_while_a_relay_holds_the_lease(central, clock):
    make_catalog(central)
    central.relay.run_once()
    url = central.settings.database_url
    central.close()  # the process is gone, its lease is not: it may run on another host

    with pytest.raises(CentralRunning):
        confirm_restored(url, utcnow() - timedelta(seconds=1), lambda where: True)
    assert current_epoch(central.db) == 1


def test_confirm_restore_of_a_missing_sqlite_file_is_refused(tmp_path):
    with pytest.raises(RecoveryRefused, match="no database"):
        confirm_restored(f"sqlite:///{tmp_path / 'gone.db'}", utcnow(), lambda where: True)
    assert not (tmp_path / "gone.db").exists()
