"""The replayer: a supervised side task of the agent that settles, one at a time, every sale
whose outcome this store has not recorded from central yet.

- `queued` sales (accepted offline) and orphaned `pending` ones (sent, but the agent stopped
  or lost the answer before recording it) are sent again oldest first, each with its own
  idempotency key: central answers a key it has seen with its first order, so nothing sells
  twice. 201 -> `confirmed`, and the replica shows central's stock at once; a refusal ->
  `rejected` with central's code and message, logged; unavailable -> the sale stays as it
  is and the replayer backs off (exponential, jittered, capped; shown in /sync/status).
  A sale leaves the queue only on central's answer: nothing is dropped.
- `failed` sales whose request may have reached central (a timeout, a 5xx) are looked up by
  key once the failure is `void_after_s` old. The till was told the sale failed, so the
  customer did not take the goods: if central recorded it, it is cancelled there and the
  sale is recorded as voided (status stays `failed`, reason `order.voided`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import peewee

from invwire.logs import EventLog
from storeagent import order_rules as rules
from storeagent.central_client import CentralUnavailable, Confirmed, Refused
from storeagent.clock import Clock, utc_now
from storeagent.local_sales import LocalSales, lines_of
from storeagent.models import LocalOrder
from storeagent.offline import KeyClaims, OfflineQueueStatus, ReplaySchedule
from storeagent.offline_rules import OfflinePolicy
from storeagent.replica import iso
from storeagent.resilience import ResilientCentral

CANCELLED = "cancelled"


class Replayer:
    def __init__(
        self,
        sales: LocalSales,
        central: ResilientCentral,
        *,
        claims: KeyClaims,
        schedule: ReplaySchedule,
        clock: Clock = utc_now,
        log: EventLog | None = None,
    ) -> None:
        self._sales, self._central = sales, central
        self._claims, self._schedule, self._clock = claims, schedule, clock
        self._log = log or EventLog("storeagent.replay")

    def step(self) -> bool:
        """Settle the next sale; True when one was settled and the next may follow at once."""
        row = self._next()
        if row is None:
            return False
        with self._claims.replayer(str(row.idempotency_key)) as mine:
            if not mine:
                return False
            try:
                self._settle(str(row.idempotency_key))
            except CentralUnavailable as exc:
                self._failed(row, exc.message)
                return False
            except peewee.OperationalError as exc:  # e.g. the replica locked for too long
                self._failed(row, f"replica: {exc}")
                return False
        self._schedule.succeeded()
        return True

    def _next(self) -> LocalOrder | None:
        busy = self._claims.held_by_tills()
        failed_before = iso(self._clock() - timedelta(seconds=self._schedule.tuning.void_after_s))
        row = self._sales.next_to_replay(busy)
        return row if row is not None else self._sales.next_to_void(failed_before, busy)

    def _settle(self, key: str) -> None:
        row = self._sales.by_key(key)  # again, now that the key is ours
        if row is None:
            return
        if row.status in (rules.QUEUED, rules.PENDING):
            self._replay(row)
        elif row.status == rules.FAILED and row.outcome_unknown:
            self._void(row)

    def _replay(self, row: LocalOrder) -> None:
        result = self._central.place_order(
            str(row.idempotency_key), lines_of(row), request_id=str(row.local_ref), background=True
        )
        if isinstance(result, Refused):
            self._refused(row, result)
        else:
            self._confirmed(row, result)

    def _confirmed(self, row: LocalOrder, result: Confirmed) -> None:
        with self._sales.transaction():
            self._sales.confirm(str(row.local_ref), result)
        self._log.info(
            "offline.replayed" if row.status == rules.QUEUED else "order.resolved",
            local_ref=row.local_ref,
            order_id=result.order_id,
        )

    def _refused(self, row: LocalOrder, refusal: Refused) -> None:
        if refusal.is_auth:  # not a verdict on the sale: keep it, and keep trying
            raise CentralUnavailable(
                f"central refused the store's API key ({refusal.code})", reason="auth"
            )
        with self._sales.transaction():
            self._sales.record(
                str(row.local_ref), rules.REJECTED, code=refusal.code, message=refusal.message
            )
        offline = row.status == rules.QUEUED
        self._log.error(
            "offline.rejected" if offline else "order.rejected",
            local_ref=row.local_ref,
            code=refusal.code,
            message=refusal.message,
            lines=[line.to_wire() for line in lines_of(row)],
            customer_has_goods=offline,
        )

    def _void(self, row: LocalOrder) -> None:
        order = self._central.find_order(str(row.idempotency_key), background=True)
        if order is None:
            with self._sales.transaction():
                self._sales.update(str(row.local_ref), outcome_unknown=False)
            self._log.info("order.failed_not_at_central", local_ref=row.local_ref)
            return
        if order.get("status") != CANCELLED:
            order = self._central.cancel_order(str(order["id"]), background=True)
        message = f"central had recorded the failed sale as order {order['id']}; cancelled there"
        with self._sales.transaction():
            self._sales.record(
                str(row.local_ref),
                rules.FAILED,
                code=rules.VOIDED,
                message=message,
                order_id=order["id"],
            )
        self._log.warning("order.voided", local_ref=row.local_ref, order_id=order["id"])

    def _failed(self, row: LocalOrder, error: str) -> None:
        delay = self._schedule.failed(error)
        _, failures, _ = self._schedule.status()
        self._log.warning(
            "offline.replay_unavailable",
            local_ref=row.local_ref,
            message=error,
            consecutive_failures=failures,
            retry_in_s=round(delay, 1),
        )


class ReplayThread(threading.Thread):
    """Runs the replayer until `stop`; an unexpected error marks it failed and calls
    `on_failure` (the daemon then stops and systemd restarts it)."""

    def __init__(
        self,
        replayer: Replayer,
        schedule: ReplaySchedule,
        *,
        stop: threading.Event,
        on_failure: Callable[[], None],
        log: EventLog | None = None,
    ) -> None:
        super().__init__(name="storeagent-replay", daemon=True)
        self._replayer, self._schedule, self._stopping = replayer, schedule, stop
        self._on_failure = on_failure
        self._log = log or EventLog("storeagent.replay")
        self.failed = False

    def run(self) -> None:
        self._log.info("offline.replayer_started")
        try:
            while not self._stopping.is_set():
                if not self._replayer.step():
                    self._schedule.wait(self._stopping)
        except Exception:
            if self._stopping.is_set():  # the agent closed the replica under a last replay
                return
            self.failed = True
            self._log.error("offline.replayer_crashed", exc=True)
            self._on_failure()


def offline_status(
    sales: LocalSales, schedule: ReplaySchedule, policy: OfflinePolicy, now: datetime
) -> OfflineQueueStatus:
    counts = sales.counts()
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
