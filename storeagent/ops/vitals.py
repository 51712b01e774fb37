"""The agent's vital signs, read on demand by /readyz, /metrics, the heartbeat to central and
the systemd notifier: readiness, lag per partition, replica staleness (on central's clock), the
offline queue and dead letters. Reads only, a few indexed queries: cheap enough for every scrape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import peewee

from invwire.errors.agent import KafkaAuthFailed, KafkaNotAuthorized
from storeagent.replica.db import META_LAST_EVENT_AT, Replica
from storeagent.replica.integrity import ReplicaFileWatch
from storeagent.replica.local_orders import LocalOrders
from storeagent.sync.central_clock import CentralClock
from storeagent.sync.progress import APPLY_FAILING, LOG_BEHIND, SyncProblem, SyncProgress
from storeagent.sync.source import TopicPartition

KAFKA_ACCESS_PROBLEMS = frozenset({KafkaAuthFailed.code, KafkaNotAuthorized.code})
SYNC_PROBLEMS = (KafkaAuthFailed.code, KafkaNotAuthorized.code, APPLY_FAILING, LOG_BEHIND)


@dataclass(frozen=True)
class LocalOrderCounts:
    queued: int  # accepted offline, waiting for central
    rejected_offline: int  # accepted offline, then refused by central: staff must see to them


def readiness_checks(replica: Replica, progress: SyncProgress) -> dict[str, bool]:
    """Ready = the replica's database answers, Kafka answered the loop recently and lets the
    store in, the loop holds its partitions and keeps coming round, batches are being
    written, the replica finished its first sync, and Kafka's log still holds what the
    replica read. progress.problems() says why `kafka_access`, `applying` or `kafka_log`
    fail."""
    database = _database_answers(replica)
    codes = {problem.code for problem in progress.problems()}
    return {
        "database": database,
        "broker": progress.broker_reachable(),
        "kafka_access": not codes & KAFKA_ACCESS_PROBLEMS,
        "assigned": progress.is_assigned(),
        "bootstrapped": database and _bootstrapped(replica),
        "consuming": progress.is_consuming(),
        "applying": APPLY_FAILING not in codes,
        "kafka_log": LOG_BEHIND not in codes,
    }


class Vitals:
    """Reads one replica handle (with its local orders) and the sync loop's progress."""

    def __init__(
        self,
        replica: Replica,
        orders: LocalOrders,
        progress: SyncProgress,
        replica_file: ReplicaFileWatch | None = None,
    ) -> None:
        """`replica_file`: readiness also needs the replica's path to name the opened file."""
        self._replica, self._orders, self._progress = replica, orders, progress
        self._replica_file = replica_file

    def readiness(self) -> dict[str, bool]:
        checks = readiness_checks(self._replica, self._progress)
        if self._replica_file is not None:
            checks["replica_file"] = self._replica_file.problem() is None
        return checks

    def ready(self) -> bool:
        return all(self.readiness().values())

    def bootstrapped(self) -> bool:
        return self._replica.is_bootstrapped()

    def problems(self) -> list[SyncProblem]:
        """What keeps the replica from following Kafka now (kafka.auth_failed, ...)."""
        return self._progress.problems()

    def loop_idle_s(self) -> float | None:
        """Seconds since the sync loop last came round; None when it is not running."""
        return self._progress.idle_for()

    def event_totals(self) -> dict[str, int]:
        """Records the loop handled since this process started, by outcome."""
        return self._progress.totals()

    def partition_lags(self) -> dict[TopicPartition, int]:
        """Records on the broker not yet in the replica, for each partition whose end is known."""
        ends = self._progress.end_offsets()
        if not ends:
            return {}
        stored = self._replica.stored_offsets()
        return {tp: max(end - stored.get(tp, 0), 0) for tp, end in ends.items()}

    def total_lag(self) -> int | None:
        """None until the loop has seen the broker's end offsets."""
        lags = self.partition_lags()
        return sum(lags.values()) if lags else None

    def last_event_at(self) -> str | None:
        """When the newest applied event happened at central (ISO 8601)."""
        return self._replica.get_meta(META_LAST_EVENT_AT)

    def staleness_s(self, now: datetime) -> float | None:
        """Central's now (`now` on this machine's clock, corrected by the estimated offset)
        minus the time central stamped on the newest applied event; None before the first
        event. Never clamped: a negative figure means a clock is wrong, and says so."""
        return staleness_s(self.last_event_at(), self.central_clock, now)

    @property
    def central_clock(self) -> CentralClock:
        """Central's clock as estimated from its heartbeat answers (the heartbeat feeds it)."""
        return self._progress.central_clock

    def clock_offset_s(self) -> float | None:
        """Central's clock minus this machine's; None until central answered a heartbeat."""
        return self.central_clock.offset_s()

    def local_orders(self) -> LocalOrderCounts:
        return LocalOrderCounts(self._orders.queue_depth(), self._orders.rejected_offline())

    def dead_letters(self) -> int:
        return self._replica.dead_letter_count()


def staleness_s(last_event_at: str | None, central: CentralClock, now: datetime) -> float | None:
    """Central's now (`now`, this machine's clock, corrected by `central`'s offset) minus
    `last_event_at` (ISO 8601, stamped by central); None without an event."""
    if last_event_at is None:
        return None
    return (central.central_time(now) - datetime.fromisoformat(last_event_at)).total_seconds()


def _database_answers(replica: Replica) -> bool:
    try:
        replica.db.execute_sql("SELECT 1")
    except peewee.DatabaseError:
        return False
    return True


def _bootstrapped(replica: Replica) -> bool:
    try:
        return replica.is_bootstrapped()
    except peewee.DatabaseError:
        return False
