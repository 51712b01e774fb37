"""Events (past tense) and the envelope they travel in: central encodes, the agent parses.

An event holds what goes in the envelope's `data`; it knows its topic, key and type. On the
way in, `parse_record` turns a Kafka record back into the same event, or raises a
`PoisonRecord` with a stable reason code: envelope problems are `envelope.invalid`, problems
inside `data` are `field.missing` or `field.invalid`, and the record key must name the
entity the event is about.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from invwire import event_fast_path as fast
from invwire.errors import (
    InvalidEnvelope,
    InvalidField,
    InvalidJson,
    MissingField,
    RecordTooLarge,
    UnknownType,
    UnsupportedSchema,
)
from invwire.orders import CENTRAL_STATUSES, STATUS_VERSIONS
from invwire.rules import MAX_EVENT_BYTES, is_sku, is_store_id
from invwire.text import first_refused_char
from invwire.topics import TOPIC_CATEGORY, TOPIC_INVENTORY, TOPIC_ORDER, TOPIC_PRODUCT

SCHEMA_VERSION = 1
# `allowance.*`: units set aside for a store (granted), given back (returned, or
# written_off by an admin without the store's statement), or taken from a store's
# allowance into its order (used); `quantity` is what any store may take.
STOCK_REASONS = frozenset(
    {
        "order",
        "cancel",
        "adjust",
        "set",
        "import",
        "create",
        "allowance.granted",
        "allowance.returned",
        "allowance.used",
        "allowance.written_off",
    }
)
# What a signed 64-bit column holds, in SQLite and in MariaDB's BIGINT alike.
MAX_INTEGER = 2**63 - 1


@dataclass(frozen=True, slots=True)
class CategoryChanged:
    id: int
    name: str
    version: int
    created: bool = False

    topic = TOPIC_CATEGORY

    @property
    def key(self) -> str:
        return str(self.id)

    @property
    def type(self) -> str:
        return "category.created" if self.created else "category.updated"

    def data(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "version": self.version}


@dataclass(frozen=True, slots=True)
class ProductChanged:
    sku: str
    name: str
    price: str  # a decimal string, exact: "19.99"
    category_id: int
    description: str
    active: bool
    version: int
    created: bool = False

    topic = TOPIC_PRODUCT

    @property
    def key(self) -> str:
        return self.sku

    @property
    def type(self) -> str:
        return "product.created" if self.created else "product.updated"

    def data(self) -> dict[str, object]:
        # written out: dataclasses.asdict deep-copies every value, a cost per event at central
        return {
            "sku": self.sku,
            "name": self.name,
            "price": self.price,
            "category_id": self.category_id,
            "description": self.description,
            "active": self.active,
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class StockChanged:
    sku: str
    quantity: int
    delta: int
    reason: str
    stock_version: int
    order_id: str | None = None

    topic = TOPIC_INVENTORY
    type = "stock.changed"

    @property
    def key(self) -> str:
        return self.sku

    def data(self) -> dict[str, object]:
        return {
            "sku": self.sku,
            "quantity": self.quantity,
            "delta": self.delta,
            "reason": self.reason,
            "stock_version": self.stock_version,
            "order_id": self.order_id,
        }


@dataclass(frozen=True, slots=True)
class OrderUpdated:
    """An order's status changed at central after it was placed (it was cancelled).

    Only what its store needs to show the change: every store may read the topic (Kafka's
    ACLs are per topic), so the event carries no lines, prices or users, and each agent keeps
    only its own store's. `version` is the status's place in the order's one-way life
    (invwire.orders.STATUS_VERSIONS)."""

    order_id: str
    store_id: str
    status: str
    version: int
    cancelled_at: str | None = None  # RFC 3339, UTC

    topic = TOPIC_ORDER
    type = "order.updated"

    @property
    def key(self) -> str:
        return self.order_id

    def data(self) -> dict[str, object]:
        return asdict(self)


def order_updated(
    order_id: str, store_id: str, status: str, cancelled_at: datetime | None
) -> OrderUpdated:
    """The event for an order whose status is now `status` (one of CENTRAL_STATUSES)."""
    moment = None if cancelled_at is None else _utc(cancelled_at).isoformat()
    return OrderUpdated(order_id, store_id, status, STATUS_VERSIONS[status], moment)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


Event = CategoryChanged | ProductChanged | StockChanged | OrderUpdated


@dataclass(frozen=True, slots=True)
class Envelope:
    """An event ready for Kafka: topic (unprefixed), key and the serialized JSON value."""

    event_id: str
    topic: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Received:
    """An event parsed from a record, with the envelope's id and time."""

    event_id: str
    occurred_at: datetime
    event: Event


