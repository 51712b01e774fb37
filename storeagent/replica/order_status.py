"""Central's later word on this store's orders (table order_status): the status each order has
now, from `order.updated` events (topic order-updated) and from the agent's own cancels.

The table is replicated state with a version, like stock: a row changes only when the incoming
status is later in the order's one-way life (invwire.orders.STATUS_VERSIONS), so an event
applied twice, late or out of order changes nothing. It is kept apart from local_orders, the
agent's record of each sale, so that an event may arrive before the sale's confirmation is
recorded (it is joined when the sales are read: replica.queries). A resync keeps it, as it
keeps the sales it describes; the topic's events are applied again and change nothing.

Helpers never commit: the caller holds the transaction (apply_batch, the cancel use case).
"""

from __future__ import annotations

import peewee

from invwire.events import OrderUpdated

TABLE = "order_status"

_CREATE = (
    "CREATE TABLE IF NOT EXISTS order_status ("
    "order_id TEXT NOT NULL PRIMARY KEY, "
    "status TEXT NOT NULL, "
    "version INTEGER NOT NULL, "
    "cancelled_at TEXT, "
    "updated_at TEXT NOT NULL)"
)
_UPSERT = (
    "INSERT INTO order_status (order_id, status, version, cancelled_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, "
    "version = excluded.version, cancelled_at = excluded.cancelled_at, "
    "updated_at = excluded.updated_at WHERE excluded.version > order_status.version"
)


def create_table(db: peewee.Database) -> None:
    """Replica schema 6."""
    db.execute_sql(_CREATE)


def record(db: peewee.Database, update: OrderUpdated, *, updated_at: str) -> bool:
    """The versioned upsert; whether the row changed. `updated_at`: when central changed it."""
    params = (update.order_id, update.status, update.version, update.cancelled_at, updated_at)
    return bool(db.execute_sql(_UPSERT, params).rowcount)
