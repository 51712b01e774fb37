import json
from datetime import UTC, datetime

import pytest

from invwire.errors import PoisonRecord
from invwire.events import CategoryChanged, ProductChanged, StockChanged, parse_record
from invwire.rules import MAX_EVENT_BYTES as MAX_VALUE_BYTES
from invwire.topics import TOPIC_CATEGORY, TOPIC_INVENTORY, TOPIC_PRODUCT
from tests.support.agent_fakes import (
    category_data,
    category_event,
    envelope,
    product_data,
    product_event,
    stock_data,
    stock_event,
)


def reason_of(topic: str, key: bytes | None, value: bytes | None) -> str:
    with pytest.raises(PoisonRecord) as caught:
        parse_record(topic, key, value)
    return caught.value.code


def stock_value(**data: object) -> bytes:
    return envelope("stock.changed", stock_data(**data))


def test_stock_changed_is_parsed_with_every_field():
    received = parse_record(*stock_event(sku="MILK-1L", quantity=40, order_id="o-1"))

    assert received.occurred_at == datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)
    assert received.event == StockChanged(
        sku="MILK-1L",
        quantity=40,
        delta=-2,
        reason="order",
        order_id="o-1",
        stock_version=7,
    )


def test_product_changed_keeps_the_price_as_the_exact_decimal_string():
    event = parse_record(*product_event(price="19.99", active=False)).event

    assert isinstance(event, ProductChanged)
    assert event.price == "19.99"
    assert event.active is False


def test_category_changed_is_keyed_by_the_decimal_id():
    event = parse_record(*category_event(id=12, name="Bakery", version=4)).event

    assert isinstance(event, CategoryChanged)
    assert (event.id, event.name, event.version) == (12, "Bakery", 4)


def test_created_types_are_accepted_like_updated_ones():
    value = envelope("product.created", product_data())

    event = parse_record(TOPIC_PRODUCT, b"MILK-1L", value).event

    assert isinstance(event, ProductChanged)
    assert event.created


def test_occurred_at_with_an_offset_is_normalised_to_utc():
    value = envelope("stock.changed", stock_data(), occurred_at="2026-11-29T11:00:00+01:00")

    received = parse_record(TOPIC_INVENTORY, b"MILK-1L", value)

    assert received.occurred_at == datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def test_value_over_one_mebibyte_is_record_too_large():
    value = stock_value(order_id="x" * MAX_VALUE_BYTES)

    assert reason_of(TOPIC_INVENTORY, b"MILK-1L", value) == "record.too_large"


@pytest.mark.parametrize(
    "value",
    [b"{not json", b"\xff\xfe", b'{"schema": NaN}', b""],
    ids=["syntax", "not-utf8", "nan", "empty"],
)
def test_undecodable_value_is_json_invalid(value):
    assert reason_of(TOPIC_INVENTORY, b"MILK-1L", value) == "json.invalid"


@pytest.mark.parametrize(
    "overrides",
    [
        {"event_id": "not-a-uuid"},
        {"type": 7},
        {"schema": "1"},
        {"schema": 0},
        {"occurred_at": "yesterday"},
        {"occurred_at": "2026-11-29T10:00:00"},
        {"data": [1, 2]},
    ],
    ids=["event-id", "type", "schema-text", "schema-zero", "time", "naive-time", "data"],
)
def test_malformed_envelope_is_envelope_invalid(overrides):
    value = envelope("stock.changed", stock_data(), **overrides)

    assert reason_of(TOPIC_INVENTORY, b"MILK-1L", value) == "envelope.invalid"


@pytest.mark.parametrize("missing", ["event_id", "type", "schema", "occurred_at", "data"])
def test_envelope_without_a_field_is_envelope_invalid(missing):
    raw = json.loads(stock_value())
    del raw[missing]

    assert reason_of(TOPIC_INVENTORY, b"MILK-1L", json.dumps(raw).encode()) == "envelope.invalid"


def test_json_array_or_tombstone_is_envelope_invalid():
    assert reason_of(TOPIC_INVENTORY, b"MILK-1L", b"[]") == "envelope.invalid"
    assert reason_of(TOPIC_INVENTORY, b"MILK-1L", None) == "envelope.invalid"


def test_unknown_type_is_type_unknown():
    value = envelope("stock.exploded", stock_data())

    assert reason_of(TOPIC_INVENTORY, b"MILK-1L", value) == "type.unknown"


