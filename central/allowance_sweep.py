"""The allowance sweep: moves every live grant to `settling` once its expiry plus the clock
margin has passed (docs/design/offline-allowances.md). Its units stay held: the store may
still replay sales it made under it, and only its statement, a write-off or its
deactivation gives them back. Every central runs one; two settling the same grant is one
conditional update that the second finds done."""

from __future__ import annotations

from collections.abc import Callable

from central.services.allowances import settle_expired
from central.uow import UnitOfWork
from central.worker import PeriodicTask
from invwire.logs import EventLog


class AllowanceSweeper(PeriodicTask):
    name = "allowance-sweep"
    failed_event = "allowances.sweep_failed"
    log = EventLog("central.allowances")

    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        margin_s: int,
        *,
        poll_seconds: float = 30.0,
        max_backoff_seconds: float = 60.0,
    ) -> None:
        super().__init__(poll_seconds=poll_seconds, max_backoff_seconds=max_backoff_seconds)
        self._uow = uow
        self.margin_s = margin_s

    def run_once(self) -> int:
        settled = settle_expired(self._uow(), self.margin_s)
        if settled:
            self.log.info("allowances.settling", grants=settled)
        return settled
