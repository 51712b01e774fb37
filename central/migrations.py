"""Versioned schema migrations, applied in order and recorded in schema_migrations.

Migration 1 creates the v1 tables. Later migrations change the schema with
playhouse.migrate operations, so an existing database is upgraded in place, never wiped.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as apply_operations

from central import models
from central.db import is_mysql

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


def _token_versions_and_login_throttle(db: peewee.Database) -> None:
    # Migration 1 creates `users` from the current model, so a database made since this
    # migration was written has the column already.
    if "token_version" not in {column.name for column in db.get_columns("users")}:
        migrator = SchemaMigrator.from_database(db)
        column = peewee.BigIntegerField(default=1)
        apply_operations(migrator.add_column("users", "token_version", column))
    db.create_tables([models.LoginCounter], safe=True)


def _agent_instances(db: peewee.Database) -> None:
    db.create_tables([models.AgentInstance])


def _import_batches(db: peewee.Database) -> None:
    db.create_tables([models.ImportBatch, models.StagedRow])


def _store_refusals(db: peewee.Database) -> None:
    db.create_tables([models.StoreRefusal])


def _epochs(db: peewee.Database) -> None:
    db.create_tables([models.Epoch])
    models.Epoch.create(epoch=1, cause="initial")


def _recovered_orders(db: peewee.Database) -> None:
    # Migration 2 creates `orders` from the current model, so a database made since this
    # migration was written has the columns already.
    columns = {
        "recovered_at": models.Timestamp(null=True),
        "review_code": peewee.CharField(max_length=64, null=True),
        "review_message": peewee.TextField(null=True),
        "review_details": peewee.TextField(null=True),
    }
    present = {column.name for column in db.get_columns("orders")}
    migrator = SchemaMigrator.from_database(db)
    missing = [(name, field) for name, field in columns.items() if name not in present]
    if missing:
        apply_operations(*(migrator.add_column("orders", n, f) for n, f in missing))


def _outbox_trace_context(db: peewee.Database) -> None:
    # Migration 1 creates `outbox` from the current model, so a database made since this
    # migration was written has the column already. On MariaDB it goes after `payload`:
    # a backup reads `published_at` as the row's last column (central.backup.dump_facts).
    if "trace_context" in {column.name for column in db.get_columns("outbox")}:
        return
    if is_mysql(db):
        db.execute_sql("ALTER TABLE outbox ADD COLUMN trace_context TEXT NULL AFTER payload")
        return
    migrator = SchemaMigrator.from_database(db)
    apply_operations(migrator.add_column("outbox", "trace_context", peewee.TextField(null=True)))


def _allowances(db: peewee.Database) -> None:
    # Migration 1 creates `stock` and `stock_movements` from the current models, so a
    # database made since this migration was written has the column and the width already.
    if "held" not in {column.name for column in db.get_columns("stock")}:
        migrator = SchemaMigrator.from_database(db)
        column = peewee.BigIntegerField(default=0)
        apply_operations(migrator.add_column("stock", "held", column))
    if is_mysql(db):  # SQLite does not enforce a VARCHAR's length
        db.execute_sql("ALTER TABLE stock_movements MODIFY reason VARCHAR(32) NOT NULL")
    db.create_tables([models.Allowance], safe=True)


def _allowance_rules(db: peewee.Database) -> None:
    db.create_tables([models.AllowanceRule], safe=True)


def _order_allowance_draws(db: peewee.Database) -> None:
    if "allowance_draws" in {column.name for column in db.get_columns("orders")}:
        return  # migration 1 or 2 made the table from the current model
    migrator = SchemaMigrator.from_database(db)
    column = peewee.TextField(null=True)
    apply_operations(migrator.add_column("orders", "allowance_draws", column))


MIGRATIONS: list[Migration] = [
    (1, "initial schema", _initial),
    (2, "orders and order lines", _orders),
    (3, "store heartbeats", _store_status),
    (4, "pending Kafka identity revocations", _kafka_revocations),
    (5, "user token versions and login throttling", _token_versions_and_login_throttle),
    (6, "the last heartbeat of each agent instance", _agent_instances),
    (7, "staged import batches", _import_batches),
    (8, "when central last refused each store's API key", _store_refusals),
    (9, "database epochs: one more at each restore", _epochs),
    (10, "orders recovered from the stores, and those left to review", _recovered_orders),
    (11, "the trace context of each outbox row", _outbox_trace_context),
    (12, "stock allowances set aside for stores", _allowances),
    (13, "the rules that top stores' allowances up", _allowance_rules),
    (14, "what each order took from its store's allowances", _order_allowance_draws),
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
