"""Central's epochs as the agent reads them: which incarnation of central's database a record
comes from, and which records a replica no longer takes.

Central numbers its database's incarnations: epoch 1, then one more at each restore from a
backup, after which it republishes its whole state under the new epoch. Every record carries
its epoch in the `invctl-epoch` header (invwire.headers); a record without it has epoch 0,
published before central had epochs, by its first incarnation. So epochs 0 and 1 are the same
incarnation, and only an epoch of 2 or more tells of a restore.

A replica keeps the newest epoch it has seen. A record of an older incarnation than that one
describes a database that no longer exists: it is not applied, and counts as stale.
"""

from __future__ import annotations

from invwire.errors.agent import HeaderInvalid
from invwire.headers import EPOCH_HEADER, header_int
from storeagent.sync.source import Record

FIRST_INCARNATION = 1


def incarnation(epoch: int) -> int:
    """The database incarnation an epoch names (0, no header, is the first)."""
    return max(epoch, FIRST_INCARNATION)


def record_epoch(record: Record) -> int:
    """The record's epoch; 0 without the header. A malformed header makes the record poison
    (HeaderInvalid), dead-lettered like any record that cannot be applied."""
    if not record.headers:
        return 0
    try:
        epoch = header_int(record.headers, EPOCH_HEADER)
    except ValueError as exc:
        raise HeaderInvalid(f"{EPOCH_HEADER}: {exc}", header=EPOCH_HEADER) from None
    return 0 if epoch is None else epoch


class EpochWatch:
    """Over one batch: the newest epoch seen so far, and the floor below which a record is
    stale. `floor` is a rebuild's own (sync.rebuild: the epoch it rebuilds for), else 0."""

    def __init__(self, seen: int, floor: int = 0) -> None:
        self.was = self.seen = seen
        self._floor = floor
        self._oldest_admitted = incarnation(max(seen, floor))  # checked once per record

    def admits(self, epoch: int) -> bool:
        """False for a record of an older incarnation than the newest seen (or the floor)."""
        return incarnation(epoch) >= self._oldest_admitted

    def saw(self, epoch: int) -> None:
        if epoch > self.seen:
            self.seen = epoch
            self._oldest_admitted = incarnation(max(epoch, self._floor))

    def grew(self) -> tuple[int, int] | None:
        """(the newest epoch before the batch, after it) when the batch brought a newer one."""
        return (self.was, self.seen) if self.seen > self.was else None
