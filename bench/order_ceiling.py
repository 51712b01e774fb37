"""The storage ceiling of an order: the statements central's reservation issues for a 2-line
order, written by hand with the standard library's `sqlite3` on a database central created
(its own schema and indexes), one transaction per order, WAL, synchronous=NORMAL, as
central's pragmas.

Per order, as central.services.orders does it: the idempotency lookup, the order row, the
two products' prices, the two stock rows read, two conditional updates on their versions,
two ledger rows, two order lines and two outbox rows holding the stock events as central
encodes them. What central adds on top (validation, the unit of work, the ORM, the relay's
bookkeeping) is what the ratio direct / raw measures.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from invwire.events import StockChanged, encode
from invwire.orders import CONFIRMED

ORDER_LINES = 2


class RawOrders:
    """Writes 2-line orders of `skus` for `store_id` straight into central's SQLite file."""

    def __init__(self, path: str, skus: list[str], store_id: str, seed: int) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=wal")
        self._db.execute("PRAGMA synchronous=normal")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._skus = skus
        self._store = store_id
        self._rng = random.Random(seed)

    def close(self) -> None:
        self._db.close()

    def order(self) -> None:
        skus = sorted(self._rng.sample(self._skus, ORDER_LINES))
        order_id, key, now = str(uuid.uuid4()), uuid.uuid4().hex, datetime.now(UTC)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._write(db, order_id, key, skus, now)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _write(
        self, db: sqlite3.Connection, order_id: str, key: str, skus: list[str], now: datetime
    ) -> None:
        stamp = now.replace(tzinfo=None).isoformat(sep=" ")  # as peewee stores it
        found = db.execute(
            'SELECT id FROM "orders" WHERE store_id = ? AND idempotency_key = ?', (self._store, key)
        ).fetchone()
        if found is not None:
            raise RuntimeError("an idempotency key came back")
        db.execute(
            'INSERT INTO "orders" (id, store_id, status, idempotency_key, fingerprint, '
            "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (order_id, self._store, CONFIRMED, key, "0" * 64, f"store:{self._store}", stamp),
        )
        marks = ",".join("?" * len(skus))
        prices = dict(db.execute(f'SELECT sku, price FROM "products" WHERE sku IN ({marks})', skus))
        levels = db.execute(
            f'SELECT sku, quantity, version FROM "stock" WHERE sku IN ({marks}) ORDER BY sku',
            skus,
        ).fetchall()
        events = [
            StockChanged(sku, quantity - 1, -1, "order", version + 1, order_id)
            for sku, quantity, version in levels
        ]
        for event in events:
            changed = db.execute(
                'UPDATE "stock" SET quantity = ?, version = ?, updated_at = ? '
                "WHERE sku = ? AND version = ?",
                (event.quantity, event.stock_version, stamp, event.sku, event.stock_version - 1),
            ).rowcount
            if changed != 1:
                raise RuntimeError(f"stock row {event.sku} changed under its lock")
        self._ledger(db, events, stamp)
        db.executemany(
            'INSERT INTO "order_lines" (order_id, sku, quantity, unit_price, stock_after, '
            "stock_version) VALUES (?, ?, 1, ?, ?, ?)",
            [(order_id, e.sku, prices[e.sku], e.quantity, e.stock_version) for e in events],
        )
        envelopes = [encode(event, now) for event in events]
        db.executemany(
            'INSERT INTO "outbox" (event_id, topic, key, payload, created_at) '
            "VALUES (?, ?, ?, ?, ?)",
            [(e.event_id, e.topic, e.key, e.value, stamp) for e in envelopes],
        )

    def _ledger(self, db: sqlite3.Connection, events: list[StockChanged], stamp: str) -> None:
        db.executemany(
            'INSERT INTO "stock_movements" (sku, delta, quantity, stock_version, reason, '
            "order_id, actor, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, '', ?)",
            [
                (
                    e.sku,
                    e.delta,
                    e.quantity,
                    e.stock_version,
                    e.reason,
                    e.order_id,
                    f"store:{self._store}",
                    stamp,
                )
                for e in events
            ],
        )


def raw_orders(
    path: str, skus: list[str], store_id: str
) -> tuple[Callable[[int], Callable[[], None]], Callable[[], None]]:
    """A run_clients worker factory writing raw orders, and the function closing them."""
    writers: list[RawOrders] = []

    def make(index: int) -> Callable[[], None]:
        writer = RawOrders(path, skus, store_id, seed=2000 + index)
        writers.append(writer)
        return writer.order

    def close() -> None:
        for writer in writers:
            writer.close()

    return make, close
