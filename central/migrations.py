"""Versioned schema migrations, applied in order and recorded in schema_migrations.

Migration 1 creates the v1 tables. Later migrations change the schema with
playhouse.migrate operations, so an existing database is upgraded in place, never wiped.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee

from central import models

Migration = tuple[int, str, Callable[[peewee.Database], None]]


def _initial(db: peewee.Database) -> None:
    db.create_tables(
        [
            models.Category,
            models.Product,
            models.Stock,
            models.Movement,
            models.Store,
            models.ApiKey,
            models.User,
            models.Outbox,
            models.RelayLease,
        ]
    )


def _orders(db: peewee.Database) -> None:
    db.create_tables([models.Order, models.OrderLine])


def _store_status(db: peewee.Database) -> None:
    db.create_tables([models.StoreStatus])


def _kafka_revocations(db: peewee.Database) -> None:
    db.create_tables([models.KafkaRevocation])


MIGRATIONS: list[Migration] = [
    (1, "initial schema", _initial),
    (2, "orders and order lines", _orders),
    (3, "store heartbeats", _store_status),
    (4, "pending Kafka identity revocations", _kafka_revocations),
]


def applied_versions(db: peewee.Database) -> set[int]:
    return {row.version for row in models.SchemaMigration.select(models.SchemaMigration.version)}


def migrate(db: peewee.Database) -> list[int]:
    """Apply every pending migration; returns the versions applied now."""
    with db.connection_context():
        db.create_tables([models.SchemaMigration], safe=True)
        done = applied_versions(db)
        applied = []
        for version, name, step in MIGRATIONS:
            if version in done:
                continue
            with db.atomic():
                step(db)
                models.SchemaMigration.create(version=version, name=name)
            applied.append(version)
        return applied


def pending(db: peewee.Database) -> list[int]:
    with db.connection_context():
        if not db.table_exists(models.SchemaMigration._meta.table_name):
            return [v for v, _, _ in MIGRATIONS]
        done = applied_versions(db)
    return [v for v, _, _ in MIGRATIONS if v not in done]
