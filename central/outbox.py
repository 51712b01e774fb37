"""The outbox relay: publishes committed outbox rows to Kafka in id order, then marks them.

Delivery is at least once: a crash between publishing and marking re-publishes those rows,
and consumers drop what they already hold (versions). One relay publishes at a time: a lease
row in the database elects it, so `central serve` and `central relay` can run side by side.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import peewee

from central.db import write_turn
from central.metrics import Metrics
from central.models import Outbox, RelayLease
from central.uow import Clock
from central.worker import BackgroundLoop
from invwire.logs import EventLog

log = EventLog("central.relay")

LEASE_NAME = "outbox"


@dataclass(frozen=True)
class OutboxRecord:
    id: int
    event_id: str
    topic: str
    key: str
    value: str
    created_at: datetime | None = None


class Publisher(Protocol):
    def publish(self, records: Sequence[OutboxRecord]) -> int:
        """Send the records in order; return how many of them, from the first, were acked."""
        ...

    def close(self) -> None: ...


@dataclass
class RelayStats:
    published: int = 0
    failures: int = 0
    last_error: str = ""
    leader: bool = False


class Relay(BackgroundLoop):
    name = "relay"

    def __init__(
        self,
        db: peewee.Database,
        publisher: Publisher,
        clock: Clock,
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
        retention_seconds: int = 3600,
        lease_seconds: int = 60,
        max_backoff_seconds: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(
            poll_seconds=poll_seconds,
            max_backoff_seconds=max_backoff_seconds,
            min_backoff_seconds=0.2,
        )
        self.metrics = metrics
        self.db = db
        self.publisher = publisher
        self.clock = clock
        self.batch_size = batch_size
        self.retention = timedelta(seconds=retention_seconds)
        self.lease = timedelta(seconds=lease_seconds)
        self.owner = uuid.uuid4().hex
        self.stats = RelayStats()
        self._last_purge = clock.now()
        self._lease_until = clock.now()

    def step(self) -> bool:
        return self.run_once() >= self.batch_size

    def on_stop(self) -> None:
        self.publisher.close()
        self._release_lease()

    def _release_lease(self) -> None:
        """Let a successor (a restarted central, another relay) publish at once instead of
        waiting for the lease to run out."""
        if not self.stats.leader:
            return
        try:
            with self.db.connection_context(), write_turn(self.db), self.db.atomic():
                RelayLease.update(expires_at=self.clock.now() - timedelta(seconds=1)).where(
                    (RelayLease.name == LEASE_NAME) & (RelayLease.owner == self.owner)
                ).execute()
        except Exception as exc:  # the lease expires by itself; shutting down must go on
            log.warning("relay.release_failed", error=str(exc)[:200])
        self.stats.leader = False

    def run_once(self) -> int:
        """One round: hold the lease, publish one batch, mark what was acked."""
        with self.db.connection_context():
            if not self._hold_lease():
                return 0
            records = self._pending()
            if not records:
                self._purge_if_due()
                return 0
            acked = self.publisher.publish(records)
            self._observe(records[:acked])
            self._mark_published(records[:acked])
        self.stats.published += acked
        if acked < len(records):
            raise PublishIncomplete(f"{len(records) - acked} of {len(records)} records not acked")
        return acked

    def backlog(self) -> int:
        return outbox_backlog(self.db)

    def _observe(self, records: Sequence[OutboxRecord]) -> None:
        if self.metrics is None or not records:
            return
        now = self.clock.now()
        self.metrics.published.inc(len(records))
        for record in records:
            if record.created_at is not None:
                self.metrics.publish_latency.observe((now - record.created_at).total_seconds())

    def _pending(self) -> list[OutboxRecord]:
        query = (
            Outbox.select(
                Outbox.id,
                Outbox.event_id,
                Outbox.topic,
                Outbox.key,
                Outbox.payload,
                Outbox.created_at,
            )
            .where(Outbox.published_at.is_null())
            .order_by(Outbox.id)
            .limit(self.batch_size)
        )
        return [
            OutboxRecord(r.id, r.event_id, r.topic, r.key, r.payload, r.created_at) for r in query
        ]

    def _mark_published(self, records: Sequence[OutboxRecord]) -> None:
        if not records:
            return
        now = self.clock.now()
        ids = [r.id for r in records]
        with write_turn(self.db), self.db.atomic():
            Outbox.update(published_at=now).where(Outbox.id.in_(ids)).execute()

    def _hold_lease(self) -> bool:
        now = self.clock.now()
        if self.stats.leader and now < self._lease_until - self.lease / 2:
            return True  # renewing on every round would add a write per published batch
        until = now + self.lease
        with write_turn(self.db), self.db.atomic():
            renewed = (
                RelayLease.update(owner=self.owner, expires_at=until)
                .where(
                    (RelayLease.name == LEASE_NAME)
                    & ((RelayLease.owner == self.owner) | (RelayLease.expires_at < now))
                )
                .execute()
            )
            if not renewed and RelayLease.get_or_none(RelayLease.name == LEASE_NAME) is None:
                RelayLease.insert(name=LEASE_NAME, owner=self.owner, expires_at=until).on_conflict(
                    "ignore"
                ).execute()
                renewed = RelayLease.get(RelayLease.name == LEASE_NAME).owner == self.owner
        self._lease_until = until if renewed else now
        if bool(renewed) != self.stats.leader:
            log.info("relay.lease", leader=bool(renewed))
        self.stats.leader = bool(renewed)
        return bool(renewed)

    def _purge_if_due(self) -> None:
        now = self.clock.now()
        if now - self._last_purge < timedelta(seconds=60):
            return
        self._last_purge = now
        with write_turn(self.db), self.db.atomic():
            purged = Outbox.delete().where(Outbox.published_at < now - self.retention).execute()
        if purged:
            log.info("relay.purged", rows=purged)

    def on_failure(self, exc: Exception, backoff: float) -> None:
        self.stats.failures += 1
        if self.metrics is not None:
            self.metrics.relay_failures.inc()
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("relay.failed", error=self.stats.last_error, retry_in=backoff)


def outbox_backlog(db: peewee.Database) -> int:
    with db.connection_context():
        return int(Outbox.select().where(Outbox.published_at.is_null()).count())


class PublishIncomplete(Exception):
    """Some records of the batch were not acknowledged; they stay pending and are retried."""
