"""The outbox relay: publishes committed outbox rows to Kafka in id order, then marks them.

Delivery is at least once: a crash between publishing and marking re-publishes those rows,
and consumers drop what they already hold (versions). One relay publishes at a time: a lease
row in the database elects it, so `central serve` (each of its workers) and `central relay`
can run side by side. The lease is short (LEASE_SECONDS) and timed by the database's clock
(central.db.DatabaseClock), so hosts whose clocks disagree still agree on when it runs out:
a holder that stops renewing (SIGKILLed, cut off from the database) is replaced by a standby
within the lease plus a poll. Its owner id is `host:pid:random`, to tell who holds it.

The lease holder also audits Kafka's log (services.republish.shortfall): when it takes the
lease, after any failed round, after a round whose records were acked at lower offsets than
earlier ones (a broker that lost its data and came back takes the waiting records without a
failure), and every `audit_seconds`. A topic holding fewer records than
central has rows lost data (deleted and re-created, a broker that lost its disk), and the
relay republishes central's whole state once (`relay.republished`).

When it takes the lease it also reads the newest position central published (epoch and
outbox id, central.kafka_position) before publishing anything: a database behind it was
restored without a new epoch, and the relay publishes nothing from it (`relay:
behind_kafka`) until an operator confirms the restore; a database at a newer epoch than
Kafka's newest record was restored, and the relay republishes the whole state once so that
every record of the current state carries the new epoch (`relay.republished`, reason
`new_epoch`): the stores rebuild their replicas from it.

With tracing on, each publish round is a PRODUCER span `outbox.publish` linked to the spans
that wrote its rows (their trace context is kept with each row, central.uow); the rows'
contexts travel on as Kafka record headers whether or not this process traces.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import peewee

from central.db import DatabaseClock, is_write_conflict, write_turn
from central.epochs import INITIAL_EPOCH
from central.kafka_position import (
    PositionUnreadable,
    PublishedPositions,
    behind_message,
    database_position,
    is_behind,
)
from central.metrics import Metrics
from central.models import Outbox, RelayLease
from central.rows import Statement
from central.services import republish
from central.uow import Clock, UnitOfWork
from central.worker import BackgroundLoop
from invwire import tracing
from invwire.logs import EventLog

if TYPE_CHECKING:
    from opentelemetry.trace import Link

log = EventLog("central.relay")

LEASE_NAME = "outbox"
# A holder renews at its first round once a third of the lease has passed, so a live holder
# keeps it through two missed rounds; a dead one is replaced within this plus a poll.
LEASE_SECONDS = 3.0
# relay_lease.owner holds 64 characters: `host:pid:random8`, the host cut to fit.
OWNER_HOST_CHARS = 40
# Events waiting longer than this make the relay `failing` (settings.relay_failing_after_seconds).
FAILING_AFTER_SECONDS = 30.0
AUDIT_SECONDS = 300.0
# An automatic republish at most this often: should Kafka keep losing what is published, the
# relay says so in its log instead of filling the outbox again and again.
REPUBLISH_GUARD_SECONDS = 600.0
# A publish round's span links to at most this many rows' spans (distinct ones, oldest rows
# first): a batch is up to 500 rows, and a span with hundreds of links helps no one.
MAX_PUBLISH_LINKS = 128
# A round that published this many records or more finds the relay busy (gather_seconds):
# at the steady pace of one change at a time a round publishes one or two, and is not held.
GATHER_FROM = 8

# oldest first: the order events were committed in, which the records keep per key
PENDING = Statement(
    'SELECT "id", "event_id", "topic", "key", "payload", "created_at", "trace_context" '
    'FROM "outbox" WHERE "published_at" IS NULL ORDER BY "id" LIMIT ?'
)
# One statement, so it commits on its own: no BEGIN and COMMIT round trips around it.
MARK_PUBLISHED = Statement('UPDATE "outbox" SET "published_at" = ? WHERE "id" IN ({marks})')


@dataclass(frozen=True)
class OutboxRecord:
    id: int
    event_id: str
    topic: str
    key: str
    value: str
    created_at: datetime | None = None
    epoch: int = INITIAL_EPOCH  # of the database that publishes it (a record header)
    # The W3C headers of the span that wrote the row (record headers too); None: untraced.
    trace_context: Mapping[str, str] | None = None


class Publisher(Protocol):
    def publish(self, records: Sequence[OutboxRecord]) -> int:
        """Send the records in order; return how many of them, from the first, were acked."""
        ...

    def close(self) -> None: ...

    # Optional: `warm()`, to get ready to publish (connections, topics, access) before the
    # first batch; a standby relay calls it once while it waits (Relay._get_ready).


class TopicLog(Protocol):
    def records(self) -> Mapping[str, int]:
        """Records ever appended to each topic (unprefixed): its end offsets summed."""
        ...

    def went_back(self) -> bool:
        """Whether, since the last call, a record was acked at an offset lower than one acked
        before in its partition: the log lost records under the relay."""
        ...


@dataclass
class RelayStats:
    published: int = 0
    failures: int = 0
    last_error: str = ""
    leader: bool = False
    republishes: int = 0
    last_republish: datetime | None = None
    # Set when the database is found behind what Kafka holds (the one-line reason); the
    # relay then publishes nothing until central is restarted after a confirmed restore.
    behind_kafka: str = ""


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
        leader_poll_seconds: float | None = None,
        gather_seconds: float = 0.0,
        retention_seconds: int = 3600,
        lease_seconds: float = LEASE_SECONDS,
        max_backoff_seconds: float = 10.0,
        metrics: Metrics | None = None,
        topic_log: TopicLog | None = None,
        audit_seconds: float = AUDIT_SECONDS,
        republish_guard_seconds: float = REPUBLISH_GUARD_SECONDS,
        epoch: int = INITIAL_EPOCH,
        positions: PublishedPositions | None = None,
        lease_clock: Clock | None = None,
    ) -> None:
        """`lease_clock` times the lease (`clock` when None); central's composition root
        gives the database's (central.app.build_relay)."""
        super().__init__(
            poll_seconds=poll_seconds,
            max_backoff_seconds=max_backoff_seconds,
            min_backoff_seconds=0.2,
        )
        self.leader_poll_seconds = min(leader_poll_seconds or poll_seconds, poll_seconds)
        self.gather_seconds = gather_seconds
        self.metrics = metrics
        self.db = db
        self.publisher = publisher
        self.clock = clock
        self.batch_size = batch_size
        self.retention = timedelta(seconds=retention_seconds)
        self.lease = timedelta(seconds=lease_seconds)
        self.lease_clock = lease_clock or clock
        self.owner = lease_owner()
        self.stats = RelayStats()
        self._last_purge = clock.now()
        self._lease_until = datetime.min  # set when the lease is taken
        self.topic_log = topic_log
        self.audit_every = timedelta(seconds=audit_seconds)
        self.republish_guard = timedelta(seconds=republish_guard_seconds)
        self._audit_due = True
        self._next_audit = clock.now()
        self.epoch = epoch
        self.positions = positions
        self._position_due = True
        self._warm = False

    def step(self) -> bool:
        began = time.monotonic()
        published = self.run_once()
        if published >= self.batch_size:
            return True
        if published < GATHER_FROM or self.gather_seconds <= 0:
            return False
        # Busy: more rows came while this batch was published. Each round costs about a
        # millisecond of CPU however few records it sends (the producer's flush, the reads
        # and the update), so a busy relay lets rows gather a little before the next one.
        self._stop.wait(began + self.gather_seconds - time.monotonic())
        return True

    def idle_seconds(self) -> float:
        """The holder looks again soon: rows committed by other processes (workers, hosts,
        `central` commands) do not wake it. A standby only watches the lease."""
        return self.leader_poll_seconds if self.stats.leader else self.poll_seconds

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
                released = self.lease_clock.now() - timedelta(seconds=1)
                RelayLease.update(expires_at=released).where(
                    (RelayLease.name == LEASE_NAME) & (RelayLease.owner == self.owner)
                ).execute()
        except Exception as exc:  # the lease expires by itself; shutting down must go on
            log.warning("relay.release_failed", error=str(exc)[:200], owner=self.owner)
        else:
            log.info("relay.lease_released", owner=self.owner)
        self.stats.leader = False

    def run_once(self) -> int:
        """One round: hold the lease, publish one batch, mark what was acked."""
        if self.stats.behind_kafka:
            return 0  # said once when found; the lease runs out for want of renewal
        with self.db.connection_context():
            if not self._hold_lease():
                self._get_ready()
                return 0
            if not self._position_checked():
                return 0
            self._audit_if_due()
            records = self._pending()
            if not records:
                self._purge_if_due()
                return 0
            acked = self._publish(records)
            self._observe(records[:acked])
            self._mark_published(records[:acked])
            self._audit_if_went_back()
        self.stats.published += acked
        if acked < len(records):
            raise PublishIncomplete(f"{len(records) - acked} of {len(records)} records not acked")
        return acked

    def backlog(self) -> int:
        return outbox_backlog(self.db)

    def _publish(self, records: Sequence[OutboxRecord]) -> int:
        if not tracing.enabled():
            return self.publisher.publish(records)
        attributes = {"invctl.records": len(records), "messaging.system": "kafka"}
        links = publish_links(records)
        with tracing.span("outbox.publish", kind="producer", attributes=attributes, links=links):
            return self.publisher.publish(records)

    def _observe(self, records: Sequence[OutboxRecord]) -> None:
        if self.metrics is None or not records:
            return
        now = self.clock.now()
        self.metrics.published.inc(len(records))
        for record in records:
            if record.created_at is not None:
                self.metrics.publish_latency.observe((now - record.created_at).total_seconds())

    def _pending(self) -> list[OutboxRecord]:
        rows = PENDING.run(Outbox._meta.database, [self.batch_size]).fetchall()
        created = Outbox.created_at.python_value
        return [
            OutboxRecord(
                row_id,
                event_id,
                topic,
                key,
                payload,
                created(created_at),
                self.epoch,
                trace_context_of(trace_context),
            )
            for row_id, event_id, topic, key, payload, created_at, trace_context in rows
        ]

    def _mark_published(self, records: Sequence[OutboxRecord]) -> None:
        if not records:
            return
        params = [Outbox.published_at.db_value(self.clock.now())]
        params += [record.id for record in records]
        with write_turn(self.db):
            MARK_PUBLISHED.run(Outbox._meta.database, params, size=len(records))

    def _hold_lease(self) -> bool:
        now = self.lease_clock.now()
        if self.stats.leader and now < self._lease_until - self.lease * 2 / 3:
            return True  # renewing on every round would add a write per published batch
        if not self.stats.leader and self._held_by_another(now):
            return False  # read only: standbys do not queue for SQLite's write lock each poll
        until = now + self.lease
        try:
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
                    RelayLease.insert(
                        name=LEASE_NAME, owner=self.owner, expires_at=until
                    ).on_conflict("ignore").execute()
                    renewed = RelayLease.get(RelayLease.name == LEASE_NAME).owner == self.owner
        except peewee.OperationalError as exc:
            if not is_write_conflict(exc):
                raise
            # Galera: a relay on another node took the lease in the same instant and its
            # commit was certified first; ours was rolled back. Not the leader, and no failure.
            renewed = 0
        self._lease_until = until if renewed else now
        if bool(renewed) != self.stats.leader:
            log.info("relay.lease", leader=bool(renewed), owner=self.owner)
            self._audit_due = True  # a new leader does not know what the last one saw
            self._position_due = True
        self.stats.leader = bool(renewed)
        return bool(renewed)

    def _get_ready(self) -> None:
        """A standby readies its publisher once (KafkaPublisher.warm: topics, Kafka access,
        producer), so that taking the lease over makes no connection: failover is the lease,
        a poll and one publish (docs/operations.md, "Relay lease and failover")."""
        warm = getattr(self.publisher, "warm", None)
        if self._warm or warm is None:
            return
        self._warm = True
        try:
            warm()
        except Exception as exc:  # the first publish tries again; standing by goes on
            log.warning("relay.warm_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def _held_by_another(self, now: datetime) -> bool:
        lease = RelayLease.get_or_none(RelayLease.name == LEASE_NAME)
        return lease is not None and lease.owner != self.owner and lease.expires_at >= now

    def _purge_if_due(self) -> None:
        now = self.clock.now()
        if now - self._last_purge < timedelta(seconds=60):
            return
        self._last_purge = now
        # The newest row always stays, published or not: MAX(id) is the database's outbox
        # position (central.kafka_position), and it must not fall back to an older id (or to
        # 0) once old rows are gone; nor may SQLite, which without AUTOINCREMENT hands out
        # MAX(rowid) + 1, give a new event an id that Kafka already holds.
        newest = Outbox.select(peewee.fn.MAX(Outbox.id)).scalar()
        if newest is None:
            return
        with write_turn(self.db), self.db.atomic():
            purged = (
                Outbox.delete()
                .where((Outbox.published_at < now - self.retention) & (Outbox.id < newest))
                .execute()
            )
        if purged:
            log.info("relay.purged", rows=purged)

    def _position_checked(self) -> bool:
        """Once per lease taken, before publishing: False when the database is behind what
        Kafka holds (see the module doc). A Kafka that cannot be asked fails the round."""
        if self.positions is None or not self._position_due:
            return True
        try:
            published = self.positions.newest()
        except PositionUnreadable as exc:
            # Nothing better can be known with this login; publishing stays as before.
            log.warning("relay.position_unchecked", reason=str(exc)[:300])
            self._position_due = False
            return True
        database = database_position(self.db, self.epoch)
        self._position_due = False
        if is_behind(published, database):
            assert published is not None
            self.stats.behind_kafka = behind_message(published, database)
            log.error(
                "relay.behind_kafka",
                published=str(published),
                database=str(database),
                fix="stop central, then `central confirm-restore --yes`",
            )
            return False
        if published is not None and self._new_epoch(published.epoch):
            self._republish(reason="new_epoch", published_epoch=published.epoch, epoch=self.epoch)
        return True

    def _new_epoch(self, published_epoch: int) -> bool:
        """Kafka's newest record is of an older epoch than the database: a restore happened.
        A first epoch's records may lack the headers (an older central published them): that
        is no restore, and nothing to republish."""
        return self.epoch > INITIAL_EPOCH and published_epoch < self.epoch

    def _republish(self, **why: object) -> None:
        done = republish.republish(lambda: UnitOfWork(self.db, self.clock))
        self.stats.republishes += 1
        self.stats.last_republish = self.clock.now()
        if self.metrics is not None:
            self.metrics.republishes.inc()
        log.warning("relay.republished", **why, **republish.describe(done))

    def _audit_if_due(self) -> None:
        """Republish once when Kafka's log holds less than central's rows (see module doc)."""
        now = self.clock.now()
        if self.topic_log is None or not (self._audit_due or now >= self._next_audit):
            return
        rows = republish.live_rows(self.db)
        pending = republish.pending_keys(self.db)
        missing = republish.shortfall(rows, pending, self.topic_log.records())
        self._audit_due = False
        self._next_audit = now + self.audit_every
        if not missing:
            return
        last = self.stats.last_republish
        if last is not None and now - last < self.republish_guard:
            log.warning("relay.republish_suppressed", missing=missing, last=last.isoformat())
            return
        self._republish(reason="shortfall", missing=missing)

    def _audit_if_went_back(self) -> None:
        if self.topic_log is not None and self.topic_log.went_back():
            log.warning("relay.log_went_back", audit="next round")
            self._audit_due = True

    def on_failure(self, exc: Exception, backoff: float) -> None:
        self._audit_due = True  # the topics may be gone: look before publishing again
        self.stats.failures += 1
        if self.metrics is not None:
            self.metrics.relay_failures.inc()
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("relay.failed", error=self.stats.last_error, retry_in=backoff)


def lease_status(db: peewee.Database) -> str:
    """One line for `central status`: who holds the relay lease, on the database's clock.
    Models bound, a connection open."""
    lease = RelayLease.get_or_none(RelayLease.name == LEASE_NAME)
    if lease is None:
        return "relay lease: never taken"
    left = (lease.expires_at - DatabaseClock(db).now()).total_seconds()
    if left > 0:
        return f"relay lease: held by {lease.owner} for {left:.1f} s more unless renewed"
    return f"relay lease: free (last held by {lease.owner}, {-left:.1f} s ago)"


def lease_owner() -> str:
    """`host:pid:random8`: operators (and tests) see which process holds the lease; the
    random part tells apart two relays of one process and a pid used again."""
    host = socket.gethostname()[:OWNER_HOST_CHARS] or "unknown"
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def trace_context_of(raw: str | None) -> dict[str, str] | None:
    """An outbox row's trace context (central.uow.written_by); None when it has none or it
    is not a JSON object of strings (a row is published all the same, untraced)."""
    if not raw:
        return None
    try:
        context = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(context, dict) or not all(
        isinstance(value, str) for value in context.values()
    ):
        return None
    return context


def publish_links(records: Sequence[OutboxRecord]) -> list[Link]:
    """Links to the distinct spans that wrote `records`, at most MAX_PUBLISH_LINKS."""
    writers: dict[str, Mapping[str, str]] = {}
    for record in records:
        context = record.trace_context or {}
        traceparent = context.get(tracing.TRACEPARENT)
        if traceparent and traceparent not in writers and len(writers) < MAX_PUBLISH_LINKS:
            writers[traceparent] = context
    return [
        link
        for context in writers.values()
        for link in tracing.link_from_headers(tracing.kafka_headers(context))
    ]


def outbox_backlog(db: peewee.Database) -> int:
    with db.connection_context():
        return int(Outbox.select().where(Outbox.published_at.is_null()).count())


def oldest_pending_age(db: peewee.Database, now: datetime) -> float | None:
    """Seconds the oldest unpublished event has waited; None when none waits."""
    query = (
        Outbox.select(Outbox.created_at)
        .where(Outbox.published_at.is_null())
        .order_by(Outbox.id)
        .limit(1)
    )
    with db.connection_context():
        oldest = query.scalar()
    return None if oldest is None else (now - oldest).total_seconds()


def events_stuck(db: peewee.Database, clock: Clock, failing_after: float) -> bool:
    """An event has waited `failing_after` seconds or more. Raises the database's errors."""
    age = oldest_pending_age(db, clock.now())
    return age is not None and age >= failing_after


def relay_state(
    db: peewee.Database,
    clock: Clock,
    relay: Relay | None,
    *,
    kafka: bool,
    failing_after: float = FAILING_AFTER_SECONDS,
) -> str:
    """One word for /readyz and the metric. `failing`: an event has waited in the outbox for
    `failing_after` seconds, so whichever relay holds the lease (in this process or another)
    is not publishing, or none runs; read from the database, every central says the same.
    Otherwise `leader` or `standby` for this process's relay, `ok` when it runs none, and
    `off` when no Kafka is configured (events wait in the outbox by design). First of all,
    `behind_kafka`: this process's relay found the database behind what Kafka holds and
    publishes nothing until an operator confirms the restore (central.kafka_position)."""
    if relay is not None and relay.stats.behind_kafka:
        return "behind_kafka"
    if relay is None and not kafka:
        return "off"
    try:
        stuck = events_stuck(db, clock, failing_after)
    except (peewee.DatabaseError, peewee.InterfaceError):
        stuck = False  # the database check says so; the relay's own word stands meanwhile
    if stuck:
        return "failing"
    if relay is None:
        return "ok"
    return "leader" if relay.stats.leader else "standby"


class PublishIncomplete(Exception):
    """Some records of the batch were not acknowledged; they stay pending and are retried."""