def encode(event: Event, occurred_at: datetime) -> Envelope:
    event_id = str(uuid.uuid4())
    value = {
        "event_id": event_id,
        "type": event.type,
        "schema": SCHEMA_VERSION,
        "occurred_at": occurred_at.isoformat(),
        "data": event.data(),
    }
    return Envelope(event_id, event.topic, event.key, json.dumps(value, separators=(",", ":")))


def parse_record(topic: str, key: bytes | None, value: bytes | None) -> Received:
    """Parse one record of `topic` (unprefixed); raise a PoisonRecord subclass if unusable."""
    quick = _FAST_PATHS.get(topic)
    if quick is not None:
        received = quick(key, value)
        if received is not None:
            return received
    return parse_slowly(topic, key, value)


def parse_slowly(topic: str, key: bytes | None, value: bytes | None) -> Received:
    """parse_record without its fast path: the rules, and the reason for a bad record."""
    raw = _json_object(value)
    _check_schema(raw.get("schema"))
    event_id, kind = _event_id(raw), _type(raw)
    data, occurred_at = _data(raw), _timestamp(raw.get("occurred_at"))
    parser = _PARSERS.get((topic, kind))
    if parser is None:
        raise UnknownType(f"type {kind!r} is not known on topic {topic!r}")
    received = Received(event_id, occurred_at, parser(data))
    _check_key(received.event, key)
    return received


def _json_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise InvalidEnvelope("the record has no value (a tombstone)")
    if len(value) > MAX_EVENT_BYTES:
        raise RecordTooLarge(f"the value is {len(value)} bytes; the limit is {MAX_EVENT_BYTES}")
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


def _check_schema(schema: object) -> None:
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise InvalidEnvelope("schema must be a positive integer")
    if schema > SCHEMA_VERSION:
        raise UnsupportedSchema(f"schema {schema} is newer than {SCHEMA_VERSION}")


def _event_id(raw: dict[str, Any]) -> str:
    event_id = raw.get("event_id")
    if not isinstance(event_id, str) or _UUID.fullmatch(event_id) is None:
        raise InvalidEnvelope("event_id must be a UUID string")
    return event_id


def _type(raw: dict[str, Any]) -> str:
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidEnvelope("type must be a non-empty string")
    return kind


def _data(raw: dict[str, Any]) -> _Data:
    data = raw.get("data")
    if not isinstance(data, dict):
        raise InvalidEnvelope("data must be a JSON object")
    return _Data(data)


def _timestamp(raw: object) -> datetime:
    try:
        moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidEnvelope("occurred_at must be an RFC 3339 timestamp with a UTC offset")
    return moment.astimezone(UTC)


