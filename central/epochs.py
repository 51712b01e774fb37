"""The database's epoch (incarnation): 1 from its first schema, one more at each restore.

A restored database goes back in time while Kafka and the stores keep what was published
after the backup; the epoch is what tells the two apart (later events will carry it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import peewee

from central.models import Epoch, RelayLease

INITIAL_EPOCH = 1
# Epoch.cause of an epoch started by `central confirm-restore` (a restore by other means).
CONFIRMED = "confirmed"


@dataclass(frozen=True)
class RestoredFrom:
    """What a restore records about the backup it loaded."""

    created_at: datetime
    epoch: int
    outbox_position: int
    sha256: str


def current_epoch(db: peewee.Database) -> int:
    """The epoch of the database `db` is bound to (1 until a restore, or before migration 9)."""
    with db.connection_context():
        if not db.table_exists(Epoch._meta.table_name):
            return INITIAL_EPOCH
        value = Epoch.select(peewee.fn.MAX(Epoch.epoch)).scalar()
    return int(value or INITIAL_EPOCH)


def last_restore(db: peewee.Database) -> Epoch | None:
    with db.connection_context():
        if not db.table_exists(Epoch._meta.table_name):
            return None
        query = Epoch.select().where(Epoch.cause == "restore").order_by(Epoch.epoch.desc())
        return query.first()


def start_restored_epoch(
    db: peewee.Database, epoch: int, source: RestoredFrom, now: datetime
) -> None:
    """Record the restore as epoch `epoch`, in one transaction. The relay lease of the
    backup is dropped with it: it names a process of the past, and would hold back the
    relay of the central started next until it ran out."""
    with db.connection_context(), db.atomic():
        Epoch.create(
            epoch=epoch,
            started_at=now,
            cause="restore",
            backup_created_at=source.created_at,
            backup_epoch=source.epoch,
            backup_outbox_position=source.outbox_position,
            backup_sha256=source.sha256,
        )
        RelayLease.delete().execute()


def start_confirmed_epoch(db: peewee.Database, now: datetime) -> int:
    """Record a restore done by other means (`central confirm-restore`) as a new epoch, one
    more than the database's, in one transaction; nothing is known of the backup it came
    from. The relay lease goes as in start_restored_epoch."""
    with db.connection_context(), db.atomic():
        epoch = current_epoch(db) + 1
        Epoch.create(epoch=epoch, started_at=now, cause=CONFIRMED)
        RelayLease.delete().execute()
    return epoch
