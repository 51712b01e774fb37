"""The store agent's fakes and factories for tests: a RecordSource without Kafka, a fixed
clock, envelope builders that produce exactly the wire format of docs/wire.md, a central that
answers orders like the real one, and recording heartbeat and systemd notifiers."""

from __future__ import annotations

import json
import threading
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from invwire.orders import Line
from invwire.topics import PARTITIONS, TOPIC_CATEGORY, TOPIC_INVENTORY, TOPIC_PRODUCT
from storeagent.errors import SourceUnavailable
from storeagent.sync.source import Record, TopicPartition
from storeagent.upstream.client import (
    CentralUnavailable,
    Confirmed,
    OrderResult,
    Refused,
    StockLevel,
    confirmed,
)
from storeagent.upstream.heartbeat import HeartbeatFailed

WIRE_PARTITIONS = PARTITIONS


class FixedClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 11, 29, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeRecordSource:
    """An in-memory broker with the RecordSource interface: produce() appends to a
    partition's log, poll() hands out batches from the assigned positions.

    deny(error) makes every request raise `error` (e.g. KafkaAuthFailed, as a revoked key
    would) until allow()."""

    def __init__(self, topics: Mapping[str, int] | None = None) -> None:
        self._logs: dict[TopicPartition, list[Record]] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._changed = threading.Condition()
        self.committed: dict[TopicPartition, int] = {}
        self.failing_polls = 0
        self.denied: SourceUnavailable | None = None
        self.closed = False
        for topic, partitions in (topics or {}).items():
            self.create_topic(topic, partitions)

    @classmethod
    def with_wire_topics(cls, prefix: str = "") -> FakeRecordSource:
        return cls({prefix + topic: n for topic, n in WIRE_PARTITIONS.items()})

    def create_topic(self, topic: str, partitions: int) -> None:
        with self._changed:
            for p in range(partitions):
                self._logs.setdefault(TopicPartition(topic, p), [])

    def produce(self, topic: str, key: str | bytes | None, value: bytes | None) -> Record:
        raw_key = key.encode() if isinstance(key, str) else key
        with self._changed:
            count = len(self._partition_ids(topic))
            if not count:
                raise ValueError(f"no topic {topic!r}; create_topic() it first")
            tp = TopicPartition(topic, zlib.crc32(raw_key or b"") % count)
            log = self._logs[tp]
            record = Record(topic, tp.partition, len(log), raw_key, value)
            log.append(record)
            self._changed.notify_all()
        return record

    def deny(self, error: SourceUnavailable) -> None:
        self.denied = error

    def allow(self) -> None:
        self.denied = None

    def _check_access(self) -> None:
        denied = self.denied
        if denied is not None:
            raise type(denied)(denied.message, **denied.details)

    def partitions_for(self, topic: str) -> set[int]:
        self._check_access()
        return self._partition_ids(topic)

    def _partition_ids(self, topic: str) -> set[int]:
        with self._changed:
            return {tp.partition for tp in self._logs if tp.topic == topic}

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        self._positions = {tp: 0 for tp in partitions}

    def seek(self, partition: TopicPartition, offset: int | None) -> None:
        self._positions[partition] = offset or 0

    def position(self, partition: TopicPartition) -> int | None:
        return self._positions.get(partition)

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        self._check_access()
        with self._changed:
            return {tp: len(self._logs[tp]) for tp in partitions}

    def highwater(self, partition: TopicPartition) -> int | None:
        with self._changed:
            return len(self._logs[partition])

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        if self.failing_polls:
            self.failing_polls -= 1
            raise SourceUnavailable("injected poll failure")
        self._check_access()
        with self._changed:
            if not self._pending():
                self._changed.wait(timeout_ms / 1000)
            return self._take(max_records)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._check_access()
        self.committed.update(offsets)

    def close(self) -> None:
        self.closed = True

    def _pending(self) -> bool:
        return any(pos < len(self._logs[tp]) for tp, pos in self._positions.items())

    def _take(self, max_records: int) -> list[Record]:
        batch: list[Record] = []
        for tp, pos in self._positions.items():
            taken = self._logs[tp][pos : pos + max_records - len(batch)]
            batch += taken
            self._positions[tp] = pos + len(taken)
        return batch


