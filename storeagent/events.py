"""Kafka record -> typed event, or a PoisonRecord with a stable reason code.

Pure: standard library only. `topic` is the topic name without the deployment prefix.
Envelope problems are `envelope.invalid`; problems inside `data` are `field.missing` or
`field.invalid`; the record key must name the entity the event is about.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from storeagent.errors import (
    InvalidEnvelope,
    InvalidField,
    InvalidJson,
    MissingField,
    RecordTooLarge,
    UnknownType,
    UnsupportedSchema,
)

MAX_VALUE_BYTES = 1024 * 1024
SCHEMA_VERSION = 1
TOPIC_CATEGORY = "new-category"
TOPIC_PRODUCT = "new-product"
TOPIC_INVENTORY = "inventory-updated"
TOPICS = (TOPIC_CATEGORY, TOPIC_PRODUCT, TOPIC_INVENTORY)
SKU_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,63}$")
STOCK_REASONS = frozenset({"order", "cancel", "adjust", "set", "import", "create"})


@dataclass(frozen=True, slots=True)
class CategoryChanged:
    event_id: str
    occurred_at: datetime
    id: int
    name: str
    version: int


@dataclass(frozen=True, slots=True)
class ProductChanged:
    event_id: str
    occurred_at: datetime
    sku: str
    name: str
    price: Decimal
    category_id: int
    description: str
    active: bool
    version: int


@dataclass(frozen=True, slots=True)
class StockChanged:
    event_id: str
    occurred_at: datetime
    sku: str
    quantity: int
    delta: int
    reason: str
    order_id: str | None
    stock_version: int


Event = CategoryChanged | ProductChanged | StockChanged


@dataclass(frozen=True, slots=True)
class _Envelope:
    event_id: str
    type: str
    occurred_at: datetime
    data: _Data


def is_valid_sku(raw: object) -> bool:
    return isinstance(raw, str) and SKU_PATTERN.fullmatch(raw) is not None


def parse_record(topic: str, key: bytes | None, value: bytes | None) -> Event:
    """Parse one record of `topic` (unprefixed); raise a PoisonRecord subclass if unusable."""
    envelope = _envelope(_json_object(value))
    parser = _PARSERS.get((topic, envelope.type))
    if parser is None:
        raise UnknownType(f"type {envelope.type!r} is not known on topic {topic!r}")
    event = parser(envelope)
    _check_key(event, key)
    return event


def _json_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise InvalidEnvelope("the record has no value (a tombstone)")
    if len(value) > MAX_VALUE_BYTES:
        raise RecordTooLarge(f"the value is {len(value)} bytes; the limit is {MAX_VALUE_BYTES}")
    try:
        parsed = _DECODER.decode(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidJson(f"the value is not UTF-8 JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidEnvelope(f"the value is a JSON {type(parsed).__name__}, not an object")
    return parsed


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for all records: json.loads() with any option builds a new decoder per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)


def _envelope(raw: dict[str, Any]) -> _Envelope:
    _check_schema(raw.get("schema"))
    event_id, kind = raw.get("event_id"), raw.get("type")
    if not isinstance(event_id, str) or not _is_uuid(event_id):
        raise InvalidEnvelope("event_id must be a UUID string")
    if not isinstance(kind, str) or not kind:
        raise InvalidEnvelope("type must be a non-empty string")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise InvalidEnvelope("data must be a JSON object")
    occurred_at = _timestamp(raw.get("occurred_at"))
    return _Envelope(event_id, kind, occurred_at, _Data(data))


def _check_schema(schema: object) -> None:
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise InvalidEnvelope("schema must be a positive integer")
    if schema > SCHEMA_VERSION:
        raise UnsupportedSchema(f"schema {schema} is newer than {SCHEMA_VERSION}")


def _is_uuid(text: str) -> bool:
    return _UUID.fullmatch(text) is not None


def _timestamp(raw: object) -> datetime:
    try:
        moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidEnvelope("occurred_at must be an RFC 3339 timestamp with a UTC offset")
    return moment.astimezone(UTC)


class _Data:
    """Typed access to an event's `data` object; raises field.missing / field.invalid."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def _get(self, name: str) -> object:
        if name not in self._data:
            raise MissingField(f"data.{name} is missing", field=name)
        return self._data[name]

    def _invalid(self, name: str, expected: str) -> InvalidField:
        return InvalidField(f"data.{name} must be {expected}", field=name)

    def integer(self, name: str, minimum: int | None = None) -> int:
        value = self._get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._invalid(name, "an integer")
        if minimum is not None and value < minimum:
            raise self._invalid(name, f"at least {minimum}")
        return value

    def text(self, name: str, *, allow_empty: bool = False) -> str:
        value = self._get(name)
        if not isinstance(value, str) or not (value or allow_empty):
            raise self._invalid(name, "a string" if allow_empty else "a non-empty string")
        return value

    def optional_text(self, name: str) -> str | None:
        return None if self._get(name) is None else self.text(name)

    def flag(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise self._invalid(name, "true or false")
        return value

    def choice(self, name: str, choices: frozenset[str]) -> str:
        value = self.text(name)
        if value not in choices:
            raise self._invalid(name, "one of " + ", ".join(sorted(choices)))
        return value

    def sku(self, name: str = "sku") -> str:
        value = self.text(name)
        if not is_valid_sku(value):
            raise self._invalid(name, "a SKU (A-Z, 0-9, '.', '_', '-'; at most 64)")
        return value

    def price(self, name: str) -> Decimal:
        text = self.text(name)
        try:
            price = Decimal(text)
        except InvalidOperation:
            raise self._invalid(name, "a decimal string") from None
        if not price.is_finite() or price < 0:
            raise self._invalid(name, "a non-negative decimal string")
        return price


def _category(env: _Envelope) -> CategoryChanged:
    data = env.data
    return CategoryChanged(
        event_id=env.event_id,
        occurred_at=env.occurred_at,
        id=data.integer("id", minimum=1),
        name=data.text("name"),
        version=data.integer("version", minimum=0),
    )


def _product(env: _Envelope) -> ProductChanged:
    data = env.data
    return ProductChanged(
        event_id=env.event_id,
        occurred_at=env.occurred_at,
        sku=data.sku(),
        name=data.text("name"),
        price=data.price("price"),
        category_id=data.integer("category_id", minimum=1),
        description=data.text("description", allow_empty=True),
        active=data.flag("active"),
        version=data.integer("version", minimum=0),
    )


def _stock(env: _Envelope) -> StockChanged:
    data = env.data
    return StockChanged(
        event_id=env.event_id,
        occurred_at=env.occurred_at,
        sku=data.sku(),
        quantity=data.integer("quantity", minimum=0),
        delta=data.integer("delta"),
        reason=data.choice("reason", STOCK_REASONS),
        order_id=data.optional_text("order_id"),
        stock_version=data.integer("stock_version", minimum=0),
    )


_PARSERS: dict[tuple[str, str], Callable[[_Envelope], Event]] = {
    (TOPIC_CATEGORY, "category.created"): _category,
    (TOPIC_CATEGORY, "category.updated"): _category,
    (TOPIC_PRODUCT, "product.created"): _product,
    (TOPIC_PRODUCT, "product.updated"): _product,
    (TOPIC_INVENTORY, "stock.changed"): _stock,
}


def _check_key(event: Event, key: bytes | None) -> None:
    expected = str(event.id) if isinstance(event, CategoryChanged) else event.sku
    if key != expected.encode("utf-8"):
        shown = key.decode("utf-8", "replace")[:80] if key is not None else None
        raise InvalidField(f"the record key {shown!r} does not name {expected!r}", field="key")
