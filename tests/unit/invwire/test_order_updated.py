"""`order.updated` (topic order-updated): what central encodes is what the agent parses, and a
record that does not hold a store's order status exactly is a poison record with its reason."""

import json
from datetime import UTC, datetime

import pytest

from invwire.errors import PoisonRecord
from invwire.events import OrderUpdated, encode, order_updated, parse_record
from invwire.orders import STATUS_VERSIONS
from invwire.topics import PARTITIONS, TOPIC_ORDER, TOPICS
from tests.support.agent_fakes import envelope, order_data, order_event

ORDER_ID = "5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13"


def reason_of(key: bytes | None, value: bytes) -> str:
    with pytest.raises(PoisonRecord) as caught:
        parse_record(TOPIC_ORDER, key, value)
    return caught.value.code


def test_the_order_topic_is_a_wire_topic_with_its_partitions():
    assert TOPIC_ORDER == "order-updated"
    assert TOPIC_ORDER in TOPICS
    assert PARTITIONS[TOPIC_ORDER] == 3


def test_a_cancellation_encoded_by_central_parses_back_to_the_same_event():
    at = datetime(2026, 11, 29, 10, 5, tzinfo=UTC)
    event = order_updated(ORDER_ID, "store-1", "cancelled", at)

    envelope_ = encode(event, at)
    received = parse_record(envelope_.topic, envelope_.key.encode(), envelope_.value.encode())

    assert (envelope_.topic, envelope_.key) == (TOPIC_ORDER, ORDER_ID)
    assert json.loads(envelope_.value)["type"] == "order.updated"
    assert (
        received.event
        == event
        == OrderUpdated(ORDER_ID, "store-1", "cancelled", 2, "2026-11-29T10:05:00+00:00")
    )


def test_a_naive_time_from_central_is_utc():
    event = order_updated(ORDER_ID, "store-1", "cancelled", datetime(2026, 11, 29, 10, 5))

    assert event.cancelled_at == "2026-11-29T10:05:00+00:00"


def test_the_version_is_the_statuses_place_in_the_orders_life():
    assert STATUS_VERSIONS == {"confirmed": 1, "cancelled": 2}
    assert order_updated(ORDER_ID, "s1", "confirmed", None).version == 1


def test_cancelled_at_with_an_offset_is_normalised_to_utc():
    value = envelope("order.updated", order_data(cancelled_at="2026-11-29T11:05:00+01:00"))

    event = parse_record(TOPIC_ORDER, ORDER_ID.encode(), value).event

    assert isinstance(event, OrderUpdated)
    assert event.cancelled_at == "2026-11-29T10:05:00+00:00"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("order_id", "not-a-uuid"),
        ("order_id", 7),
        ("store_id", "Store One"),
        ("store_id", ""),
        ("status", "queued"),
        ("version", 0),
        ("version", 1),  # a cancelled order is at version 2, never 1
        ("version", True),
        ("cancelled_at", "2026-11-29T10:05:00"),  # no offset
        ("cancelled_at", "yesterday"),
    ],
)
def test_a_field_that_is_not_a_store_orders_status_is_field_invalid(field, value):
    data = order_data(**{field: value})
    key = data["order_id"].encode() if isinstance(data["order_id"], str) else b"x"

    assert reason_of(key, envelope("order.updated", data)) == "field.invalid"


@pytest.mark.parametrize("field", ["order_id", "store_id", "status", "version", "cancelled_at"])
def test_a_missing_field_is_field_missing(field):
    data = order_data()
    del data[field]

    assert reason_of(ORDER_ID.encode(), envelope("order.updated", data)) == "field.missing"


def test_the_record_key_must_be_the_order_id():
    _, _, value = order_event()

    assert reason_of(b"another-order", value) == "field.invalid"


def test_an_order_event_on_another_topic_is_an_unknown_type():
    _, key, value = order_event()

    with pytest.raises(PoisonRecord) as caught:
        parse_record("inventory-updated", key, value)
    assert caught.value.code == "type.unknown"