def _storable(text: str) -> bool:
    """JSON's \\ud800 escapes decode to lone surrogates, which no UTF-8 column can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Data:
    """Typed access to an event's `data` object; raises field.missing / field.invalid.

    It runs for every field of every consumed record (a good part of the replica's apply
    rate), so the checks are written for speed: `type(value) is int` is the same test as
    "an int, not a bool" for what JSON decodes (int or bool, never another subclass)."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def _get(self, name: str) -> object:
        try:
            return self._data[name]
        except KeyError:
            raise MissingField(f"data.{name} is missing", field=name) from None

    def _invalid(self, name: str, expected: str) -> InvalidField:
        return InvalidField(f"data.{name} must be {expected}", field=name)

    def integer(self, name: str, minimum: int = -MAX_INTEGER) -> int:
        value = self._get(name)
        if type(value) is not int:
            raise self._invalid(name, "an integer")
        if not minimum <= value <= MAX_INTEGER:
            raise self._invalid(name, f"between {minimum} and {MAX_INTEGER}")
        return value

    def text(self, name: str, *, allow_empty: bool = False) -> str:
        value = self._get(name)
        if type(value) is not str or not (value or allow_empty):
            raise self._invalid(name, "a string" if allow_empty else "a non-empty string")
        if not value.isascii() and not _storable(value):
            raise self._invalid(name, "valid UTF-8 text (no lone surrogates)")
        return value

    def shown_text(self, name: str, *, allow_empty: bool = False) -> str:
        """Text that reaches a terminal (a name, a description): no control, format or
        surrogate character, the rule central holds them to (invwire.text)."""
        value = self.text(name, allow_empty=allow_empty)
        index = first_refused_char(value)
        if index is not None:
            raise InvalidField(
                f"data.{name} holds a control or format character at index {index}",
                field=name,
                index=index,
            )
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

    def uuid(self, name: str) -> str:
        value = self.text(name)
        if _UUID.fullmatch(value) is None:
            raise self._invalid(name, "a UUID string")
        return value

    def store_id(self, name: str = "store_id") -> str:
        value = self.text(name)
        if not is_store_id(value):
            raise self._invalid(name, "a store id (a-z, 0-9, '-'; at most 64)")
        return value

    def optional_moment(self, name: str) -> str | None:
        """An RFC 3339 time with an offset, or null; returned in UTC."""
        value = self._get(name)
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise self._invalid(name, "an RFC 3339 timestamp with a UTC offset, or null")
        return moment.astimezone(UTC).isoformat()

    def sku(self, name: str = "sku") -> str:
        value = self.text(name)
        if not is_sku(value):
            raise self._invalid(name, "a SKU (A-Z, 0-9, '.', '_', '-'; at most 64)")
        return value

    def price(self, name: str) -> str:
        text = self.text(name)
        try:
            price = Decimal(text)
        except InvalidOperation:
            raise self._invalid(name, "a decimal string") from None
        if not price.is_finite() or price < 0:
            raise self._invalid(name, "a non-negative decimal string")
        return text


def _category(data: _Data, created: bool) -> CategoryChanged:
    return CategoryChanged(
        id=data.integer("id", minimum=1),
        name=data.shown_text("name"),
        version=data.integer("version", minimum=0),
        created=created,
    )


def _product(data: _Data, created: bool) -> ProductChanged:
    return ProductChanged(
        sku=data.sku(),
        name=data.shown_text("name"),
        price=data.price("price"),
        category_id=data.integer("category_id", minimum=1),
        description=data.shown_text("description", allow_empty=True),
        active=data.flag("active"),
        version=data.integer("version", minimum=0),
        created=created,
    )


def _stock(data: _Data, _: bool) -> StockChanged:
    # the fields checked in this order (the first bad one is the one reported), then passed
    # by position: the event most often consumed, and keywords cost a third more
    sku = data.sku()
    quantity = data.integer("quantity", minimum=0)
    delta = data.integer("delta")
    reason = data.choice("reason", STOCK_REASONS)
    order_id = data.optional_text("order_id")
    stock_version = data.integer("stock_version", minimum=0)
    return StockChanged(sku, quantity, delta, reason, stock_version, order_id)


def _order(data: _Data, _: bool) -> OrderUpdated:
    status = data.choice("status", frozenset(CENTRAL_STATUSES))
    version = data.integer("version", minimum=1)
    if version != STATUS_VERSIONS[status]:
        raise InvalidField(
            f"data.version must be {STATUS_VERSIONS[status]} for status {status!r}",
            field="version",
        )
    return OrderUpdated(
        order_id=data.uuid("order_id"),
        store_id=data.store_id(),
        status=status,
        version=version,
        cancelled_at=data.optional_moment("cancelled_at"),
    )


