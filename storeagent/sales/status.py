"""The offline queue as GET /sync/status shows it: the policy, the queue's depth and age, the
sales in doubt, and the replayer's backoff."""

from __future__ import annotations

from datetime import datetime

from typing_extensions import TypedDict

from storeagent.replica.local_orders import LocalOrders
from storeagent.sales.offline_policy import OfflinePolicy
from storeagent.sales.schedule import ReplaySchedule


class OfflineQueueStatus(TypedDict):
    offline: str  # the policy: "on" or "off"
    depth: int  # sales queued offline, waiting for central
    units: int  # their units, against offline_max_queued_units
    oldest_age_s: float | None
    overdue: bool  # the oldest is older than offline_max_age
    rejected: int  # queued sales that central refused on replay
    pending: int  # sent to central, answer not (yet) recorded
    in_doubt: int  # failed, but central may hold them: to be looked up (and voided)
    next_attempt_in_s: float | None  # None: not backing off
    consecutive_failures: int
    last_error: str | None


def offline_status(
    orders: LocalOrders, schedule: ReplaySchedule, policy: OfflinePolicy, now: datetime
) -> OfflineQueueStatus:
    counts = orders.counts()
    next_in, failures, last_error = schedule.status()
    age = None
    if counts.oldest_queued_at is not None:
        waited = now - datetime.fromisoformat(counts.oldest_queued_at)
        age = round(max(waited.total_seconds(), 0.0), 1)
    return OfflineQueueStatus(
        offline="on" if policy.enabled else "off",
        depth=counts.depth,
        units=counts.units,
        oldest_age_s=age,
        overdue=age is not None and age > policy.max_age_s,
        rejected=counts.rejected,
        pending=counts.pending,
        in_doubt=counts.in_doubt,
        next_attempt_in_s=next_in,
        consecutive_failures=failures,
        last_error=last_error,
    )
