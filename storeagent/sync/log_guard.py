"""The sync loop's watch on Kafka's log: sync.log_checks' checks run at the loop's moments,
and what follows when one finds the log is not the one the replica read (`kafka.log_behind`):
the reason noted in the replica's meta (a restart does not forget it), the problem shown by
readiness and /sync/status, one log line (then one a minute at most), and, the first time,
the loop's `on_loss` (the live loop starts a rebuild from the log as it is).

A log that lost records may hold fewer rows than the replica did until central republishes
its state (central's relay does so once it finds its topics short; `central republish` at
once). Central never deletes a category, product or stock row, so a rebuild adopted after a
loss that holds fewer rows of a kind than the replica held before is short: the problem
stands, in the replica's meta too, until the replica holds as many rows of each kind again.
Counting cannot tell a missing row from a new one that came meanwhile; the republish follows
all the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence

from invwire.errors.agent import KafkaAccessDenied, SourceUnavailable
from invwire.logs import EventLog
from storeagent.replica.db import META_LOG_BEHIND, META_LOG_SHORT, Replica
from storeagent.sync.log_checks import (
    LogLoss,
    MarkCheck,
    Positions,
    before_start,
    ids_to_record,
    past_end,
    read_marks,
    recorded_topic_ids,
    skipped_ahead,
    topic_replaced,
    went_back,
)
from storeagent.sync.progress import LOG_BEHIND, SyncProblem, SyncProgress
from storeagent.sync.source import Record, RecordSource, TopicPartition


class LogGuard:
    def __init__(
        self,
        replica: Replica,
        progress: SyncProgress,
        log: EventLog,
        *,
        due: Callable[[SyncProblem], bool],
        on_loss: Callable[[], None],
    ) -> None:
        """`due`: whether a lasting problem is logged again now; `on_loss`: called when a
        loss is first found (not while an earlier one stands)."""
        self._replica, self._progress, self._log = replica, progress, log
        self._due, self._on_loss = due, on_loss
        self._marks = MarkCheck()
        self._short: dict[str, int] = {}  # rows of each kind the replica must hold again

    def arm(self, positions: Positions) -> None:
        """Have the last record read in each partition read again and compared with its
        mark: call it, then seek each partition to seek_target()."""
        self._marks.arm(read_marks(self._replica.meta()), positions)

    def seek_target(self, tp: TopicPartition, position: int | None) -> int | None:
        return self._marks.seek_target(tp, position)

    def recall(self) -> bool:
        """A loss found before this process started still stands (until a rebuild's adoption
        clears the note): shown again. Whether one stands."""
        noted = self._replica.get_meta(META_LOG_BEHIND)
        if noted:
            self._progress.log_behind(noted)
        self._short = json.loads(self._replica.get_meta(META_LOG_SHORT) or "{}")
        if self._short and not noted:
            self.check_refilled()
        return bool(noted)

    def rows_before_adopting(self) -> dict[str, int] | None:
        """The replica's rows by kind when the rebuild about to be adopted was made after a
        loss (else None): adopted() compares the rebuilt replica with them."""
        if not self._replica.get_meta(META_LOG_BEHIND):
            return None
        return self._replica.row_counts()

    def adopted(self, before: Mapping[str, int] | None) -> None:
        """The rebuild is adopted; short if it holds fewer rows than `before` of a kind."""
        if before is None:
            return
        expected = {kind: max(count, self._short.get(kind, 0)) for kind, count in before.items()}
        with self._replica.transaction():
            self._replica.set_meta({META_LOG_SHORT: json.dumps(expected)})
        self._short = expected
        if self.check_refilled():
            return
        self._log.warning("consumer.log_short", held=self._replica.row_counts(), expected=expected)

    def check_refilled(self) -> bool:
        """Whether the rows missing since a loss are back (or none were missing); while they
        are not, the problem is shown."""
        if not self._short:
            return True
        held = self._replica.row_counts()
        missing = {k: (held.get(k, 0), n) for k, n in self._short.items() if held.get(k, 0) < n}
        if missing:
            self._progress.log_behind(_short_message(missing))
            return False
        with self._replica.transaction():
            self._replica.set_meta({META_LOG_SHORT: ""})
        self._short = {}
        self._progress.log_trusted()
        self._log.info("consumer.log_refilled", held=held)
        return True

    def check_offsets(
        self,
        positions: Positions,
        ends: Mapping[TopicPartition, int],
        starts: Mapping[TopicPartition, int],
    ) -> None:
        """Stored offsets past a partition's end, or before its start."""
        loss = past_end(positions, ends) or before_start(positions, starts)
        if loss is not None:
            self.went_behind(loss)

    def check_topics(self, source: RecordSource, topics: Iterable[str], *, record: bool) -> None:
        """A topic whose id changed was re-created; with `record`, ids not yet in the
        replica's meta are written there (a rebuild's adoption brings the new ones)."""
        recorded = recorded_topic_ids(self._replica.meta())
        current = {topic: source.topic_id(topic) for topic in topics}
        loss = topic_replaced(recorded, current)
        if loss is not None:
            self.went_behind(loss)
        elif record and (new := ids_to_record(recorded, current)):
            with self._replica.transaction():
                self._replica.set_meta(new)

    def check_batch(
        self, source: RecordSource, positions: Positions, records: Sequence[Record]
    ) -> list[Record]:
        """`records` checked against the log the replica read, without the records read
        again only to compare them with their marks."""
        expected = self._marks.expected(positions)
        kept, loss = self._marks.check(records)
        loss = loss or went_back(expected, kept) or _past_start(source, expected, kept)
        if loss is not None:
            self.went_behind(loss)
        return kept

    def went_behind(self, loss: LogLoss) -> None:
        message = (
            f"Kafka's log is not the one this replica read ({loss.found}): a topic was "
            "re-created, the broker lost its data or records were deleted, so the replica "
            "may hold changes the log no longer has; it is being rebuilt from the log as it "
            "is (the till keeps selling from it meanwhile; central republishes its state "
            "when it finds its topics short)"
        )
        noted = self._replica.get_meta(META_LOG_BEHIND)
        first = not noted
        if first:
            with self._replica.transaction():
                self._replica.set_meta({META_LOG_BEHIND: message})
            self._on_loss()
            self._log_loss(message, loss)  # before it is shown: whoever sees it finds its line
        problem = self._progress.log_behind(noted or message)  # shown: the first cause found
        if self._due(problem) and not first:
            self._log_loss(message, loss)

    def _log_loss(self, message: str, loss: LogLoss) -> None:
        self._log.error(LOG_BEHIND, message=message, reason=loss.reason, partitions=loss.partitions)


def _short_message(missing: Mapping[str, tuple[int, int]]) -> str:
    counts = ", ".join(f"{kind}: {held} of {was}" for kind, (held, was) in missing.items())
    return (
        "Kafka's log, rebuilt from after a loss, holds fewer rows than this replica did "
        f"({counts}): the rows it lost are missing here until central republishes its state "
        "(central's relay does so by itself once it finds its topics short; `central "
        "republish` does it at once)"
    )


def _past_start(
    source: RecordSource, expected: Positions, records: Sequence[Record]
) -> LogLoss | None:
    """A batch that skips ahead of the offset asked for: a compacted gap, or the client's
    reset past records deleted before they were read; the partitions' starts tell."""
    skipped = skipped_ahead(expected, records)
    if not skipped:
        return None
    try:
        starts = source.beginning_offsets(list(skipped))
    except KafkaAccessDenied:
        raise
    except SourceUnavailable:
        return None  # not known now; the next probe compares the stored offsets
    return before_start(skipped, starts)