def envelope(kind: str, data: Mapping[str, Any], /, **overrides: Any) -> bytes:
    """A wire envelope as bytes; overrides replace (or, with None, drop) envelope fields."""
    value: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "schema": 1,
        "occurred_at": "2026-11-29T10:00:00.123456+00:00",
        "data": dict(data),
    }
    value.update(overrides)
    return json.dumps({k: v for k, v in value.items() if v is not None}).encode()


def category_data(**overrides: Any) -> dict[str, Any]:
    return {"id": 3, "name": "Dairy", "version": 1} | overrides


def product_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "sku": "MILK-1L",
        "name": "Milk 1 L",
        "price": "1.25",
        "category_id": 3,
        "description": "",
        "active": True,
        "version": 1,
    }
    return data | overrides


def stock_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "sku": "MILK-1L",
        "quantity": 40,
        "delta": -2,
        "reason": "order",
        "order_id": None,
        "stock_version": 7,
    }
    return data | overrides


def category_event(**data: Any) -> tuple[str, bytes, bytes]:
    """(unprefixed topic, key, value) of a category.updated record."""
    payload = category_data(**data)
    return TOPIC_CATEGORY, str(payload["id"]).encode(), envelope("category.updated", payload)


def product_event(**data: Any) -> tuple[str, bytes, bytes]:
    payload = product_data(**data)
    return TOPIC_PRODUCT, payload["sku"].encode(), envelope("product.updated", payload)


def stock_event(**data: Any) -> tuple[str, bytes, bytes]:
    payload = stock_data(**data)
    return TOPIC_INVENTORY, payload["sku"].encode(), envelope("stock.changed", payload)


@dataclass(frozen=True)
class CentralCall:
    idempotency_key: str
    lines: tuple[Line, ...]
    request_id: str | None


