"""Is central's database behind what central already published to Kafka?

Every record central publishes carries its position: the database's epoch and the outbox
row id (invwire.headers). Within an epoch outbox ids only grow, and the purge always keeps
the newest row (central.outbox), so the database's position is (current epoch, highest
outbox id). A database restored by other means than `central restore` (a file copied
back, a dump loaded by hand) goes back in time without a new epoch: what Kafka holds is
then ahead of it, and publishing from it would hand the stores versions they already hold
with other contents. Central refuses to start on it, and its relay refuses to publish from
it, until an operator confirms the restore (`central confirm-restore`, a new epoch).

The newest published position is the highest among the LAST record of every partition of
the wire topics: a relay publishes in outbox id order, so each partition's last record is
its newest, and compaction never removes the last record of a partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import peewee

from central.models import Outbox
from invwire.errors.central import BehindKafka
from invwire.headers import EPOCH_HEADER, SEQ_HEADER, header_int
from invwire.logs import EventLog

log = EventLog("central.kafka_position")


@dataclass(frozen=True, order=True)
class Position:
    """(epoch, outbox id): compared as a tuple, the epoch first."""

    epoch: int
    seq: int

    def __str__(self) -> str:
        return f"epoch {self.epoch}, outbox id {self.seq}"


# A record published before central added the headers: older than any position with them.
UNMARKED = Position(0, 0)


class PositionUnreadable(Exception):
    """Kafka answered, but this login may not read the topics: the position cannot be known
    (a relay user set up by hand with write access only, and no admin credential)."""


class PublishedPositions(Protocol):
    def newest(self) -> Position | None:
        """The newest position among the last records of the topics' partitions; None when
        the topics hold no record. Raises PositionUnreadable when the login may not read
        them, and the Kafka client's errors (or OSError) when Kafka cannot be asked."""
        ...


def record_position(headers: Sequence[tuple[str, bytes | None]]) -> Position:
    """A record's position from its headers. Without them (an older central), or with values
    central never writes, it counts as UNMARKED: a record nobody can place must not hold
    central back."""
    try:
        epoch = header_int(headers, EPOCH_HEADER)
        seq = header_int(headers, SEQ_HEADER)
    except ValueError as exc:
        log.warning("kafka_position.bad_header", error=str(exc)[:200])
        return UNMARKED
    if epoch is None:
        return UNMARKED
    return Position(epoch, seq or 0)


def database_position(db: peewee.Database, epoch: int) -> Position:
    """(epoch, highest outbox id); 0 for an outbox that never held a row."""
    with db.connection_context():
        highest = Outbox.select(peewee.fn.MAX(Outbox.id)).scalar()
    return Position(epoch, int(highest or 0))


def is_behind(published: Position | None, database: Position) -> bool:
    return published is not None and published > database


def refuse_if_behind(positions: PublishedPositions, db: peewee.Database, epoch: int) -> Position:
    """Raise BehindKafka when Kafka holds a newer position than the database; else return
    the database's position. Kafka is read FIRST: everything published was committed
    before, so a relay publishing meanwhile (another central) can never make a database
    that is in step look behind."""
    published = positions.newest()
    database = database_position(db, epoch)
    if is_behind(published, database):
        assert published is not None
        raise BehindKafka(behind_message(published, database), **_details(published, database))
    return database


def check_at_start(positions: PublishedPositions, db: peewee.Database, epoch: int) -> bool:
    """`central serve` and `central relay` before they start: raise BehindKafka when the
    database is behind. When Kafka cannot be read, start all the same (a broker down must
    not keep the API down): log it and return False; the relay checks again when it takes
    its lease, before it publishes anything."""
    try:
        database = refuse_if_behind(positions, db, epoch)
    except PositionUnreadable as exc:
        log.warning("central.position_unchecked", reason=str(exc)[:300])
        return False
    except BehindKafka:
        raise
    except Exception as exc:  # the Kafka client's errors vary; none of them may block a start
        reason = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("central.position_unchecked", reason=reason, then="the relay checks")
        return False
    log.info("central.position_checked", epoch=database.epoch, outbox_id=database.seq)
    return True


def behind_message(published: Position, database: Position) -> str:
    return (
        f"the database ({database}) is behind what central already published to Kafka "
        f"({published}): it was restored without `central restore`. Stop every central, "
        "then run `central confirm-restore --yes` to start a new epoch (or restore the "
        "newest backup with `central restore`); see docs/operations.md"
    )


def _details(published: Position, database: Position) -> dict[str, int]:
    return {
        "published_epoch": published.epoch,
        "published_seq": published.seq,
        "database_epoch": database.epoch,
        "database_seq": database.seq,
    }
