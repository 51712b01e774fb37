"""The store agent's fakes and factories for tests: a RecordSource without Kafka, a fixed
clock, envelope builders that produce exactly the wire format of docs/wire.md, a central that
answers orders like the real one, and recording heartbeat and systemd notifiers."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from invwire.errors.agent import SourceUnavailable
from invwire.headers import EPOCH_HEADER, SEQ_HEADER
from invwire.orders import Line, fingerprint
from invwire.topics import (
    PARTITIONS,
    TOPIC_CATEGORY,
    TOPIC_INVENTORY,
    TOPIC_ORDER,
    TOPIC_PRODUCT,
)
from storeagent.replica.db import META_BOOTSTRAPPED, Replica
from storeagent.replica.local_orders import LocalOrders
from storeagent.sync.source import Record, TopicPartition
from storeagent.upstream.client import (
    Allowance,
    AllowanceList,
    CentralRefusedCall,
    CentralUnavailable,
    Confirmed,
    OrderResult,
    RecoveredSale,
    RecoveryAnswer,
    Refused,
    StatementAnswer,
    StockLevel,
    confirmed,
)
from storeagent.upstream.heartbeat import HeartbeatFailed
from storeagent.upstream.last_heard import LastHeard, LastHeardUnavailable

WIRE_PARTITIONS = PARTITIONS

Lines = Sequence[Line]
SoldUnder = Mapping[str, str] | None  # the grant each SKU of a sale was sold under


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
    would) until allow(). Each topic has an id (`topic_ids`), new when it is re-created;
    records can be deleted from a partition's start (delete_records) or compacted away
    (compact_away): a log may have gaps, which poll() skips."""

    def __init__(self, topics: Mapping[str, int] | None = None) -> None:
        self._logs: dict[TopicPartition, list[Record | None]] = {}
        self._starts: dict[TopicPartition, int] = {}
        self.topic_ids: dict[str, str] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._changed = threading.Condition()
        self.committed: dict[TopicPartition, int] = {}
        self.failing_polls = 0
        self.failing_commits = 0
        self.commit_attempts = 0
        self.denied: SourceUnavailable | None = None
        self.closed = False
        self.cluster: str | None = "fake-cluster"  # what cluster_id() answers
        for topic, partitions in (topics or {}).items():
            self.create_topic(topic, partitions)

    @classmethod
    def with_wire_topics(cls, prefix: str = "") -> FakeRecordSource:
        return cls({prefix + topic: n for topic, n in WIRE_PARTITIONS.items()})

    def create_topic(self, topic: str, partitions: int) -> None:
        with self._changed:
            for p in range(partitions):
                self._logs.setdefault(TopicPartition(topic, p), [])
            self.topic_ids.setdefault(topic, str(uuid.uuid4()))

    def connection(self) -> FakeRecordSource:
        """Another consumer of the same broker (as each KafkaRecordSource.connect() is): the
        same logs and group commits, positions of its own. Pass `fake.connection` as an
        agent's connect when its loop may open a second one (a resync's rebuild does)."""
        other = FakeRecordSource.__new__(FakeRecordSource)
        other.__dict__.update(self.__dict__)
        other._positions = {}
        other.closed = False
        return other

    def recreate_topic(self, topic: str) -> None:
        """The topic deleted and created again: every partition's log starts over empty, at
        offset 0, and the topic has a new id."""
        self.lose_data(topic)
        with self._changed:
            self.topic_ids[topic] = str(uuid.uuid4())

    def lose_data(self, topic: str) -> None:
        """A broker that lost the topic's data but kept its metadata: every partition's log
        starts over empty, at offset 0; the topic id stays."""
        with self._changed:
            for tp in self._logs:
                if tp.topic == topic:
                    self._logs[tp] = []
                    self._starts[tp] = 0

    def delete_records(self, tp: TopicPartition, before: int) -> None:
        """Kafka's DeleteRecords (or retention): the partition's log starts at `before`."""
        with self._changed:
            self._starts[tp] = before

    def compact_away(self, tp: TopicPartition, offset: int) -> None:
        """The record at `offset` removed by compaction: a gap the log keeps."""
        with self._changed:
            self._logs[tp][offset] = None

    def produce(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> Record:
        raw_key = key.encode() if isinstance(key, str) else key
        with self._changed:
            count = len(self._partition_ids(topic))
            if not count:
                raise ValueError(f"no topic {topic!r}; create_topic() it first")
            tp = TopicPartition(topic, zlib.crc32(raw_key or b"") % count)
            log = self._logs[tp]
            record = Record(topic, tp.partition, len(log), raw_key, value, tuple(headers))
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

    def cluster_id(self) -> str | None:
        self._check_access()
        return self.cluster

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

    def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        self._check_access()
        with self._changed:
            return {tp: self._starts.get(tp, 0) for tp in partitions}

    def topic_id(self, topic: str) -> str | None:
        with self._changed:
            return self.topic_ids.get(topic)

    def highwater(self, partition: TopicPartition) -> int | None:
        with self._changed:
            return len(self._logs[partition])

    def wake(self) -> None:
        """End a poll that is waiting for records now, with none (as its timeout would)."""
        with self._changed:
            self._changed.notify_all()

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
        self.commit_attempts += 1
        if self.failing_commits > 0:
            self.failing_commits -= 1
            raise SourceUnavailable("injected commit failure")
        self._check_access()
        self.committed.update(offsets)

    def close(self) -> None:
        self.closed = True

    def _pending(self) -> bool:
        return any(pos != len(self._logs[tp]) for tp, pos in self._positions.items())

    def _take(self, max_records: int) -> list[Record]:
        batch: list[Record] = []
        for tp, asked in self._positions.items():
            log, start = self._logs[tp], self._starts.get(tp, 0)
            # out of range: the agent's client resets to the earliest offset on its own
            pos = start if asked > len(log) or asked < start else asked
            while pos < len(log) and len(batch) < max_records:
                record = log[pos]
                pos += 1
                if record is not None:
                    batch.append(record)
            self._positions[tp] = pos
        return batch


def epoch_headers(epoch: int, seq: int = 1) -> tuple[tuple[str, bytes | None], ...]:
    """The headers central puts on a record it publishes in `epoch` (invwire.headers)."""
    return ((EPOCH_HEADER, str(epoch).encode()), (SEQ_HEADER, str(seq).encode()))


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


def order_data(**overrides: Any) -> dict[str, Any]:
    """An order.updated event's data: order 5f0c9a1e-... of store s1, cancelled."""
    return {
        "order_id": "5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13",
        "store_id": "s1",
        "status": "cancelled",
        "version": 2,
        "cancelled_at": "2026-11-29T10:05:00+00:00",
    } | overrides


def order_event(**data: Any) -> tuple[str, bytes, bytes]:
    payload = order_data(**data)
    return TOPIC_ORDER, payload["order_id"].encode(), envelope("order.updated", payload)


@dataclass(frozen=True)
class CentralCall:
    idempotency_key: str
    lines: tuple[Line, ...]
    request_id: str | None
    grants: Mapping[str, str] | None = None  # the grant_id of each SKU's line, when sent


@dataclass
class FakeGrant:
    """An allowance as central keeps it: `remaining` units held for the store."""

    id: str
    sku: str
    units: int
    remaining: int
    expires_at: datetime
    state: str = "live"


class FakeCentral:
    """A CentralClient with central's order semantics in memory: all-or-nothing reservation
    with per-SKU stock versions, and a replayed key answered with its first order.

    Steer it with set_stock(), refuse_next() and go_down(); `calls` records every call and
    `on_call(key, lines)` runs first on each (e.g. to look at the replica at that moment).
    lose_answers() commits orders but answers as a timeout would; find_order() and
    cancel_order() (recorded in `lookups` and `cancels`) act on the orders it holds; an id it
    does not hold is refused 404 `order.not_found`, and refuse_cancels() makes it refuse
    every cancel with a status and code (e.g. 401 for a revoked key).
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
        self.cancelled_at: dict[str, str] = {}
        self.lookups: list[str] = []
        self.cancels: list[str] = []
        self.closed = False
        self._cancel_refusal: Refused | None = None
        # Central's epoch in its answers (None: it sends none); restore() raises it.
        self.epoch: int | None = None
        self.recoveries: list[list[dict[str, Any]]] = []  # each POST /orders/recover's orders
        self.recover_refusal: Refused | None = None  # refuse every recovery call so
        # Allowances (docs/wire.md): grant() holds units; lines naming a grant are booked
        # against it and never refused; statements are recorded with their `sold`.
        self.grants: dict[str, FakeGrant] = {}
        self.margin_s = 300.0
        self.allowance_fetches = 0
        self.statements: list[tuple[str, int]] = []
        self.statement_refusals: list[Refused] = []

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
        if placed.order_id not in self.cancelled:
            return {**placed.order, "status": "confirmed"}
        at = self.cancelled_at[placed.order_id]
        return {**placed.order, "status": "cancelled", "cancelled_at": at}

    def find_order(self, idempotency_key: str) -> dict[str, Any] | None:
        self.lookups.append(idempotency_key)
        self._check_up()
        return self.order_for(idempotency_key)

    def refuse_cancels(self, status: int = 401, code: str = "auth.invalid") -> None:
        self._cancel_refusal = Refused(status, code, f"refused ({code})")

    def cancel_order(self, order_id: str) -> dict[str, Any]:
        self.cancels.append(order_id)
        self._check_up()
        if self._cancel_refusal is not None:
            raise CentralRefusedCall("refused", self._cancel_refusal)
        key = next((k for k, p in self._orders.items() if p.order_id == order_id), None)
        if key is None:
            refusal = Refused(404, "order.not_found", f"no order {order_id}")
            raise CentralRefusedCall("central answered HTTP 404", refusal)
        if order_id not in self.cancelled:
            self.cancelled.add(order_id)
            self.cancelled_at[order_id] = self.clock().isoformat()
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

    def grant(self, sku: str, units: int, ttl_s: float = 3600) -> str:
        """POST /allowances: `units` of `sku` held for the store until now + `ttl_s`."""
        level = self.stock[sku]
        self.set_stock(sku, level.quantity - units, level.stock_version + 1)
        grant_id = str(uuid.uuid4())
        expires = self.clock() + timedelta(seconds=ttl_s)
        self.grants[grant_id] = FakeGrant(grant_id, sku, units, units, expires)
        return grant_id

    def my_allowances(self) -> AllowanceList:
        self.allowance_fetches += 1
        self._check_up()
        items = tuple(
            Allowance(g.id, g.sku, g.units, g.remaining, g.expires_at)
            for g in self.grants.values()
            if g.state == "live"
        )
        return AllowanceList(items, self.margin_s, self.clock().isoformat())

    def allowance_statement(self, grant_id: str, sold: int) -> StatementAnswer:
        self.statements.append((grant_id, sold))
        self._check_up()
        if self.statement_refusals:
            return StatementAnswer(False, self.statement_refusals.pop(0))
        grant = self.grants[grant_id]
        if grant.state != "closed":
            level = self.stock[grant.sku]
            self.set_stock(grant.sku, level.quantity + grant.remaining, level.stock_version + 1)
            grant.state, grant.remaining = "closed", 0
        return StatementAnswer(True)

    def place_order(
        self, key: str, lines: Lines, *, request_id: str | None = None, grants: SoldUnder = None
    ) -> OrderResult:
        self.calls.append(CentralCall(key, tuple(lines), request_id, grants))
        if self.on_call is not None:
            self.on_call(key, lines)
        self._check_up()
        if self._refusals:
            return self._refusals.pop(0)
        replayed = key in self._orders
        if not replayed and grants:
            self._orders[key] = self._book(lines, grants)
        elif not replayed:
            result = self._reserve(lines)
            if isinstance(result, Refused):
                return result
            self._orders[key] = result
        if self._lost_answers:
            self._lost_answers -= 1
            raise CentralUnavailable("central did not answer in time", reason="timeout")
        placed = replace(self._orders[key], epoch=self.epoch)
        return replace(placed, replayed=True) if replayed else placed  # Idempotent-Replayed

    def close(self) -> None:
        self.closed = True

    def restore(self, keep: Collection[str] = (), epoch: int = 2) -> None:
        """Central restored from a backup that held only the orders of the keys in `keep`:
        the others are lost (their stock stays taken, as a round of later changes would
        leave it), and central answers with `epoch` from now on."""
        self._orders = {k: placed for k, placed in self._orders.items() if k in keep}
        self.epoch = epoch

    def recover_orders(self, orders: Sequence[Mapping[str, Any]]) -> RecoveryAnswer:
        """POST /orders/recover as central settles it (docs/wire.md)."""
        self.recoveries.append([dict(order) for order in orders])
        self._check_up()
        if self.recover_refusal is not None:
            raise CentralRefusedCall("refused", self.recover_refusal)
        if (self.epoch or 1) < 2:
            refusal = Refused(409, "recovery.no_restore", "central was never restored")
            raise CentralRefusedCall("central answered HTTP 409", refusal)
        return RecoveryAnswer(self.epoch or 1, tuple(self._recover(o) for o in orders))

    def _recover(self, sent: Mapping[str, Any]) -> RecoveredSale:
        key = str(sent["idempotency_key"])
        lines = [Line(line["sku"], line["quantity"]) for line in sent["lines"]]
        held = self._orders.get(key)
        if held is not None:
            same = [(x["sku"], x["quantity"]) for x in held.order["lines"]] == [
                (line.sku, line.quantity) for line in lines
            ]
            if not same:
                return RecoveredSale(key, "conflict", "idempotency.mismatch", "other lines")
            return RecoveredSale(key, "present", order=self.order_for(key))
        result = self._reserve(lines)
        if isinstance(result, Refused):
            return RecoveredSale(key, "unrecovered", result.code, result.message)
        order = {**result.order, "id": sent["id"], "created_at": sent["created_at"]}
        self._orders[key] = confirmed(order, epoch=self.epoch)
        return RecoveredSale(key, "recovered", order=order)

    def _book(self, lines: Sequence[Line], grants: Mapping[str, str]) -> Confirmed:
        """Lines naming a grant are taken from it, whatever its state: never refused."""
        for line in lines:
            grant = self.grants[grants[line.sku]]
            grant.remaining -= line.quantity
            level = self.stock[line.sku]
            self.set_stock(line.sku, level.quantity, level.stock_version + 1)
        return confirmed(self._order(lines))

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
            if self.stock[line.sku].quantity + self._held_for(line.sku) < line.quantity
        ]
        if short:
            return Refused(409, "stock.insufficient", "Not enough stock", {"lines": short})
        draws: list[dict[str, Any]] = []
        for line in lines:
            level = self.stock[line.sku]
            taken_from_grants = max(0, line.quantity - level.quantity)
            draws += self._draw(line.sku, taken_from_grants)
            left = level.quantity - (line.quantity - taken_from_grants)
            self.set_stock(line.sku, left, level.stock_version + 1)
        return confirmed({**self._order(lines), "allowances": draws})

    def _live_grants(self, sku: str) -> list[FakeGrant]:
        """The store's grants of `sku` an online order may draw on, first to expire first."""
        now = self.clock()
        live = [g for g in self.grants.values() if g.sku == sku and g.state == "live"]
        return sorted((g for g in live if g.expires_at > now), key=lambda g: g.expires_at)

    def _held_for(self, sku: str) -> int:
        return sum(grant.remaining for grant in self._live_grants(sku))

    def _draw(self, sku: str, units: int) -> list[dict[str, Any]]:
        """As central: what anyone may take first, then the store's own grants."""
        draws = []
        for grant in self._live_grants(sku):
            taken = min(units, grant.remaining)
            if taken:
                grant.remaining -= taken
                units -= taken
                draws.append({"grant_id": grant.id, "sku": sku, "units": taken})
        return draws

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
    """The fake HeartbeatSender: keeps each report; `failing` > 0 refuses that many sends;
    answers with `central_time()` when set (central's clock), else with no time."""

    def __init__(self, central_time: Callable[[], datetime] | None = None) -> None:
        self._lock = threading.Lock()
        self.reports: list[dict[str, Any]] = []
        self.failing = 0
        self.closed = False
        self.central_time = central_time

    def send(self, report: Mapping[str, Any]) -> datetime | None:
        with self._lock:
            if self.failing:
                self.failing -= 1
                raise HeartbeatFailed("injected heartbeat failure")
            self.reports.append(dict(report))
            return self.central_time() if self.central_time else None

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


class ReplicaWriteLock:
    """Another connection's hold on a replica file's write lock (`BEGIN IMMEDIATE`), as a
    stalled disk or another process holding the lock would be: the agent's writes wait out
    their busy timeout and fail with "database is locked"; reads go on (WAL). Real SQLite,
    no fake: taken and released from any thread (e.g. a proxy's, then the test's)."""

    def __init__(self, path: Path, timeout_s: float = 30.0) -> None:
        self._connection = sqlite3.connect(
            path, timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        self._guard = threading.Lock()
        self.held = False
        self.taken = 0  # how many times it was taken

    def take(self) -> None:
        with self._guard:
            if not self.held:
                self._connection.execute("BEGIN IMMEDIATE")
                self.held = True
                self.taken += 1

    def release(self) -> None:
        with self._guard:
            if self.held:
                self._connection.execute("ROLLBACK")
                self.held = False

    def close(self) -> None:
        self.release()
        self._connection.close()


def left_by_a_killed_agent(replica: Replica, key: str, lines: Sequence[Line]) -> str:
    """What an agent process killed (SIGKILL) after it saved and sent a sale, before it
    answered the till, leaves in the replica: the sale `pending` under that process's own
    instance id, and nothing in the doubt journal. Its local_ref."""
    local_ref = str(uuid.uuid4())
    with replica.transaction():
        LocalOrders(replica).add_pending(
            local_ref, key, fingerprint(lines), lines, instance_id=f"killed-{uuid.uuid4().hex}"
        )
    return local_ref


class FakeLastHeard:
    """The fake LastHeardSource: answers `heard` (central's record of the store's last
    heartbeat; None: a central that keeps none), or raises LastHeardUnavailable while
    `down`. `asked` counts the calls."""

    def __init__(self, heard: LastHeard | None = None, *, down: bool = False) -> None:
        self.heard, self.down = heard, down
        self.asked = 0
        self.closed = False

    def last_heard(self) -> LastHeard | None:
        self.asked += 1
        if self.down:
            raise LastHeardUnavailable("fake central is down")
        return self.heard

    def close(self) -> None:
        self.closed = True


def heard_queued(queued: int, replica_id: str | None = "another-replica") -> LastHeard:
    """Central last heard `queued` sales queued offline, from replica `replica_id`."""
    return LastHeard(
        last_seen="2026-11-29T09:59:50.000+00:00",
        offline_queue=queued,
        replica_id=replica_id,
        instance_id="an-earlier-process",
    )


class FailingKafkaConsumer:
    """Stands in for kafka-python's KafkaConsumer where every call raises `error` (by default
    the KeyError kafka-python raises from end_offsets for a topic re-created under it)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or KeyError(TopicPartition("inventory-updated", 0))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        return fail


class HeldConnections:
    """connect() for a sync loop over `fake`: the first connection is the live loop's; later
    ones (a rebuild's) return nothing from poll() while `held` is set, so that a rebuild
    stays running until the test lets it go on."""

    def __init__(self, fake: FakeRecordSource) -> None:
        self.fake = fake
        self.held = threading.Event()
        self.opened = 0

    def __call__(self) -> FakeRecordSource:
        self.opened += 1
        source = self.fake.connection()
        return source if self.opened == 1 else HeldSource(source, self.held)


class HeldSource(FakeRecordSource):
    def __init__(self, source: FakeRecordSource, held: threading.Event) -> None:
        self.__dict__.update(source.__dict__)
        self._held = held

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        if self._held.is_set():
            self._held.wait(timeout_ms / 1000)  # nothing comes while held
            return []
        return super().poll(timeout_ms, max_records)


def bootstrapped(replica: Replica, *events: tuple[str, bytes, bytes]) -> Replica:
    """`replica` with `events` (e.g. product_event(), stock_event()) applied as one batch of
    partition 0, in order, and marked bootstrapped: a store ready to sell."""
    from storeagent.sync.apply import apply_batch

    records = [Record(t, 0, offset, key, value) for offset, (t, key, value) in enumerate(events)]
    apply_batch(replica, records, prefix="", now=FixedClock()())
    with replica.transaction():
        replica.set_meta({META_BOOTSTRAPPED: "1"})
    return replica


class BufferedKafkaConsumer:
    """Stands in for kafka-python's KafkaConsumer over one partition holding `count` records:
    poll() answers every record not yet taken (or `max_records` of them) and counts its
    calls; seek() raises `seek_error` when one is set."""

    def __init__(self, topic: str, count: int, seek_error: Exception | None = None) -> None:
        self.topic, self.count, self.seek_error = topic, count, seek_error
        self.next_offset, self.polls = 0, 0

    def poll(self, timeout_ms: int, max_records: int) -> dict[object, list[object]]:
        from kafka.consumer.fetcher import ConsumerRecord

        self.polls += 1
        last = min(self.count, self.next_offset + max_records)
        records = [
            ConsumerRecord(self.topic, 0, -1, n, 0, 0, b"k", b"{}", [], None, 1, 2, 0)
            for n in range(self.next_offset, last)
        ]
        self.next_offset = last
        return {"tp": records} if records else {}

    def position(self, partition: object, timeout_ms: int | None = None) -> int:
        return self.next_offset

    def seek(self, partition: object, offset: int) -> None:
        if self.seek_error is not None:
            raise self.seek_error
        self.next_offset = offset
