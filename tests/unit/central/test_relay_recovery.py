"""Kafka lost its data: central republishes its whole state (by command, and by itself when
the relay finds a topic holding fewer records than central has rows), and says when its
relay is failing."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from central.api import create_app
from central.models import Outbox
from central.outbox import Relay, relay_state
from central.services import catalog, inventory
from central.services.republish import (
    Republished,
    live_rows,
    pending_keys,
    republish,
    shortfall,
)
from invwire.events import parse_record
from invwire.topics import TOPIC_CATEGORY, TOPIC_INVENTORY, TOPIC_PRODUCT
from tests.support.central_fakes import FakePublisher, FakeTopicLog

from .conftest import ADMIN


def make_catalog(central, skus=("A", "B", "C"), stocked=("A", "B")):
    cat = catalog.create_category(central.uow(), "Dairy")
    for sku in skus:
        catalog.create_product(
            central.uow(),
            catalog.NewProduct(sku=sku, name=f"Product {sku}", price="2.50", category_id=cat["id"]),
        )
    for sku in stocked:
        inventory.set_stock(central.uow(), ADMIN, sku, 10)
        inventory.adjust_stock(central.uow(), ADMIN, sku, -3)
    return cat


def outbox_events(central, after_id=0):
    with central.db.connection_context():
        rows = Outbox.select().where(Outbox.id > after_id).order_by(Outbox.id)
        return [parse_record(r.topic, r.key.encode(), r.payload.encode()).event for r in rows]


def last_outbox_id(central):
    with central.db.connection_context():
        return Outbox.select().order_by(Outbox.id.desc()).first().id


def audited_relay(central, publisher, log, clock, **kw):
    return Relay(central.db, publisher, clock, topic_log=log, lease_seconds=60, **kw)


# --- the republish service -----------------------------------------------------------------


def test_republish_writes_one_event_per_row_at_its_current_version(central):
    cat = make_catalog(central)
    catalog.update_product(central.uow(), "A", {"price": "3.00"})
    before = last_outbox_id(central)

    done = republish(central.uow)

    assert done == Republished(categories=1, products=3, stock=3)
    events = outbox_events(central, before)
    assert len(events) == done.events == 7
    by_type = {(e.type, e.key): e for e in events}
    assert by_type["category.updated", str(cat["id"])].version == 1
    product = by_type["product.updated", "A"]
    assert (product.price, product.version) == ("3.00", 2)
    stock = {e.key: e for e in events if e.type == "stock.changed"}
    assert {sku: (s.quantity, s.stock_version) for sku, s in stock.items()} == {
        "A": (7, 2),
        "B": (7, 2),
        "C": (0, 0),
    }
    assert {(s.delta, s.reason, s.order_id) for s in stock.values()} == {(0, "set", None)}


def test_republish_goes_in_batches_and_misses_no_row_at_a_batch_edge(central):
    make_catalog(central, skus=("A", "B", "C", "D", "E"), stocked=())
    before = last_outbox_id(central)

    done = republish(central.uow, batch_rows=2)

    assert done == Republished(categories=1, products=5, stock=5)
    keys = [e.key for e in outbox_events(central, before) if e.type == "product.updated"]
    assert keys == ["A", "B", "C", "D", "E"]


def test_republish_of_an_empty_database_writes_nothing(central):
    assert republish(central.uow) == Republished()
    with central.db.connection_context():
        assert Outbox.select().count() == 0


# --- the lost-data test --------------------------------------------------------------------


def test_a_topic_holding_fewer_records_than_rows_and_pending_keys_lost_data():
    rows = {TOPIC_CATEGORY: 1, TOPIC_PRODUCT: 10, TOPIC_INVENTORY: 10}
    assert shortfall(rows, {}, {TOPIC_CATEGORY: 1, TOPIC_PRODUCT: 10, TOPIC_INVENTORY: 30}) == {}
    assert shortfall(rows, {TOPIC_PRODUCT: 4}, {TOPIC_CATEGORY: 1, TOPIC_PRODUCT: 6}) == {
        TOPIC_INVENTORY: 10
    }
    assert shortfall(rows, {TOPIC_INVENTORY: 10}, {TOPIC_INVENTORY: 0}) == {
        TOPIC_CATEGORY: 1,
        TOPIC_PRODUCT: 10,
    }


def test_rows_never_published_and_events_still_waiting_are_not_counted_as_lost(central):
    make_catalog(central, skus=("A", "B", "C"), stocked=("A",))
    rows, pending = live_rows(central.db), pending_keys(central.db)
    assert rows == {TOPIC_CATEGORY: 1, TOPIC_PRODUCT: 3, TOPIC_INVENTORY: 1}
    assert pending == {TOPIC_CATEGORY: 1, TOPIC_PRODUCT: 3, TOPIC_INVENTORY: 1}
    assert shortfall(rows, pending, {}) == {}


# --- the relay audits the log --------------------------------------------------------------


def test_a_relay_that_finds_the_log_emptier_than_the_database_republishes_once(
    central, clock, caplog
):
    make_catalog(central)
    publisher = FakePublisher()
    kafka = FakeTopicLog(publisher)
    relay = audited_relay(central, publisher, kafka, clock)
    assert relay.run_once() == 8  # everything published; the log holds it all
    kafka.lose_everything()

    publisher.fail_after = 0  # the broker lost its data: the next batch fails
    inventory.adjust_stock(central.uow(), ADMIN, "A", -1)
    with pytest.raises(Exception, match="not acked"):
        relay.run_once()
    relay.on_failure(RuntimeError("not acked"), 0.2)
    publisher.fail_after = None

    with caplog.at_level(logging.WARNING, "central.relay"):
        published = relay.run_once()
    assert published == 8  # the waiting change, then one event per row
    assert relay.stats.republishes == 1
    republished = [r.event_fields for r in caplog.records if r.msg == "relay.republished"]
    assert len(republished) == 1
    assert republished[0]["missing"] == {TOPIC_CATEGORY: 1, TOPIC_PRODUCT: 3, TOPIC_INVENTORY: 1}
    assert (republished[0]["products"], republished[0]["stock"]) == (3, 3)

    relay.on_failure(RuntimeError("another failure"), 0.2)
    relay.run_once()
    assert relay.stats.republishes == 1  # the log now holds every row: no second republish


def test_records_acked_below_earlier_offsets_without_a_failure_make_the_relay_republish(
    central, clock, caplog
):
    make_catalog(central)
    publisher = FakePublisher()
    kafka = FakeTopicLog(publisher)
    relay = audited_relay(central, publisher, kafka, clock, audit_seconds=3600)
    relay.run_once()
    kafka.lose_everything()  # the broker came back empty and took the waiting change at once

    inventory.adjust_stock(central.uow(), ADMIN, "A", -1)
    with caplog.at_level(logging.WARNING, "central.relay"):
        assert relay.run_once() == 1
        assert relay.stats.republishes == 0
        assert relay.run_once() == 7  # the next round audits and republishes every row

    assert relay.stats.republishes == 1
    assert [r.msg for r in caplog.records] == ["relay.log_went_back", "relay.republished"]
    relay.run_once()
    assert relay.stats.republishes == 1


def test_a_new_leader_audits_first_and_republishes_to_an_empty_cluster(central, clock):
    make_catalog(central)
    relay = Relay(central.db, FakePublisher(), clock)
    relay.run_once()  # published once to a cluster since lost
    publisher = FakePublisher()
    kafka = FakeTopicLog(publisher)
    clock.advance(61)  # the first relay's lease has run out

    successor = audited_relay(central, publisher, kafka, clock)
    assert successor.run_once() == 7
    assert successor.stats.republishes == 1
    assert kafka.asked == 1


def test_a_log_that_keeps_losing_data_is_not_republished_again_within_the_guard(
    central, clock, caplog
):
    make_catalog(central)
    publisher = FakePublisher()
    kafka = FakeTopicLog(publisher)
    relay = audited_relay(central, publisher, kafka, clock, republish_guard_seconds=600)
    relay.run_once()
    kafka.lose_everything()
    relay.on_failure(RuntimeError("lost"), 0.2)
    relay.run_once()
    assert relay.stats.republishes == 1

    kafka.lose_everything()
    clock.advance(60)
    relay.on_failure(RuntimeError("lost again"), 0.2)
    caplog.clear()
    with caplog.at_level(logging.WARNING, "central.relay"):
        relay.run_once()
    assert relay.stats.republishes == 1
    assert [r.msg for r in caplog.records if r.msg.startswith("relay.republish")] == [
        "relay.republish_suppressed"
    ]

    clock.advance(600)
    relay.on_failure(RuntimeError("lost again"), 0.2)
    relay.run_once()
    assert relay.stats.republishes == 2


def test_the_log_is_audited_on_a_schedule_and_not_on_every_round(central, clock):
    make_catalog(central)
    publisher = FakePublisher()
    kafka = FakeTopicLog(publisher)
    relay = audited_relay(central, publisher, kafka, clock, audit_seconds=300)
    relay.run_once()
    relay.run_once()
    assert kafka.asked == 1
    clock.advance(301)
    relay.run_once()
    assert kafka.asked == 2


def test_a_log_that_cannot_be_read_fails_the_round_and_is_read_again_next_round(central, clock):
    make_catalog(central)
    publisher = FakePublisher()

    class Unreachable(FakeTopicLog):
        def records(self):
            super().records()
            raise ConnectionError("broker unreachable")

    kafka = Unreachable(publisher)
    relay = audited_relay(central, publisher, kafka, clock)
    with pytest.raises(ConnectionError):
        relay.run_once()
    assert publisher.published == []  # nothing published before the log was checked
    with pytest.raises(ConnectionError):
        relay.run_once()
    assert kafka.asked == 2


# --- readiness and the metric --------------------------------------------------------------


def readiness(central):
    with TestClient(create_app(central, manage_relay=False)) as client:
        answer = client.get("/readyz")
        metrics = client.get("/metrics").text
    failing = {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "invctl_relay_failing"
    }
    return answer.status_code, answer.json()["checks"]["relay"], failing["invctl_relay_failing"]


def test_events_waiting_longer_than_the_bound_make_the_relay_failing_but_central_ready(
    central, publisher, clock
):
    make_catalog(central)
    central.relay.run_once()
    assert readiness(central) == (200, "leader", 0.0)

    publisher.fail_after = 0
    inventory.adjust_stock(central.uow(), ADMIN, "A", -1)
    clock.advance(29)
    assert readiness(central) == (200, "leader", 0.0)
    clock.advance(1)
    assert readiness(central) == (200, "failing", 1.0)

    publisher.fail_after = None
    central.relay.run_once()
    assert readiness(central) == (200, "leader", 0.0)


def test_the_relay_word_names_where_the_relay_runs(central, clock):
    make_catalog(central)
    db = central.db
    assert relay_state(db, clock, None, kafka=False) == "off"
    assert relay_state(db, clock, None, kafka=True) == "ok"
    assert relay_state(db, clock, central.relay, kafka=True) == "standby"
    clock.advance(31)
    assert relay_state(db, clock, None, kafka=True) == "failing"
    assert relay_state(db, clock, None, kafka=True, failing_after=60) == "ok"
    assert relay_state(db, clock, None, kafka=False) == "off"


def test_outbox_payloads_of_a_republish_parse_as_the_wire_contract_says(central):
    make_catalog(central)
    before = last_outbox_id(central)
    republish(central.uow)
    with central.db.connection_context():
        rows = list(Outbox.select().where(Outbox.id > before))
    types = {json.loads(r.payload)["type"] for r in rows}
    assert types == {"category.updated", "product.updated", "stock.changed"}
