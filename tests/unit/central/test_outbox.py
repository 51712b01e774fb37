import json
import threading

import pytest

from central.models import Movement, Outbox, Stock
from central.outbox import GATHER_FROM, Relay
from central.services import catalog, inventory
from harness.waiting import eventually
from invwire.errors.central import NegativeStock

from .conftest import ADMIN


def make_product(central, sku="MILK-1L", category="Dairy"):
    cat = catalog.create_category(central.uow(), category)
    return catalog.create_product(
        central.uow(), catalog.NewProduct(sku=sku, name="Milk", price="1.25", category_id=cat["id"])
    )


def outbox_rows(central):
    with central.db.connection_context():
        return [
            (r.topic, r.key, json.loads(r.payload)) for r in Outbox.select().order_by(Outbox.id)
        ]


def test_each_change_writes_its_event_in_the_same_transaction(central):
    make_product(central)
    inventory.set_stock(central.uow(), ADMIN, "MILK-1L", 40)
    inventory.adjust_stock(central.uow(), ADMIN, "MILK-1L", -2)
    rows = outbox_rows(central)
    assert [(t, k, p["type"]) for t, k, p in rows] == [
        ("new-category", "1", "category.created"),
        ("new-product", "MILK-1L", "product.created"),
        ("inventory-updated", "MILK-1L", "stock.changed"),
        ("inventory-updated", "MILK-1L", "stock.changed"),
    ]
    assert [p["data"]["stock_version"] for _, _, p in rows[2:]] == [1, 2]
    assert rows[-1][2]["data"]["quantity"] == 38


def test_a_refused_change_leaves_no_row_no_ledger_and_no_event(central):
    make_product(central)
    inventory.set_stock(central.uow(), ADMIN, "MILK-1L", 1)
    before = outbox_rows(central)
    with pytest.raises(NegativeStock):
        inventory.adjust_stock(central.uow(), ADMIN, "MILK-1L", -5)
    assert outbox_rows(central) == before
    with central.db.connection_context():
        assert Stock.get_by_id("MILK-1L").quantity == 1
        assert Movement.select().count() == 1


def test_a_failure_after_the_change_rolls_back_the_event_too(central):
    make_product(central)
    before = outbox_rows(central)
    with pytest.raises(RuntimeError), central.uow() as uow:
        inventory.set_in_tx(uow, ADMIN, "MILK-1L", 9, "set")
        raise RuntimeError("crash before commit")
    assert outbox_rows(central) == before


def test_commit_wakes_the_relay_and_a_rollback_does_not(central):
    make_product(central)
    central.relay._wake.clear()
    with pytest.raises(NegativeStock):
        inventory.adjust_stock(central.uow(), ADMIN, "MILK-1L", -1)
    assert not central.relay._wake.is_set()
    inventory.adjust_stock(central.uow(), ADMIN, "MILK-1L", 1)
    assert central.relay._wake.is_set()


def test_relay_publishes_in_id_order_and_marks_rows_sent(central, publisher):
    make_product(central)
    for q in (5, 6, 7):
        inventory.set_stock(central.uow(), ADMIN, "MILK-1L", q)
    assert central.relay.run_once() == 5
    assert [r.id for r in publisher.published] == [1, 2, 3, 4, 5]
    assert central.relay.backlog() == 0
    assert central.relay.run_once() == 0


def test_a_busy_round_holds_the_next_for_the_gather_time_and_a_quiet_one_does_not(
    central, publisher
):
    make_product(central)  # 2 events: a quiet round
    central.relay.gather_seconds = 600.0
    assert central.relay.step() is False  # returned at once: no gathering after 2 records
    for q in range(1, GATHER_FROM + 1):
        inventory.set_stock(central.uow(), ADMIN, "MILK-1L", q)
    stepped: list[bool] = []
    busy = threading.Thread(target=lambda: stepped.append(central.relay.step()))
    busy.start()
    eventually(lambda: len(publisher.published) == 2 + GATHER_FROM, what="the busy round")
    assert busy.is_alive() and not stepped  # published, now waiting for rows to gather
    central.relay.stop()  # a stop cuts the wait short
    busy.join(10)
    assert stepped == [True]  # and the next round would start at once


def test_unacked_records_stay_pending_and_are_resent_in_order(central, publisher):
    make_product(central)
    inventory.set_stock(central.uow(), ADMIN, "MILK-1L", 5)
    publisher.fail_after = 1
    with pytest.raises(Exception, match="not acked"):
        central.relay.run_once()
    assert central.relay.backlog() == 2
    publisher.fail_after = None
    central.relay.run_once()
    assert [r.id for r in publisher.published] == [1, 2, 3]


def test_only_one_relay_holds_the_lease(central, publisher, clock):
    other = Relay(central.db, publisher, clock, lease_seconds=60)
    make_product(central)
    assert central.relay.run_once() == 2
    inventory.set_stock(central.uow(), ADMIN, "MILK-1L", 3)
    assert other.run_once() == 0
    clock.advance(61)
    assert other.run_once() == 1
    assert central.relay.run_once() == 0


def test_published_rows_are_purged_after_the_retention_but_the_newest(central, clock):
    make_product(central)
    central.relay.run_once()
    clock.advance(central.relay.retention.total_seconds() + 61)
    central.relay.run_once()
    with central.db.connection_context():
        assert [r.id for r in Outbox.select()] == [2], "the newest row is the high-water mark"


def test_the_leader_renews_its_lease_before_it_runs_out(central, publisher, clock):
    other = Relay(central.db, publisher, clock, lease_seconds=60)
    make_product(central)
    central.relay.run_once()
    for _ in range(4):
        clock.advance(20)
        central.relay.run_once()
        assert other.run_once() == 0


def test_a_stopped_relay_hands_its_lease_over_at_once(central, publisher, clock):
    other = Relay(central.db, publisher, clock, lease_seconds=60)
    make_product(central)
    central.relay.run_once()
    central.relay.stop()
    central.relay.run()
    inventory.set_stock(central.uow(), ADMIN, "MILK-1L", 3)
    assert other.run_once() == 1, "no waiting for the old lease to run out"
