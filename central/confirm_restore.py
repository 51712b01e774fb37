"""`central confirm-restore`: a database restored by other means than `central restore` (a
file copied back, a dump loaded by hand) gets its new epoch, without loading anything.

Central refuses to start on such a database once it finds it behind what it already
published to Kafka (central.kafka_position); the new epoch is the operator's word that the
database is the one to go on with. Refused while central runs, as a restore is
(central.restore: the relay's lease, and SQLite's lock or MariaDB's other connections).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from central import migrations, models
from central.backup import database_kind, sqlite_path
from central.db import connect
from central.epochs import current_epoch, start_confirmed_epoch
from central.restore import MariadbTarget, SqliteTarget, Target, close_database
from invwire.errors.central import RecoveryRefused, RestoreUnconfirmed


@dataclass(frozen=True)
class Confirmed:
    where: str
    epoch: int
    previous: int


def confirm_restored(database_url: str, now: datetime, confirm: Callable[[str], bool]) -> Confirmed:
    """Refuse while central runs, ask `confirm`, then record epoch + 1 (cause `confirmed`)."""
    target: Target
    if database_kind(database_url) == "sqlite":
        path = sqlite_path(database_url)
        if not path.is_file():
            raise RecoveryRefused(f"there is no database at {path}: nothing to confirm")
        target = SqliteTarget(path)
    else:
        target = MariadbTarget(database_url)
    target.refuse_if_in_use(now)
    if not confirm(target.where):
        raise RestoreUnconfirmed(
            f"nothing was changed: run again with --yes to start a new epoch for {target.where}"
        )
    target.refuse_if_in_use(now)  # again: the confirmation may have taken a while
    db = connect(database_url)
    try:
        with db.bind_ctx(models.ALL_MODELS, bind_refs=False, bind_backrefs=False):
            migrations.migrate(db)
            previous = current_epoch(db)
            epoch = start_confirmed_epoch(db, now)
    finally:
        close_database(db)
    return Confirmed(target.where, epoch, previous)
