"""Domain events (past tense) and the envelope they travel in.

Each event knows its topic and key; the unit of work turns events into outbox rows in the
same transaction as the change that caused them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime

SCHEMA_VERSION = 1

TOPIC_CATEGORY = "new-category"
TOPIC_PRODUCT = "new-product"
TOPIC_INVENTORY = "inventory-updated"
TOPICS = (TOPIC_CATEGORY, TOPIC_PRODUCT, TOPIC_INVENTORY)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class ProductChanged:
    sku: str
    name: str
    price: str
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
        fields = asdict(self)
        fields.pop("created")
        return fields


@dataclass(frozen=True)
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
        return asdict(self)


Event = CategoryChanged | ProductChanged | StockChanged


@dataclass(frozen=True)
class Envelope:
    """An event ready for the outbox: topic, key and the serialized JSON value."""

    event_id: str
    topic: str
    key: str
    value: str


def envelope(event: Event, occurred_at: datetime) -> Envelope:
    event_id = str(uuid.uuid4())
    value = {
        "event_id": event_id,
        "type": event.type,
        "schema": SCHEMA_VERSION,
        "occurred_at": occurred_at.isoformat(),
        "data": event.data(),
    }
    return Envelope(event_id, event.topic, event.key, json.dumps(value, separators=(",", ":")))
