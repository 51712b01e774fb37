"""Replica tables. The classes here are unbound; bind_models() makes a set bound to one database.

Binding per database (instead of a module-level database or proxy) lets the sync loop and the
HTTP API hold separate connections, and lets tests open several replicas in one process.
Only the replica package uses these: everything else goes through Replica, LocalOrders and
ReplicaReads, which bind their own set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import peewee


class _Table(peewee.Model):
    class Meta:
        legacy_table_names = False


def _epoch_field() -> peewee.BigIntegerField:
    """Central's epoch (database incarnation) of the change a replicated row holds (schema
    7): 0 for a row written before, or from a record without the `invctl-epoch` header."""
    return peewee.BigIntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])


class Category(_Table):
    id = peewee.IntegerField(primary_key=True)
    name = peewee.TextField()
    version = peewee.BigIntegerField()
    epoch = _epoch_field()

    class Meta:
        table_name = "categories"


class Product(_Table):
    sku = peewee.TextField(primary_key=True)
    name = peewee.TextField()
    price = peewee.TextField()
    category_id = peewee.IntegerField()
    description = peewee.TextField()
    active = peewee.BooleanField()
    version = peewee.BigIntegerField()
    epoch = _epoch_field()

    class Meta:
        table_name = "products"


class Stock(_Table):
    sku = peewee.TextField(primary_key=True)
    quantity = peewee.BigIntegerField()
    stock_version = peewee.BigIntegerField()
    updated_at = peewee.TextField()
    epoch = _epoch_field()

    class Meta:
        table_name = "stock"


class Offset(_Table):
    topic = peewee.TextField()
    partition = peewee.IntegerField()
    next_offset = peewee.BigIntegerField()

    class Meta:
        table_name = "offsets"
        primary_key = peewee.CompositeKey("topic", "partition")


class DeadLetter(_Table):
    id = peewee.AutoField()
    topic = peewee.TextField()
    partition = peewee.IntegerField()
    offset = peewee.BigIntegerField()
    key = peewee.BlobField(null=True)
    value = peewee.BlobField(column_name="raw", null=True)
    reason = peewee.TextField()
    detail = peewee.TextField()
    created_at = peewee.TextField()

    class Meta:
        table_name = "dead_letters"
        indexes = ((("topic", "partition", "offset"), True),)


class LocalOrder(_Table):
    """A sale placed at this store, persisted with its idempotency key before central sees it."""

    seq = peewee.AutoField()
    local_ref = peewee.TextField(unique=True)
    idempotency_key = peewee.TextField(unique=True)
    fingerprint = peewee.TextField()
    lines = peewee.TextField()  # JSON [{"sku", "quantity"}] in SKU order
    status = peewee.TextField(index=True)
    order_id = peewee.TextField(null=True)
    central_order = peewee.TextField(null=True)  # JSON: central's order, replayed as sent
    reason_code = peewee.TextField(null=True)
    reason_message = peewee.TextField(null=True)
    attempts = peewee.IntegerField(default=0)
    created_at = peewee.TextField()
    updated_at = peewee.TextField()
    queued_at = peewee.TextField(null=True)  # accepted offline then (kept once replayed)
    # A failed sale whose request may have reached central (a timeout, a 5xx): the replayer
    # looks it up and cancels it there (schema 3).
    outcome_unknown = peewee.BooleanField(default=False)
    # The agent process that last sent a pending sale (schema 4): one left pending by another
    # process is an orphan, completed; one of this process was answered with an error, voided.
    instance_id = peewee.TextField(null=True)
    # The store the sale was recorded under (schema 5): the replayer sends only its own
    # store's sales; older sales are adopted when the agent first opens the replica.
    store_id = peewee.TextField(null=True)
    # Central's epoch that last confirmed or held the sale (schema 8; 0: unknown, the first
    # incarnation), and the outcome of the last recovery check after a restore
    # (sales.recovery: present, recovered, unrecovered, conflict; null: never checked).
    central_epoch = peewee.BigIntegerField(default=0)
    recovery = peewee.TextField(null=True)
    # Why a sale queued offline was not sold under the store's allowances (schema 9:
    # sales.allowance_cover's reason), answered again when its key is replayed.
    allowance_reason = peewee.TextField(null=True)

    class Meta:
        table_name = "local_orders"


class MetaEntry(_Table):
    key = peewee.TextField(primary_key=True)
    value = peewee.TextField()

    class Meta:
        table_name = "meta"


@dataclass(frozen=True)
class ReplicaModels:
    category: type[Category]
    product: type[Product]
    stock: type[Stock]
    offset: type[Offset]
    dead_letter: type[DeadLetter]
    meta: type[MetaEntry]
    local_order: type[LocalOrder]

    def all(self) -> list[type[peewee.Model]]:
        return [*self.schema_v1(), self.local_order]

    def schema_v1(self) -> list[type[peewee.Model]]:
        return [self.category, self.product, self.stock, self.offset, self.dead_letter, self.meta]


_M = TypeVar("_M", bound=peewee.Model)


def bind_models(db: peewee.Database) -> ReplicaModels:
    return ReplicaModels(
        category=_bound(Category, db),
        product=_bound(Product, db),
        stock=_bound(Stock, db),
        offset=_bound(Offset, db),
        dead_letter=_bound(DeadLetter, db),
        meta=_bound(MetaEntry, db),
        local_order=_bound(LocalOrder, db),
    )


def _bound(model: type[_M], db: peewee.Database) -> type[_M]:
    options = {"database": db, "table_name": model._meta.table_name}
    meta = type("Meta", (), options)
    return type(model.__name__, (model,), {"Meta": meta, "__module__": __name__})