def _parser(build: Callable[[_Data, bool], Event], created: bool) -> Callable[[_Data], Event]:
    return lambda data: build(data, created)


_PARSERS: dict[tuple[str, str], Callable[[_Data], Event]] = {
    (TOPIC_CATEGORY, "category.created"): _parser(_category, True),
    (TOPIC_CATEGORY, "category.updated"): _parser(_category, False),
    (TOPIC_PRODUCT, "product.created"): _parser(_product, True),
    (TOPIC_PRODUCT, "product.updated"): _parser(_product, False),
    (TOPIC_INVENTORY, "stock.changed"): _parser(_stock, False),
    (TOPIC_ORDER, "order.updated"): _parser(_order, False),
}


def valid_stock(
    key: bytes | None, value: bytes | None
) -> tuple[fast.StockEnvelope, datetime] | None:
    """A valid stock.changed record as invwire.event_fast_path decoded it, with its time (in
    UTC); None: not known valid (parse_record decides). A replica's batch takes its stock
    records so (storeagent's batch_apply): a StockChanged and a Received made of each cost
    about a microsecond more, a twentieth of a record's whole cost there."""
    envelope = fast.decoded(fast.STOCK, key, value)
    if envelope is None or envelope.type != "stock.changed":
        return None
    data = envelope.data
    if data.reason not in STOCK_REASONS or data.order_id == "" or not _envelope_ok(envelope):
        return None
    occurred_at = fast.moment(envelope.occurred_at)
    if occurred_at is None:
        return None
    return envelope, occurred_at


def _fast_stock(key: bytes | None, value: bytes | None) -> Received | None:
    """A valid stock.changed record, parsed on invwire.event_fast_path; None: not known valid."""
    found = valid_stock(key, value)
    if found is None:
        return None
    envelope, occurred_at = found
    data = envelope.data
    event = StockChanged(
        data.sku, data.quantity, data.delta, data.reason, data.stock_version, data.order_id
    )
    return Received(envelope.event_id, occurred_at, event)


def _fast_product(key: bytes | None, value: bytes | None) -> Received | None:
    """A valid product.* record, parsed on invwire.event_fast_path; None: not known valid."""
    envelope = fast.decoded(fast.PRODUCT, key, value)
    if envelope is None or envelope.type not in _PRODUCT_TYPES or not _envelope_ok(envelope):
        return None
    data = envelope.data
    if not data.name or not _shown(data.name) or not _shown(data.description):
        return None
    occurred_at = fast.moment(envelope.occurred_at)
    if occurred_at is None or not _price_ok(data.price):
        return None
    event = ProductChanged(
        sku=data.sku,
        name=data.name,
        price=data.price,
        category_id=data.category_id,
        description=data.description,
        active=data.active,
        version=data.version,
        created=envelope.type == "product.created",
    )
    return Received(envelope.event_id, occurred_at, event)


def _envelope_ok(envelope: fast.StockEnvelope | fast.ProductEnvelope) -> bool:
    return envelope.schema <= SCHEMA_VERSION and _UUID.fullmatch(envelope.event_id) is not None


def _shown(text: str) -> bool:
    return first_refused_char(text) is None


def _price_ok(text: str) -> bool:
    try:
        price = Decimal(text)
    except InvalidOperation:
        return False
    return price.is_finite() and price >= 0


_PRODUCT_TYPES = frozenset({"product.created", "product.updated"})
_FAST_PATHS: dict[str, Callable[[bytes | None, bytes | None], Received | None]] = {
    TOPIC_INVENTORY: _fast_stock,
    TOPIC_PRODUCT: _fast_product,
}


def _check_key(event: Event, key: bytes | None) -> None:
    if key != event.key.encode("utf-8"):
        shown = key.decode("utf-8", "replace")[:80] if key is not None else None
        raise InvalidField(f"the record key {shown!r} does not name {event.key!r}", field="key")
