"""The store API's request bodies and the shape of GET /sync/status (docs/wire.md); the
replica's read shapes (stock, products, orders) are replica.queries'."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, NotRequired

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from storeagent.clock import utc_now
from storeagent.ops.vitals import staleness_s
from storeagent.replica.db import (
    META_EPOCH,
    META_EVENTS_APPLIED,
    META_LAST_APPLIED_AT,
    META_LAST_EVENT_AT,
    Replica,
)
from storeagent.sales.recovery import RecoveryStatus
from storeagent.sales.status import OfflineQueueStatus
from storeagent.sync.progress import SyncProblem, SyncProgress
from storeagent.upstream.resilience import CircuitStatus


class OrderIn(BaseModel):
    lines: list[dict[str, Any]] = Field(max_length=1000)


class PartitionStatus(TypedDict):
    topic: str
    partition: int
    offset: int
    end_offset: int | None
    lag: int | None


class ProblemStatus(TypedDict):
    """Why the replica cannot follow Kafka: kafka.auth_failed, kafka.not_authorized or
    apply_failing, the last error, how long it has lasted and how many attempts failed."""

    code: str
    message: str
    for_s: float
    failures: int


class SyncStatus(TypedDict):
    store_id: str
    ready: bool
    problems: list[ProblemStatus]
    last_event_at: str | None
    last_applied_at: str | None
    staleness_s: float | None  # central's now minus last_event_at; negative: a clock is wrong
    clock_offset_s: float | None  # central's clock minus this machine's; null: not yet known
    events_applied: int
    dead_letters: int
    epoch: int  # the newest epoch of central's database in a record applied (0: none yet)
    partitions: list[PartitionStatus]
    central: NotRequired[CircuitStatus]
    offline_queue: NotRequired[OfflineQueueStatus]
    rebuild: NotRequired[dict[str, object]]  # the last resync's (sync.rebuild), when one ran
    recovery: NotRequired[RecoveryStatus]  # sales given back to a restored central
    central_url: NotRequired[str]  # with several central URLs: the one in use now
    central_urls: NotRequired[list[str]]  # ... and all of them, in the order tried
    allowances: NotRequired[dict[str, Any]]  # the store's grants (sales.allowance_keeper)


def sync_status(
    replica: Replica,
    progress: SyncProgress,
    *,
    store_id: str,
    topics: Collection[str],
    ready: bool,
    now: datetime | None = None,
) -> SyncStatus:
    """Per-partition lag of the current topics: live end offsets minus stored next offsets.
    Staleness is measured on central's clock as estimated (`now`: this machine's clock, read
    when None). The order path's parts (central, offline_queue, recovery) are the API's to
    add (storeagent.http.app)."""
    meta = replica.meta()
    stored = replica.stored_offsets()
    ends = progress.end_offsets()
    partitions = sorted(tp for tp in set(stored) | set(ends) if tp.topic in topics)
    status = SyncStatus(
        store_id=store_id,
        ready=ready,
        problems=problem_statuses(progress),
        last_event_at=meta.get(META_LAST_EVENT_AT),
        last_applied_at=meta.get(META_LAST_APPLIED_AT),
        staleness_s=_rounded(
            staleness_s(meta.get(META_LAST_EVENT_AT), progress.central_clock, now or utc_now())
        ),
        clock_offset_s=_rounded(progress.central_clock.offset_s()),
        events_applied=int(meta.get(META_EVENTS_APPLIED, 0)),
        dead_letters=replica.dead_letter_count(),
        epoch=int(meta.get(META_EPOCH) or 0),
        partitions=[
            _partition(tp.topic, tp.partition, stored.get(tp, 0), ends.get(tp)) for tp in partitions
        ],
    )
    rebuild = progress.rebuild()
    if rebuild is not None:
        status["rebuild"] = rebuild
    return status


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _partition(topic: str, partition: int, offset: int, end: int | None) -> PartitionStatus:
    lag = None if end is None else max(end - offset, 0)
    return PartitionStatus(topic=topic, partition=partition, offset=offset, end_offset=end, lag=lag)


def problem_statuses(progress: SyncProgress) -> list[ProblemStatus]:
    return [_problem(problem, progress.age(problem)) for problem in progress.problems()]


def _problem(problem: SyncProblem, age_s: float) -> ProblemStatus:
    return ProblemStatus(
        code=problem.code,
        message=problem.message,
        for_s=round(age_s, 1),
        failures=problem.failures,
    )
