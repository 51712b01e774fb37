"""The keeper of this store's allowances: a supervised side task (ops.supervisor) that fetches
the store's grants from central (GET /allowances/mine) at start, every `every_s` seconds and
soon after an online sale of a SKU it holds a grant of (poke()), but no sooner than
`poke_gap_s` after the fetch before (a store selling a granted SKU steadily would otherwise
read its grants after every sale, each read costing central more than an order), and sends
each grant's
statement once it has expired on the agent's clock and every sale under it was replayed.

A statement accepted (200) closes the grant here; 409 `allowance.replay_pending` is tried
again later; 409 `allowance.statement_mismatch` is logged as an error and shown as a problem
in /sync/status (central keeps the units held until an admin writes the grant off).
Central unreachable: the keeper tries again next round; nothing it does is lost, as every
state it acts on is in the replica.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from invwire.logs import EventLog
from storeagent.clock import Clock, utc_now
from storeagent.replica.allowances import LIVE, UNLISTED, Allowances, FetchedGrant, GrantUse
from storeagent.replica.db import DATABASE_ERRORS, iso
from storeagent.upstream.client import (
    DEFAULT_MARGIN_S,
    AllowanceList,
    CentralUnavailable,
    StatementAnswer,
)

EVERY_S = 30.0
POKE_GAP_S = 5.0
REPLAY_PENDING = "allowance.replay_pending"
MISMATCH = "allowance.statement_mismatch"


class AllowanceCentral(Protocol):
    def my_allowances(self, *, background: bool = True) -> AllowanceList: ...

    def allowance_statement(
        self, grant_id: str, sold: int, *, background: bool = True
    ) -> StatementAnswer: ...


@dataclass
class KeeperState:
    last_fetch_at: str | None = None
    last_error: str | None = None


class AllowanceKeeper:
    def __init__(
        self,
        allowances: Allowances,
        central: AllowanceCentral,
        *,
        central_time: Clock = utc_now,
        clock: Clock = utc_now,
        every_s: float = EVERY_S,
        poke_gap_s: float = POKE_GAP_S,
        log: EventLog | None = None,
        central_answered: Callable[[], None] = lambda: None,
    ) -> None:
        """`central_time`: the agent's estimate of central's clock (expiry is central's);
        `central_answered` is called after each fetch central answered (the replayer may
        then stop backing off: while sales under grants wait, no till reaches central to
        tell it so)."""
        self._allowances, self._central = allowances, central
        self._central_time, self._clock, self._every_s = central_time, clock, every_s
        self._poke_gap_s = poke_gap_s
        self._fetched_at = time.monotonic()  # when the last round began
        self._log = log or EventLog("storeagent.allowances")
        self._central_answered = central_answered
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one fetch at a time: their marks stay in order
        self.state = KeeperState()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            self._wait(stop)

    def _wait(self, stop: threading.Event, slice_s: float = 0.25) -> None:
        """Until the next round is due (brought forward by a poke), or stop."""
        deadline = next_round_at(self._fetched_at, self._every_s, None, self._poke_gap_s)
        while not stop.is_set() and time.monotonic() < deadline:
            if self._wake.wait(min(slice_s, max(deadline - time.monotonic(), 0))):
                self._wake.clear()
                deadline = next_round_at(
                    self._fetched_at, self._every_s, time.monotonic(), self._poke_gap_s
                )
        self._wake.clear()

    def poke(self) -> None:
        """Fetch again soon (an online sale may have drawn on a grant)."""
        self._wake.set()

    def step(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetch()
        try:
            self.send_statements()
        except DATABASE_ERRORS as exc:  # e.g. the replica locked: the next round sends it
            self._log.warning("allowance.statement_not_recorded", message=_said(exc))

    def fetch(self) -> bool:
        """Fetch and record the store's grants; whether that worked."""
        with self._lock:
            try:
                mark = self._allowances.replay_mark()
                answer = self._central.my_allowances(background=True)
                with self._allowances.replica.transaction():
                    self._record(answer, mark)
            except (CentralUnavailable, *DATABASE_ERRORS) as exc:
                self.state.last_error = _said(exc)
                self._log.warning("allowance.fetch_failed", message=self.state.last_error)
                return False
        self.state.last_fetch_at, self.state.last_error = iso(self._clock()), None
        self._central_answered()
        return True

    def send_statements(self) -> None:
        for use in self._due():
            if not self._statement(use):
                return

    def margin_s(self) -> float:
        return self._allowances.margin_s(DEFAULT_MARGIN_S)

    def status(self) -> dict[str, Any]:
        """The `allowances` section of /sync/status."""
        uses = self._allowances.uses([LIVE])
        problems = [
            {
                "grant_id": use.grant.id,
                "sku": use.grant.sku,
                "code": use.grant.problem.split(":", 1)[0],
                "problem": use.grant.problem,
            }
            for use in self._allowances.uses([LIVE, UNLISTED])
            if use.grant.problem
        ]
        return {
            "grants": len(uses),
            "units_held": sum(use.grant.remaining for use in uses),
            "units_left": sum(use.left for use in uses),
            "units_waiting_replay": self._allowances.waiting_units(),
            "units_sold": self._allowances.units_sold(),
            "margin_s": self.margin_s(),
            "last_fetch_at": self.state.last_fetch_at,
            "last_error": self.state.last_error,
            "problems": problems,
        }

    def _record(self, answer: AllowanceList, mark: int) -> None:
        grants = [
            FetchedGrant(item.id, item.sku, item.units, item.remaining, iso(item.expires_at))
            for item in answer.items
        ]
        self._allowances.record_fetch(
            grants,
            mark=mark,
            fetched_at=iso(self._clock()),
            margin_s=answer.margin_s,
            server_time=answer.server_time,
        )

    def _due(self) -> list[GrantUse]:
        """Grants expired on the agent's clock with every sale under them replayed."""
        now = self._central_time()
        due = []
        for use in self._allowances.uses([LIVE, UNLISTED]):
            if datetime.fromisoformat(use.grant.expires_at) > now or use.grant.problem:
                continue
            if self._allowances.sold_under(use.grant.id)[1] == 0:
                due.append(use)
        return due

    def _statement(self, use: GrantUse) -> bool:
        """Send one statement; whether the next may follow (central answered)."""
        sold, _ = self._allowances.sold_under(use.grant.id)
        try:
            answer = self._central.allowance_statement(use.grant.id, sold, background=True)
        except CentralUnavailable as exc:
            self._log.warning(
                "allowance.statement_failed", grant_id=use.grant.id, message=_said(exc)
            )
            return False
        with self._allowances.replica.transaction():
            self._settle(use, sold, answer)
        return True

    def _settle(self, use: GrantUse, sold: int, answer: StatementAnswer) -> None:
        grant_id = use.grant.id
        if answer.accepted:
            self._allowances.close(grant_id)
            self._log.info("allowance.closed", grant_id=grant_id, sku=use.grant.sku, sold=sold)
            return
        refusal = answer.refusal
        code = refusal.code if refusal is not None else "central.refused"
        if code == REPLAY_PENDING:
            self._log.info("allowance.statement_early", grant_id=grant_id)
            return
        said = refusal.message if refusal is not None else ""
        message = f"{code}: central refused the statement of {sold} units sold ({said})"
        self._allowances.problem(grant_id, message)
        self._log.error(
            "allowance.statement_refused", grant_id=grant_id, code=code, sold=sold, message=message
        )


def _said(exc: Exception) -> str:
    return exc.message if isinstance(exc, CentralUnavailable) else f"{type(exc).__name__}: {exc}"


def next_round_at(last: float, every_s: float, poked_at: float | None, gap_s: float) -> float:
    """When the next round is due (monotonic seconds): `every_s` after the last, or, once
    poked, at the poke but no sooner than `gap_s` after the last round."""
    regular = last + every_s
    if poked_at is None:
        return regular
    return min(regular, max(poked_at, last + gap_s))
