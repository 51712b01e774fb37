"""The agent's vital signs, read on demand by /metrics and the heartbeat to central: lag per
partition, replica staleness, the offline queue and dead letters. Reads only, a few indexed
queries: cheap enough for every scrape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storeagent.local_sales import LocalSales
from storeagent.progress import SyncProgress
from storeagent.replica import META_LAST_EVENT_AT, Replica
from storeagent.source import TopicPartition


@dataclass(frozen=True)
class LocalOrderCounts:
    queued: int  # accepted offline, waiting for central
    rejected_offline: int  # accepted offline, then refused by central: staff must see to them


def partition_lags(replica: Replica, progress: SyncProgress) -> dict[TopicPartition, int]:
    """Records on the broker not yet in the replica, for each partition whose end is known."""
    ends = progress.end_offsets()
    if not ends:
        return {}
    stored = replica.stored_offsets()
    return {tp: max(end - stored.get(tp, 0), 0) for tp, end in ends.items()}


def total_lag(replica: Replica, progress: SyncProgress) -> int | None:
    """None until the loop has seen the broker's end offsets."""
    lags = partition_lags(replica, progress)
    return sum(lags.values()) if lags else None


def last_event_at(replica: Replica) -> datetime | None:
    """When the newest applied event happened at central."""
    raw = replica.get_meta(META_LAST_EVENT_AT)
    return None if raw is None else datetime.fromisoformat(raw)


def staleness_s(replica: Replica, now: datetime) -> float | None:
    """Now minus the time of the newest applied event; None before the first event."""
    newest = last_event_at(replica)
    return None if newest is None else max((now - newest).total_seconds(), 0.0)


def local_order_counts(replica: Replica) -> LocalOrderCounts:
    sales = LocalSales(replica)
    return LocalOrderCounts(sales.queue_depth(), sales.rejected_offline())