def test_known_type_on_the_wrong_topic_is_type_unknown():
    value = envelope("stock.changed", stock_data())

    assert reason_of(TOPIC_CATEGORY, b"MILK-1L", value) == "type.unknown"


def test_newer_schema_is_schema_unsupported_even_with_a_new_type():
    value = envelope("stock.reserved", {"anything": 1}, schema=2)

    assert reason_of(TOPIC_INVENTORY, b"MILK-1L", value) == "schema.unsupported"


@pytest.mark.parametrize(
    "field", ["sku", "quantity", "delta", "reason", "order_id", "stock_version"]
)
def test_stock_event_without_a_data_field_is_field_missing(field):
    data = stock_data()
    del data[field]

    value = envelope("stock.changed", data)

    assert reason_of(TOPIC_INVENTORY, b"MILK-1L", value) == "field.missing"


@pytest.mark.parametrize("field", ["id", "name", "version"])
def test_category_event_without_a_data_field_is_field_missing(field):
    topic, key, _ = category_event()
    data = {"id": 3, "name": "Dairy", "version": 1}
    del data[field]

    assert reason_of(topic, key, envelope("category.updated", data)) == "field.missing"


@pytest.mark.parametrize(
    "field",
    ["sku", "name", "price", "category_id", "description", "active", "version"],
)
def test_product_event_without_a_data_field_is_field_missing(field):
    data = product_data()
    del data[field]

    value = envelope("product.updated", data)

    assert reason_of(TOPIC_PRODUCT, b"MILK-1L", value) == "field.missing"


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": -1},
        {"quantity": 1.5},
        {"quantity": True},
        {"quantity": "40"},
        {"stock_version": -1},
        {"reason": "theft"},
        {"order_id": 17},
        {"order_id": ""},
        {"sku": "milk-1l"},
        {"sku": "A" * 65},
    ],
    ids=str,
)
def test_stock_event_with_a_bad_value_is_field_invalid(change):
    value = stock_value(**change)
    key = str(change.get("sku", "MILK-1L")).encode()

    assert reason_of(TOPIC_INVENTORY, key, value) == "field.invalid"


@pytest.mark.parametrize(
    "change",
    [{"price": "-1"}, {"price": "abc"}, {"price": 1.25}, {"price": "NaN"}, {"active": 1}],
    ids=str,
)
def test_product_event_with_a_bad_value_is_field_invalid(change):
    value = envelope("product.updated", product_data(**change))

    assert reason_of(TOPIC_PRODUCT, b"MILK-1L", value) == "field.invalid"


@pytest.mark.parametrize("key", [b"BREAD", None, b"3"])
def test_record_key_that_does_not_name_the_entity_is_field_invalid(key):
    assert reason_of(TOPIC_INVENTORY, key, stock_value()) == "field.invalid"


def test_poison_reason_carries_a_readable_detail():
    with pytest.raises(PoisonRecord) as caught:
        parse_record(TOPIC_INVENTORY, b"MILK-1L", stock_value(quantity=-5))

    assert "data.quantity" in caught.value.message
    assert caught.value.details == {"field": "quantity"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("stock_version", 2**64), ("stock_version", 2**63), ("quantity", 2**63), ("delta", -(2**63))],
)
def test_integers_beyond_a_signed_64_bit_column_are_field_invalid(field, value):
    assert reason_of(TOPIC_INVENTORY, b"MILK-1L", stock_value(**{field: value})) == "field.invalid"


def test_a_lone_surrogate_in_a_name_is_field_invalid():
    value = envelope("product.updated", product_data(name="Milk \ud800"))

    assert reason_of(TOPIC_PRODUCT, b"MILK-1L", value) == "field.invalid"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Milk\x1b]0;owned\x07"),
        ("name", "Milk\u202e1L"),
        ("description", "clears\x1b[2Jthe screen"),
        ("description", "two\nlines"),
    ],
)
def test_a_control_or_format_character_in_shown_text_is_field_invalid(field, value):
    """The rule central holds names and descriptions to: a record that breaks it is poison,
    never applied to the replica and shown on a terminal."""
    with pytest.raises(PoisonRecord) as caught:
        parse_record(
            TOPIC_PRODUCT, b"MILK-1L", envelope("product.updated", product_data(**{field: value}))
        )

    assert caught.value.code == "field.invalid"
    assert caught.value.details["field"] == field


def test_a_category_name_with_a_control_character_is_field_invalid():
    value = envelope("category.created", category_data(name="Dairy\x1b[2J"))

    assert reason_of(TOPIC_CATEGORY, b"1", value) == "field.invalid"
