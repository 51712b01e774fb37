"""The store's SQLite replica: opening, schema migrations and the row-level writes.

Write helpers never commit: the caller holds the transaction (apply_batch one per batch,
OrderDesk one per step of a sale).
Versioned upserts change a row only when the incoming version is newer than the stored one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

import peewee
from peewee import EXCLUDED

from storeagent.errors import PoisonRecord, ReplicaSchemaTooNew, ReplicaUnavailable
from storeagent.events import CategoryChanged, ProductChanged, StockChanged
from storeagent.models import LocalOrder, ReplicaModels, bind_models
from storeagent.source import Record, TopicPartition

SCHEMA_VERSION = 2
PRAGMAS = {"journal_mode": "wal", "synchronous": "normal", "busy_timeout": 5000}

META_SCHEMA_VERSION = "schema_version"
META_LAST_EVENT_AT = "last_event_at"
META_LAST_APPLIED_AT = "last_applied_at"
META_EVENTS_APPLIED = "events_applied"
META_BOOTSTRAPPED = "bootstrapped"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def open_replica(path: Path) -> Replica:
    """Open (creating if needed) the replica at `path` and bring its schema up to date."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replica = Replica(peewee.SqliteDatabase(str(path), pragmas=PRAGMAS, timeout=5))
        replica.migrate()
    except (OSError, peewee.DatabaseError) as exc:
        raise ReplicaUnavailable(f"cannot open the replica {path}: {exc}", path=str(path)) from exc
    return replica


class Replica:
    def __init__(self, db: peewee.SqliteDatabase) -> None:
        self.db = db
        self.m: ReplicaModels = bind_models(db)

    def transaction(self) -> AbstractContextManager[Any]:
        """BEGIN IMMEDIATE: take the write lock up front so a batch never fails half-way."""
        return self.db.atomic("IMMEDIATE")

    def close(self) -> None:
        self.db.close()

    def migrate(self) -> None:
        with self.transaction():
            self.m.meta.create_table(safe=True)
            current = int(self.get_meta(META_SCHEMA_VERSION) or 0)
            if current > SCHEMA_VERSION:
                raise ReplicaSchemaTooNew(found=current, supported=SCHEMA_VERSION)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                _MIGRATIONS[version](self)
                self.set_meta({META_SCHEMA_VERSION: str(version)})

    def get_meta(self, key: str) -> str | None:
        row = self.m.meta.get_or_none(self.m.meta.key == key)
        return None if row is None else row.value

    def meta(self) -> dict[str, str]:
        return {row.key: row.value for row in self.m.meta.select()}

    def set_meta(self, values: Mapping[str, str]) -> None:
        if not values:
            return
        rows = [{"key": key, "value": value} for key, value in values.items()]
        meta = self.m.meta
        meta.insert_many(rows).on_conflict(
            conflict_target=[meta.key], update={meta.value: EXCLUDED.value}
        ).execute()

    def is_bootstrapped(self) -> bool:
        return self.get_meta(META_BOOTSTRAPPED) == "1"

    def stored_offsets(self) -> dict[TopicPartition, int]:
        return {
            TopicPartition(row.topic, row.partition): row.next_offset
            for row in self.m.offset.select()
        }

    def save_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        off = self.m.offset
        rows = [
            {"topic": tp.topic, "partition": tp.partition, "next_offset": nxt}
            for tp, nxt in offsets.items()
        ]
        off.insert_many(rows).on_conflict(
            conflict_target=[off.topic, off.partition],
            update={off.next_offset: EXCLUDED.next_offset},
        ).execute()

    def upsert_category(self, event: CategoryChanged) -> bool:
        cat = self.m.category
        query = cat.insert(id=event.id, name=event.name, version=event.version).on_conflict(
            conflict_target=[cat.id],
            update={cat.name: EXCLUDED.name, cat.version: EXCLUDED.version},
            where=(EXCLUDED.version > cat.version),
        )
        return _changed(query)

    def upsert_product(self, event: ProductChanged) -> bool:
        prod = self.m.product
        query = prod.insert(
            sku=event.sku,
            name=event.name,
            price=str(event.price),
            category_id=event.category_id,
            description=event.description,
            active=event.active,
            version=event.version,
        ).on_conflict(
            conflict_target=[prod.sku],
            update={
                prod.name: EXCLUDED.name,
                prod.price: EXCLUDED.price,
                prod.category_id: EXCLUDED.category_id,
                prod.description: EXCLUDED.description,
                prod.active: EXCLUDED.active,
                prod.version: EXCLUDED.version,
            },
            where=(EXCLUDED.version > prod.version),
        )
        return _changed(query)

    def upsert_stock(self, event: StockChanged) -> bool:
        return self.set_stock(
            event.sku, event.quantity, event.stock_version, updated_at=iso(event.occurred_at)
        )

    def set_stock(self, sku: str, quantity: int, stock_version: int, *, updated_at: str) -> bool:
        """The versioned upsert shared by Kafka events and central's order answers."""
        stock = self.m.stock
        query = stock.insert(
            sku=sku, quantity=quantity, stock_version=stock_version, updated_at=updated_at
        ).on_conflict(
            conflict_target=[stock.sku],
            update={
                stock.quantity: EXCLUDED.quantity,
                stock.stock_version: EXCLUDED.stock_version,
                stock.updated_at: EXCLUDED.updated_at,
            },
            where=(EXCLUDED.stock_version > stock.stock_version),
        )
        return _changed(query)

    def local_order(self, idempotency_key: str) -> LocalOrder | None:
        lo = self.m.local_order
        return lo.get_or_none(lo.idempotency_key == idempotency_key)

    def add_local_order(self, **fields: Any) -> None:
        self.m.local_order.insert(**fields).execute()

    def update_local_order(self, local_ref: str, **fields: Any) -> None:
        lo = self.m.local_order
        lo.update(**fields).where(lo.local_ref == local_ref).execute()

    def local_orders(self, status: str | None, limit: int) -> list[LocalOrder]:
        """Newest first."""
        lo = self.m.local_order
        query = lo.select()
        if status is not None:
            query = query.where(lo.status == status)
        return list(query.order_by(lo.seq.desc()).limit(limit))

    def add_dead_letter(self, record: Record, error: PoisonRecord, now: datetime) -> None:
        """Keep the raw record; replayed, the same record is stored only once."""
        self.m.dead_letter.insert(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            reason=error.code,
            detail=error.message[:1000],
            created_at=iso(now),
        ).on_conflict_ignore().execute()

    def dead_letter_count(self) -> int:
        return int(self.m.dead_letter.select().count())


def _changed(query: peewee.Insert) -> bool:
    return bool(query.as_rowcount().execute())


def _schema_v1(replica: Replica) -> None:
    replica.db.create_tables(replica.m.schema_v1(), safe=True)


def _schema_v2(replica: Replica) -> None:
    replica.db.create_tables([replica.m.local_order], safe=True)


_MIGRATIONS: dict[int, Callable[[Replica], None]] = {1: _schema_v1, 2: _schema_v2}
