"""The sync loop: Kafka -> replica, exactly once in effect.

Partitions are assigned manually and positioned from the offsets stored in the replica; each
polled batch is applied in one SQLite transaction together with its next offsets, then the
same offsets are committed to the Kafka group for visibility. A failed batch is never
skipped. Only what passes is retried: Kafka unreachable (SourceUnavailable) and a transient
SQLite error while applying (a lock held too long, a disk I/O error); then the loop seeks back
to the stored offsets, backs off and polls the batch again. Any other error ends run(): the
supervisor logs it (`consumer.crashed`) and stops the agent, and systemd restarts it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import peewee

from invwire.logs import EventLog
from invwire.topics import TOPICS
from storeagent.clock import Clock, utc_now
from storeagent.errors import SourceUnavailable, TopicsMissing
from storeagent.ops.metrics import AgentMetrics
from storeagent.replica.db import META_BOOTSTRAPPED, Replica, is_transient
from storeagent.sync.apply import BatchResult, apply_batch
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record, RecordSource, TopicPartition


@dataclass(frozen=True)
class LoopTuning:
    poll_timeout_ms: int = 500
    max_records: int = 500
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    broker_probe_s: float = 5.0  # how often an idle loop asks Kafka for its end offsets


class Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self._initial, self._maximum, self._delay = initial, maximum, initial

    def reset(self) -> None:
        self._delay = self._initial

    def wait(self, stop: threading.Event) -> None:
        stop.wait(self._delay)
        self._delay = min(self._delay * 2, self._maximum)


def topic_names(prefix: str) -> tuple[str, ...]:
    return tuple(prefix + topic for topic in TOPICS)


KAFKA_COMMIT_INTERVAL_S = 0.5


class SyncLoop:
    def __init__(
        self,
        replica: Replica,
        connect: Callable[[], RecordSource],
        *,
        prefix: str,
        stop: threading.Event,
        progress: SyncProgress,
        log: EventLog | None = None,
        tuning: LoopTuning | None = None,
        clock: Clock = utc_now,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.replica = replica
        self.stop = stop
        self.progress = progress
        self._connect = connect
        self._prefix = prefix
        self._log = log or EventLog("storeagent.consumer")
        self._tuning = tuning or LoopTuning()
        self._clock = clock
        self._metrics = metrics or AgentMetrics()
        self._probed_at = 0.0
        self._positions: dict[TopicPartition, int | None] = {}
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committed_at = 0.0
        self._bootstrap_ends: dict[TopicPartition, int] | None = None
        self._resync = threading.Event()

    def request_resync(self) -> None:
        """Rebuild the replica from the topics: taken up between two batches."""
        self._resync.set()

    def run(self) -> None:
        """Consume until `stop` is set. Transient failures are retried; anything else escapes."""
        self.progress.started()
        try:
            source = self._open()
            if source is not None:
                try:
                    self._consume(source)
                finally:
                    source.close()
        finally:
            self.progress.stopped()
            self._log.info("consumer.stopped")

    def start(self, source: RecordSource) -> None:
        """Assign every partition and seek each to its stored next offset."""
        partitions = self._partitions(source)
        source.assign(partitions)
        self.progress.assigned(len(partitions))
        stored = self.replica.stored_offsets()
        self._positions = {tp: stored.get(tp) for tp in partitions}
        self._rewind(source)
        ends = source.end_offsets(partitions)
        self._broker_answered()
        self.progress.set_end_offsets(ends)
        self._bootstrap_ends = None if self.replica.is_bootstrapped() else ends
        if self._bootstrap_ends is not None:
            self._check_bootstrapped(source, self._bootstrap_ends)
        self._log.info(
            "consumer.started",
            partitions=len(partitions),
            bootstrapped=self._bootstrap_ends is None,
            behind=sum(max(end - (stored.get(tp) or 0), 0) for tp, end in ends.items()),
        )

    def step(self, source: RecordSource) -> bool:
        """One poll-and-apply round; False when it failed and the caller should back off."""
        if self._resync.is_set():
            self._restart_from_scratch(source)
        try:
            records = source.poll(self._tuning.poll_timeout_ms, self._tuning.max_records)
        except SourceUnavailable as exc:
            self._log.warning("consumer.poll_failed", code=exc.code, message=exc.message)
            self._rewind(source)
            return False
        if records and not self._apply(source, records):
            return False
        if not records:
            self._flush_commit(source)
        self.progress.beat()
        self._refresh_end_offsets(source)
        self._probe_broker(source)
        if self._bootstrap_ends is not None:
            self._check_bootstrapped(source, self._bootstrap_ends)
        return True

    def _open(self) -> RecordSource | None:
        """Connect and start, retrying until Kafka answers and the topics exist (or stop)."""
        backoff = self._backoff()
        source: RecordSource | None = None
        while not self.stop.is_set():
            self.progress.tick()
            try:
                source = source or self._connect()
                self.start(source)
                return source
            except TopicsMissing as exc:
                self._log.warning("consumer.waiting_for_topics", topics=exc.details["topics"])
            except SourceUnavailable as exc:
                self._log.warning("consumer.not_connected", code=exc.code, message=exc.message)
                self.progress.broker_failed(exc.message)
                if source is not None:
                    source.close()
                source = None
            backoff.wait(self.stop)
        if source is not None:
            source.close()
        return None

    def _consume(self, source: RecordSource) -> None:
        backoff = self._backoff()
        while not self.stop.is_set():
            self.progress.tick()
            if self.step(source):
                backoff.reset()
            else:
                backoff.wait(self.stop)

    def _backoff(self) -> Backoff:
        return Backoff(self._tuning.backoff_initial_s, self._tuning.backoff_max_s)

    def _partitions(self, source: RecordSource) -> list[TopicPartition]:
        found: list[TopicPartition] = []
        missing: list[str] = []
        for topic in topic_names(self._prefix):
            ids = source.partitions_for(topic)
            if not ids:
                missing.append(topic)
            found += [TopicPartition(topic, p) for p in sorted(ids)]
        if missing:
            raise TopicsMissing(topics=missing)
        return found

    def _restart_from_scratch(self, source: RecordSource) -> None:
        """Forget every replicated row and offset in one transaction (local sales stay), then
        read every topic from the beginning; reads answer 503 until bootstrapped again."""
        self._resync.clear()
        with self.replica.transaction():
            self.replica.clear_replicated_state()
        self._uncommitted = {}
        self._log.info("consumer.resync_started")
        self.start(source)

    def _rewind(self, source: RecordSource) -> None:
        for tp, offset in self._positions.items():
            source.seek(tp, offset)

    def _apply(self, source: RecordSource, records: Sequence[Record]) -> bool:
        started = time.perf_counter()
        try:
            result = apply_batch(self.replica, records, prefix=self._prefix, now=self._clock())
        except peewee.OperationalError as exc:
            if not is_transient(exc):
                raise
            self._log.error("consumer.apply_failed", exc=True, records=len(records))
            self._rewind(source)
            return False
        self._metrics.batch_applied(result, time.perf_counter() - started, self._clock())
        self._positions.update(result.offsets)
        self._report(result)
        self._commit(source, result)
        return True

    def _report(self, result: BatchResult) -> None:
        self.progress.count(result.applied, result.stale, result.dead_lettered)
        counts = {"applied": result.applied, "stale": result.stale}
        if result.dead_lettered:
            self._log.warning("consumer.dead_lettered", count=result.dead_lettered, **counts)
        self._log.debug("consumer.batch_applied", dead_lettered=result.dead_lettered, **counts)

    def _commit(self, source: RecordSource, result: BatchResult) -> None:
        self._uncommitted.update(result.offsets)
        if time.monotonic() - self._committed_at >= KAFKA_COMMIT_INTERVAL_S:
            self._flush_commit(source)

    def _flush_commit(self, source: RecordSource) -> None:
        """Mirror the replica's offsets to the Kafka group, for lag tooling only: the replica's
        own offsets are the truth, so this runs at most twice a second and when idle."""
        if not self._uncommitted:
            return
        self._committed_at = time.monotonic()
        try:
            source.commit(self._uncommitted)
        except SourceUnavailable as exc:
            self._log.warning("consumer.commit_failed", code=exc.code, message=exc.message)
            self.progress.broker_failed(exc.message)
            return
        self._broker_answered()
        self._uncommitted = {}

    def _probe_broker(self, source: RecordSource) -> None:
        """kafka-python's poll() returns nothing, not an error, while the broker is down: when
        Kafka has not answered a request for a while, ask it for the end offsets, so that
        readiness (and the lag) tell the truth."""
        if time.monotonic() - self._probed_at < self._tuning.broker_probe_s:
            return
        self._probed_at = time.monotonic()
        try:
            ends = source.end_offsets(list(self._positions))
        except SourceUnavailable as exc:
            if self.progress.broker_error() is None:
                self._log.warning("consumer.broker_unreachable", message=exc.message)
            self.progress.broker_failed(exc.message)
            return
        self._broker_answered()
        self.progress.set_end_offsets(ends)

    def _broker_answered(self) -> None:
        self._probed_at = time.monotonic()
        if self.progress.broker_error() is not None:
            self._log.info("consumer.broker_reachable")
        self.progress.broker_answered()

    def _refresh_end_offsets(self, source: RecordSource) -> None:
        seen = {tp: source.highwater(tp) for tp in self._positions}
        self.progress.set_end_offsets({tp: end for tp, end in seen.items() if end is not None})

    def _check_bootstrapped(self, source: RecordSource, ends: dict[TopicPartition, int]) -> None:
        for tp, end in ends.items():
            position = source.position(tp)
            if position is None or position < end:
                return
        with self.replica.transaction():
            self.replica.set_meta({META_BOOTSTRAPPED: "1"})
        self._bootstrap_ends = None
        self._log.info("consumer.bootstrapped", partitions=len(ends))
