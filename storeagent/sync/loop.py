"""The sync loop: Kafka -> replica, exactly once in effect.

Partitions are assigned manually and positioned from the offsets stored in the replica; each
polled batch is applied in one SQLite transaction together with its next offsets, then the
same offsets are committed to the Kafka group for visibility. A record that cannot be applied
for a reason of its own is dead-lettered inside the batch (sync.apply); a failed batch is
never skipped. What may pass is retried with back-off:

- Kafka unreachable (SourceUnavailable): reconnect, or seek back and poll again; a client
  whose requests have gone unanswered for `client_stale_s` is closed and a new one made,
  because kafka-python's client can stay stuck after a node of the cluster came back while
  the others answer a new client at once (found in the chaos test: one store of four kept
  timing out on every request for 90 s after the Kafka node it had lost restarted);
- Kafka refusing the store (KafkaAccessDenied: `kafka.auth_failed`, `kafka.not_authorized`):
  the connection is dropped and made again, because a key can be restored or an ACL added;
  readiness and /sync/status name the problem and it is logged once a minute at most;
- a transient SQLite error while applying (a lock held too long, a disk I/O error, a full
  disk): the batch rolls back, the loop seeks back to the stored offsets and polls it again,
  reported as `apply_failing` while the lag keeps counting what Kafka holds.

Kafka's log no longer the one the replica read (`kafka.log_behind`: a topic deleted and
re-created, a broker that lost its data, records deleted before they were read) is found by
sync.log_checks: stored offsets against each partition's start and end offsets and the
topics' ids when the loop starts and in later probes, each batch against the offsets asked
for, and the last record read in each partition read again after a start (or once Kafka was
unreachable). The replica then may hold changes the log no longer has, and newer ones may be
taken for stale: the agent is not ready, says why, and stays so (across restarts, in the
replica's meta) until a resync rebuilds the replica from the log as it is (sync.rebuild:
beside the live replica, which serves meanwhile, then adopted between two batches) and, if
that holds fewer rows than the replica did, until central's republish brings them back
(sync.log_guard). The loop goes on applying meanwhile: central's versions come from its
database, so what arrives is still newer or not.

Central restored from a backup starts a new epoch (sync.epochs) and republishes its whole state
under it. The first record of a newer epoch is stored as the replica's epoch and logged
(`consumer.new_epoch`); when the replica holds rows of an older incarnation (at start, too:
a rebuild cut short by a restart), the loop rebuilds it (sync.rebuild) from the records of
that epoch alone, skipping older ones, which describe a database that no longer exists. Until
it adopts the rebuilt replica, the live one goes on serving and applying: a newer epoch's
change outranks an older one's whatever the versions (replica.db). A newer epoch still
arriving during a rebuild starts it over for that epoch.

Any other error ends run() (a bug, or a database that is broken rather than busy): the
supervisor logs it (`consumer.crashed`) and stops the agent, and systemd restarts it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from invwire.errors.agent import KafkaAccessDenied, SourceUnavailable, TopicsMissing
from invwire.logs import EventLog
from invwire.topics import TOPICS
from storeagent.clock import Clock, utc_now
from storeagent.ops.metrics import AgentMetrics
from storeagent.replica.db import (
    DATABASE_ERRORS,
    META_BOOTSTRAPPED,
    Replica,
    is_transient,
)
from storeagent.sync.apply import BatchResult, apply_batch
from storeagent.sync.log_guard import LogGuard
from storeagent.sync.progress import SyncProblem, SyncProgress
from storeagent.sync.rebuild import Rebuild, RebuildState, RebuildStatus, rebuild_path
from storeagent.sync.source import Record, RecordSource, TopicPartition


@dataclass(frozen=True)
class LoopTuning:
    poll_timeout_ms: int = 500
    # A batch, one transaction. Its fixed costs (offsets, marks, the bootstrap check, the
    # metrics, the group commit) were a twentieth of a catch-up at 500 records a batch; at
    # 2,000 a record-by-record fallback (a bad record in the batch) takes some 60 ms.
    max_records: int = 2_000
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    broker_probe_s: float = 5.0  # how often an idle loop asks Kafka for its end offsets
    client_stale_s: float = 15.0  # Kafka unanswered this long: the client is made anew


class ClientStale(Exception):
    """Kafka has not answered this client for `client_stale_s`: close it and make another."""


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
# After a failed commit (its group coordinator down: a Kafka node lost) the next waits this
# long: each attempt blocks the loop for up to the call timeout, and records from the nodes
# still up must keep being applied meanwhile. The group's offsets are only a mirror.
KAFKA_COMMIT_RETRY_S = 5.0
# A rebuild that reached the end offsets read when it started reads them again, and goes on
# while they grew (central may still be republishing), this many times at most.
REBUILD_SETTLE_ROUNDS = 10
PROBLEM_LOG_EVERY_S = 60.0  # a lasting problem is logged when it starts, then this often


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
        store_id: str | None = None,
        mirror_offsets: bool = True,
        epoch_floor: int | None = None,
    ) -> None:
        """`store_id`: the store whose orders' updates the replica keeps (sync.apply);
        `mirror_offsets`: commit the replica's offsets to the store's Kafka group (not for a
        rebuild's own loop, sync.rebuild); `epoch_floor`: set for a rebuild's own loop, the
        epoch it rebuilds for (older records are skipped); the live loop's is None."""
        self.replica = replica
        self._store_id = store_id
        self._mirror = mirror_offsets
        self._epoch_floor = epoch_floor
        self._rebuild_epoch = 0  # the epoch the running rebuild is made for
        self._settle_rounds = 0
        self.stop = stop
        self.progress = progress
        self._connect = connect
        self._prefix = prefix
        self._log = log or EventLog("storeagent.consumer")
        self._tuning = tuning or LoopTuning()
        self._clock = clock
        self._metrics = metrics or AgentMetrics()
        self._probed_at = 0.0
        self._unanswered_since: float | None = None
        self._positions: dict[TopicPartition, int | None] = {}
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committed_at = 0.0
        self._commit_paused_until = 0.0
        self._bootstrap_ends: dict[TopicPartition, int] | None = None
        self._resync = threading.Event()
        self._rebuild: Rebuild | None = None
        self._problem_logged_at: dict[str, float] = {}
        self._guard = LogGuard(
            replica,
            progress,
            self._log,
            due=self._due,
            on_loss=self._rebuild_from_the_log_as_it_is,
        )

    def request_resync(self) -> datetime:
        """Rebuild the replica from the topics beside it (sync.rebuild): started between two
        batches (after the running one, if one runs: the log as it is now is wanted), and
        adopted between two batches once done; the replica serves meanwhile. Returns the
        time asked: the rebuild that answers it starts at that time or later."""
        requested = self._clock()
        self._resync.set()
        return requested

    def run(self) -> None:
        """Consume until `stop` is set. Transient failures are retried; anything else escapes."""
        self.progress.started()
        try:
            while not self.stop.is_set():
                source = self._open()
                if source is None:
                    break
                try:
                    denied = self._consume(source)
                finally:
                    source.close()
                if denied:
                    self.stop.wait(self._tuning.backoff_max_s)  # retry later
        finally:
            if self._rebuild is not None:
                self._rebuild.discard()
            self.progress.stopped()
            self._log.info("consumer.stopped")

    def start(self, source: RecordSource) -> None:
        """Assign every partition and seek each to its stored next offset."""
        partitions = self._partitions(source)
        source.assign(partitions)
        self.progress.assigned(len(partitions))
        stored = self.replica.stored_offsets()
        self._positions = {tp: stored.get(tp) for tp in partitions}
        self._arm_marks(source)
        ends = source.end_offsets(partitions)
        starts = source.beginning_offsets(partitions)
        self._broker_answered()
        self.progress.set_end_offsets(ends)
        self._recall_log_behind()
        self._guard.check_offsets(self._positions, ends, starts)
        self._guard.check_topics(source, topic_names(self._prefix), record=True)
        self._rebuild_if_older_rows()
        self._mirror_to_group(source, stored)
        self._bootstrap_ends = None if self.replica.is_bootstrapped() else ends
        if self._bootstrap_ends is not None:
            self._check_bootstrapped(source, self._bootstrap_ends)
        self._access_granted()
        self._log.info(
            "consumer.started",
            partitions=len(partitions),
            bootstrapped=self._bootstrap_ends is None,
            behind=sum(max(end - (stored.get(tp) or 0), 0) for tp, end in ends.items()),
        )

    def step(self, source: RecordSource) -> bool:
        """One poll-and-apply round; False when it failed and the caller should back off.
        Raises KafkaAccessDenied when Kafka refused the store: the caller reconnects later."""
        self._adopt_if_rebuilt(source)
        if self._resync.is_set() and self._rebuild is None:
            self._begin_rebuild()
        try:
            records = source.poll(self._tuning.poll_timeout_ms, self._tuning.max_records)
        except KafkaAccessDenied:
            raise
        except SourceUnavailable as exc:
            self._log.warning("consumer.poll_failed", code=exc.code, message=exc.message)
            self._arm_marks(source)
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
            except KafkaAccessDenied as exc:
                self._access_denied(exc)
                if source is not None:
                    source.close()
                source = None
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

    def _consume(self, source: RecordSource) -> bool:
        """Until `stop`, until Kafka denies the store access or until the client is stale
        (run() then reconnects). Whether access was denied."""
        backoff = self._backoff()
        while not self.stop.is_set():
            self.progress.tick()
            try:
                stepped = self.step(source)
            except KafkaAccessDenied as exc:
                self._access_denied(exc)
                self.progress.assigned(0)
                return True
            except ClientStale as exc:
                self._log.warning("consumer.reconnecting", reason=str(exc))
                return False
            except DATABASE_ERRORS as exc:  # marking the replica bootstrapped, or a resync
                if not is_transient(exc):
                    raise
                self._apply_failed(exc, 0)
                self._rewind(source)
                stepped = False
            if stepped:
                backoff.reset()
            else:
                backoff.wait(self.stop)
        return False

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

    def _begin_rebuild(self) -> None:
        self._resync.clear()
        path = rebuild_path(Path(self.replica.db.database))
        self._rebuild_epoch = self.replica.epoch()
        make_loop = partial(self._rebuild_loop, epoch_floor=self._rebuild_epoch)
        self._rebuild = Rebuild(path, make_loop, self._connect, log=self._log, clock=self._clock)
        rebuild = self._rebuild
        self.progress.show_rebuild(lambda: _shown(rebuild.status()))
        rebuild.start()

    def _rebuild_loop(
        self, replica: Replica, stop: threading.Event, progress: SyncProgress, *, epoch_floor: int
    ) -> SyncLoop:
        return SyncLoop(
            replica,
            self._connect,
            prefix=self._prefix,
            stop=stop,
            progress=progress,
            log=EventLog("storeagent.rebuild"),
            tuning=self._tuning,
            clock=self._clock,
            store_id=self._store_id,
            mirror_offsets=False,
            epoch_floor=epoch_floor,
        )

    def _adopt_if_rebuilt(self, source: RecordSource) -> None:
        """Between two batches: take a finished rebuild's rows and offsets, and go on from
        there; what was applied past them is read again and changes nothing."""
        rebuild = self._rebuild
        if rebuild is None or rebuild.status().state is RebuildState.RUNNING:
            return
        final = rebuild.status()
        if final.state is RebuildState.DONE:
            epoch_was = self.replica.epoch()
            rows_before = self._guard.rows_before_adopting()
            self.replica.adopt(rebuild.path)  # if this fails, the next round tries again
            stored = self.replica.stored_offsets()
            self._positions = {tp: stored.get(tp) for tp in self._positions}
            self._arm_marks(source)
            self._bootstrap_ends = None
            ended = self.progress.log_trusted()
            self._mirror_to_group(source, stored)
            self._log.info(
                "consumer.rebuild_adopted", applied=final.applied, ended=ended and ended.code
            )
            self._guard.adopted(rows_before)  # short of rows the log lost: says so
            final = replace(final, state=RebuildState.ADOPTED)
        self._rebuild = None
        rebuild.discard()
        self.progress.show_rebuild(lambda: _shown(final))
        if final.state is RebuildState.ADOPTED:
            self._adopted_epoch(epoch_was)

    def _adopted_epoch(self, epoch_was: int) -> None:
        """The rebuild may have read a newer epoch than the live loop had (it read ahead):
        that is a new epoch seen, and its rows older than it call for another rebuild."""
        epoch = self.replica.epoch()
        if epoch > epoch_was:
            self._saw_epoch(epoch_was, epoch)
        else:
            self._rebuild_if_older_rows()

    def _saw_epoch(self, old: int, new: int) -> None:
        """A record of a newer epoch than any before: central was restored (or, from 0 to
        1, started to send epochs). Only the live loop acts on it."""
        if self._epoch_floor is not None:
            return
        rebuilding = self._rebuild_if_older_rows()
        self._log.warning("consumer.new_epoch", old=old, new=new, rebuild=rebuilding)

    def _rebuild_if_older_rows(self) -> bool:
        """Rebuild for the newest epoch seen when the replica holds rows of an older
        incarnation; a rebuild running for an older epoch is dropped and started over.
        Whether a rebuild runs or is asked for that epoch."""
        if self._epoch_floor is not None or not self.replica.holds_older_rows():
            return False
        epoch = self.replica.epoch()
        rebuild = self._rebuild
        if rebuild is not None and self._rebuild_epoch >= epoch:
            return True
        if rebuild is not None:
            self._rebuild = None
            rebuild.discard()
            self._log.info("consumer.rebuild_dropped", epoch=self._rebuild_epoch, newer=epoch)
        self._resync.set()
        return True

    def _rewind(self, source: RecordSource) -> None:
        for tp, offset in self._positions.items():
            source.seek(tp, self._guard.seek_target(tp, offset))

    def _arm_marks(self, source: RecordSource) -> None:
        """Read the last record read in each partition again before going on (its mark is
        checked, sync.log_checks): after a start, and when Kafka may have lost its data."""
        self._guard.arm(self._positions)
        self._rewind(source)

    def _apply(self, source: RecordSource, records: Sequence[Record]) -> bool:
        started = time.perf_counter()
        records = self._guard.check_batch(source, self._positions, records)
        if not records:
            return True  # only records read again to check them
        try:
            result = apply_batch(
                self.replica,
                records,
                prefix=self._prefix,
                now=self._clock(),
                store_id=self._store_id,
                epoch_floor=self._epoch_floor or 0,
            )
        except DATABASE_ERRORS as exc:
            if not is_transient(exc):
                raise
            self._apply_failed(exc, len(records))
            self._rewind(source)
            # the lag must keep growing while nothing is applied, not freeze at its last value
            self._refresh_end_offsets(source)
            self._probe_broker(source)
            return False
        self._apply_succeeded()
        applied_at = self.progress.central_clock.central_time(self._clock())  # as occurred_at
        self._metrics.batch_applied(result, time.perf_counter() - started, applied_at)
        self._positions.update(result.offsets)
        self._guard.check_refilled()
        self._report(result)
        self._commit(source, result)
        if result.new_epoch is not None:
            self._saw_epoch(*result.new_epoch)
        return True

    def _report(self, result: BatchResult) -> None:
        self.progress.count(result.applied, result.stale, result.dead_lettered)
        counts = {"applied": result.applied, "stale": result.stale}
        if result.dead_lettered:
            self._log.warning(
                "consumer.dead_lettered",
                count=result.dead_lettered,
                reasons=dict(result.dead_letter_reasons),
                **counts,
            )
        self._log.debug("consumer.batch_applied", dead_lettered=result.dead_lettered, **counts)

    def _apply_failed(self, exc: Exception, records: int) -> None:
        problem = self.progress.apply_failed(f"{type(exc).__name__}: {exc}")
        if self._due(problem):
            self._log.error(
                "consumer.apply_failing",
                exc=problem.failures == 1,
                message=problem.message,
                records=records,
                failures=problem.failures,
            )

    def _apply_succeeded(self) -> None:
        ended = self.progress.apply_succeeded()
        if ended is not None:
            self._problem_logged_at.pop(ended.code, None)
            self._log.info("consumer.apply_recovered", failures=ended.failures)

    def _access_denied(self, exc: KafkaAccessDenied) -> None:
        problem = self.progress.access_denied(exc.code, exc.message)
        if self._due(problem):
            self._log.error(problem.code, message=problem.message, failures=problem.failures)

    def _access_granted(self) -> None:
        ended = self.progress.access_granted()
        if ended is not None:
            self._problem_logged_at.pop(ended.code, None)
            self._log.info("kafka.access_restored", was=ended.code, failures=ended.failures)

    def _due(self, problem: SyncProblem) -> bool:
        """Log a lasting problem when it starts, then once every PROBLEM_LOG_EVERY_S."""
        now = time.monotonic()
        logged = self._problem_logged_at.get(problem.code)
        if problem.failures > 1 and logged is not None and now - logged < PROBLEM_LOG_EVERY_S:
            return False
        self._problem_logged_at[problem.code] = now
        return True

    def _mirror_to_group(self, source: RecordSource, stored: dict[TopicPartition, int]) -> None:
        """Commit the replica's offsets to the group at once: the group's lag is right after a
        restart or a resync, and a store that may not use its group is told now (as
        KafkaNotAuthorized), not after its first batch."""
        self._uncommitted = dict(stored)
        self._commit_paused_until = 0.0  # a new connection: try its coordinator at once
        self._flush_commit(source)

    def _commit(self, source: RecordSource, result: BatchResult) -> None:
        self._uncommitted.update(result.offsets)
        if time.monotonic() - self._committed_at >= KAFKA_COMMIT_INTERVAL_S:
            self._flush_commit(source)

    def _flush_commit(self, source: RecordSource) -> None:
        """Mirror the replica's offsets to the Kafka group, for lag tooling only: the replica's
        own offsets are the truth, so this runs at most twice a second and when idle."""
        if not self._mirror or not self._uncommitted:
            return
        self._committed_at = time.monotonic()
        if self._committed_at < self._commit_paused_until:
            return
        try:
            source.commit(self._uncommitted)
        except KafkaAccessDenied:
            raise
        except SourceUnavailable as exc:
            self._log.warning("consumer.commit_failed", code=exc.code, message=exc.message)
            self.progress.broker_failed(exc.message)
            self._commit_paused_until = self._committed_at + KAFKA_COMMIT_RETRY_S
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
            starts = source.beginning_offsets(list(self._positions))
        except KafkaAccessDenied:
            raise
        except SourceUnavailable as exc:
            if self.progress.broker_error() is None:
                self._log.warning("consumer.broker_unreachable", message=exc.message)
                self._arm_marks(source)  # it may come back without the data it had
            self.progress.broker_failed(exc.message)
            self._check_stale()
            return
        self._broker_answered()
        self.progress.set_end_offsets(ends)
        self._guard.check_offsets(self._positions, ends, starts)
        self._guard.check_topics(source, topic_names(self._prefix), record=False)

    def _recall_log_behind(self) -> None:
        """A loss found before this process started: this process starts the rebuild."""
        noted = self._guard.recall()
        if noted and self._epoch_floor is None and self._rebuild is None:  # not a reconnect
            self._resync.set()  # mid-rebuild: that one began after the loss was found

    def _rebuild_from_the_log_as_it_is(self) -> None:
        """Kafka's log lost what the replica read: rebuild from the log as it is now. A rebuild
        already running began on the old log: it is dropped, and a new one asked for."""
        if self._epoch_floor is not None:  # a rebuild's own loop: its owner decides
            return
        rebuild = self._rebuild
        if rebuild is not None:
            self._rebuild = None
            rebuild.discard()
            self._log.info("consumer.rebuild_dropped", reason="kafka.log_behind")
        self._resync.set()

    def _check_stale(self) -> None:
        now = time.monotonic()
        if self._unanswered_since is None:
            self._unanswered_since = now
        elif now - self._unanswered_since >= self._tuning.client_stale_s:
            self._unanswered_since = None
            raise ClientStale(
                f"Kafka has not answered this client for {self._tuning.client_stale_s:g} s"
            )

    def _broker_answered(self) -> None:
        self._probed_at = time.monotonic()
        self._unanswered_since = None
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
        if self._ends_grew(source, ends):
            return
        with self.replica.transaction():
            self.replica.set_meta({META_BOOTSTRAPPED: "1"})
        self._bootstrap_ends = None
        self._log.info("consumer.bootstrapped", partitions=len(ends))

    def _ends_grew(self, source: RecordSource, ends: dict[TopicPartition, int]) -> bool:
        """A rebuild's loop that reached `ends` reads the end offsets again and goes on to
        them while they grew: central may be republishing its state for a new epoch, and the
        rebuilt replica is adopted in place of the live one only once it holds all of it
        (REBUILD_SETTLE_ROUNDS at most, so that a busy topic does not hold it forever)."""
        if self._epoch_floor is None or self._settle_rounds >= REBUILD_SETTLE_ROUNDS:
            return False
        self._settle_rounds += 1
        try:
            now = source.end_offsets(list(ends))
        except KafkaAccessDenied:
            raise
        except SourceUnavailable:
            return True  # asked again at the next step
        if all(now.get(tp, end) <= end for tp, end in ends.items()):
            return False
        self._bootstrap_ends = {tp: max(end, now.get(tp, end)) for tp, end in ends.items()}
        return True


def _shown(status: RebuildStatus) -> dict[str, Any]:
    return {
        "state": status.state.value,
        "started_at": status.started_at.isoformat(),
        "applied": status.applied,
        "message": status.message,
    }