class FakeCentral:
    """A CentralClient with central's order semantics in memory: all-or-nothing reservation
    with per-SKU stock versions, and a replayed key answered with its first order.

    Steer it with set_stock(), refuse_next() and go_down(); `calls` records every call and
    `on_call(key, lines)` runs first on each (e.g. to look at the replica at that moment).
    lose_answers() commits orders but answers as a timeout would; find_order() and
    cancel_order() (recorded in `lookups` and `cancels`) act on the orders it holds.
    """

    def __init__(self, store_id: str = "s1", clock: Callable[[], datetime] | None = None):
        self.store_id = store_id
        self.clock = clock or FixedClock()
        self.stock: dict[str, StockLevel] = {}
        self.calls: list[CentralCall] = []
        self.on_call: Callable[[str, Sequence[Line]], None] | None = None
        self._orders: dict[str, Confirmed] = {}
        self._refusals: list[Refused] = []
        self._down: int | None = 0
        self._down_reason = "connect"
        self._lost_answers = 0
        self.cancelled: set[str] = set()
        self.lookups: list[str] = []
        self.cancels: list[str] = []
        self.closed = False

    def set_stock(self, sku: str, quantity: int, stock_version: int = 1) -> None:
        self.stock[sku] = StockLevel(sku, quantity, stock_version)

    def refuse_next(
        self,
        status: int = 409,
        code: str = "stock.insufficient",
        message: str = "refused",
        **details: Any,
    ) -> None:
        self._refusals.append(Refused(status, code, message, details))

    def go_down(self, calls: int | None = None, reason: str = "connect") -> None:
        """Be unreachable for the next `calls` calls, or until come_back() when None;
        `reason` "timeout" (or "http.503") leaves open whether the order got through."""
        self._down, self._down_reason = calls, reason

    def lose_answers(self, calls: int = 1) -> None:
        """The next `calls` orders are committed, but their answers are lost (a timeout)."""
        self._lost_answers = calls

    def order_for(self, idempotency_key: str) -> dict[str, Any] | None:
        """The order a key created, with its status now, as GET /orders?idempotency_key=."""
        placed = self._orders.get(idempotency_key)
        if placed is None:
            return None
        status = "cancelled" if placed.order_id in self.cancelled else "confirmed"
        return {**placed.order, "status": status}

    def find_order(self, idempotency_key: str) -> dict[str, Any] | None:
        self.lookups.append(idempotency_key)
        self._check_up()
        return self.order_for(idempotency_key)

    def cancel_order(self, order_id: str) -> dict[str, Any]:
        self.cancels.append(order_id)
        self._check_up()
        key = next(k for k, placed in self._orders.items() if placed.order_id == order_id)
        if order_id not in self.cancelled:
            self.cancelled.add(order_id)
            for line in self._orders[key].order["lines"]:
                level = self.stock[line["sku"]]
                self.set_stock(
                    line["sku"], level.quantity + line["quantity"], level.stock_version + 1
                )
        return self.order_for(key) or {}

    def _check_up(self) -> None:
        if self._down is None or self._down > 0:
            self._down = None if self._down is None else self._down - 1
            raise CentralUnavailable("fake central is down", reason=self._down_reason)

    def come_back(self) -> None:
        self._down = 0

    def place_order(
        self, idempotency_key: str, lines: Sequence[Line], *, request_id: str | None = None
    ) -> OrderResult:
        self.calls.append(CentralCall(idempotency_key, tuple(lines), request_id))
        if self.on_call is not None:
            self.on_call(idempotency_key, lines)
        self._check_up()
        if self._refusals:
            return self._refusals.pop(0)
        if idempotency_key not in self._orders:
            result = self._reserve(lines)
            if isinstance(result, Refused):
                return result
            self._orders[idempotency_key] = result
        if self._lost_answers:
            self._lost_answers -= 1
            raise CentralUnavailable("central did not answer in time", reason="timeout")
        return self._orders[idempotency_key]

    def close(self) -> None:
        self.closed = True

    def _reserve(self, lines: Sequence[Line]) -> OrderResult:
        unknown = [line.sku for line in lines if line.sku not in self.stock]
        if unknown:
            return Refused(422, "order.sku_unknown", "unknown SKU", {"skus": unknown})
        short = [
            {
                "sku": line.sku,
                "requested": line.quantity,
                "available": self.stock[line.sku].quantity,
            }
            for line in lines
            if self.stock[line.sku].quantity < line.quantity
        ]
        if short:
            return Refused(409, "stock.insufficient", "Not enough stock", {"lines": short})
        for line in lines:
            level = self.stock[line.sku]
            self.set_stock(line.sku, level.quantity - line.quantity, level.stock_version + 1)
        return confirmed(self._order(lines))

    def _order(self, lines: Sequence[Line]) -> dict[str, Any]:
        price = Decimal("1.25")
        return {
            "id": str(uuid.uuid4()),
            "store_id": self.store_id,
            "status": "confirmed",
            "created_at": self.clock().isoformat(),
            "created_by": f"store:{self.store_id}",
            "cancelled_at": None,
            "total": f"{sum(price * line.quantity for line in lines):.2f}",
            "lines": [
                {
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "unit_price": f"{price:.2f}",
                    "stock": {
                        "quantity": self.stock[line.sku].quantity,
                        "stock_version": self.stock[line.sku].stock_version,
                    },
                }
                for line in lines
            ],
        }


class RecordingHeartbeat:
    """The fake HeartbeatSender: keeps each report; `failing` > 0 refuses that many sends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reports: list[dict[str, Any]] = []
        self.failing = 0
        self.closed = False

    def send(self, report: Mapping[str, Any]) -> None:
        with self._lock:
            if self.failing:
                self.failing -= 1
                raise HeartbeatFailed("injected heartbeat failure")
            self.reports.append(dict(report))

    def close(self) -> None:
        self.closed = True


class RecordingNotifier:
    """The fake systemd Notifier: keeps each message as a dict of its assignments."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[dict[str, str]] = []
        self.closed = False

    def send(self, fields: Sequence[str]) -> None:
        if fields:
            with self._lock:
                self.messages.append(dict(field.split("=", 1) for field in fields))

    def close(self) -> None:
        self.closed = True

    def values(self, name: str) -> list[str]:
        with self._lock:
            return [message[name] for message in self.messages if name in message]
