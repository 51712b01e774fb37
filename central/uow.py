"""The unit of work: one transaction per use case, with the outbox riding in it.

Use cases change rows and `record()` events; on a clean exit the events are written to the
outbox in the same transaction, the transaction commits once, and only then is the relay
woken. An exception rolls everything back, events included.

`run(work)` is the same with retries: on Galera a transaction that conflicts with one committed
first on another node is refused at COMMIT (MySQL error 1213) and rolled back whole, so
`work` runs again from the start, a bounded number of times, with short jittered waits;
then WriteConflict (503, retryable). Use cases whose writes two nodes can make at once (an
order, a cancellation, a stock change) run through it.

Writes whose results nothing reads before the commit may be handed to `later()`: they are
sent with the outbox rows, in one round trip where the database allows it (central.rows).

With tracing on, each outbox row keeps the trace context of the span that wrote it (the use
case's, e.g. order.reserve): the relay sends it on as Kafka record headers.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, TypeVar

import peewee

from central.db import is_write_conflict, write_turn
from central.models import Outbox, utcnow
from central.rows import Call, Result, RowInsert, together
from invwire import tracing
from invwire.errors.central import WriteConflict
from invwire.events import Event, encode
from invwire.logs import EventLog

OUTBOX_INSERT_CHUNK = 500
OUTBOX_ROWS = RowInsert(
    Outbox, ("event_id", "topic", "key", "payload", "trace_context", "created_at")
)
T = TypeVar("T")
log = EventLog("central.uow")


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()


@dataclass(frozen=True)
class ConflictRetry:
    """How often, and after what waits, a unit of work runs a transaction again that lost a
    write conflict. Five attempts with waits of about 10, 20, 40, 80 ms: a conflicting
    commit on another node is applied here within milliseconds, after which the next attempt
    reads it; jitter keeps two losers from meeting again."""

    attempts: int = 5
    first_wait: float = 0.01
    max_wait: float = 0.2
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random  # in [0, 1)

    def wait(self, failed: int) -> float:
        """Seconds to wait after the `failed`-th attempt: doubling, capped, from half to all
        of it at random."""
        ceiling = min(self.max_wait, self.first_wait * 2 ** (failed - 1))
        return ceiling * (0.5 + self.jitter() / 2)


class UnitOfWork:
    def __init__(
        self,
        db: peewee.Database,
        clock: Clock,
        on_commit: Callable[[], None] | None = None,
        retry: ConflictRetry | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self._on_commit = on_commit
        self.retry = retry or ConflictRetry()
        self._events: list[Event] = []
        self._later: list[tuple[Call, Callable[[Result], None] | None]] = []
        self._connection: peewee.ConnectionContext | None = None
        self._transaction: peewee._atomic | None = None
        self._turn: AbstractContextManager[Any] = nullcontext()

    def record(self, *events: Event | None) -> None:
        self._events.extend(e for e in events if e is not None)

    def later(self, call: Call | None, check: Callable[[Result], None] | None = None) -> None:
        """`call` run at the commit, before the outbox rows and with them, then `check(its
        result)` (which may raise to roll it all back). Only for a write no statement of
        this unit of work reads before it commits: until then, it is not made."""
        if call is not None:
            self._later.append((call, check))

    def run(self, work: Callable[[], T]) -> T:
        """`work()` in this unit of work, committed once; its result. A write conflict
        (is_write_conflict) rolls it all back, events included, and runs `work` again, up
        to `retry.attempts` times in all; then WriteConflict. `work` must do nothing outside
        the transaction that cannot be done twice. Inside a transaction already open it
        runs once, and the outermost one retries."""
        if self.db.in_transaction():
            with self:
                return work()
        failed = 0
        while True:
            try:
                with self:
                    return work()
            except peewee.OperationalError as exc:
                if not is_write_conflict(exc):
                    raise
                failed += 1
                if failed >= self.retry.attempts:
                    log.warning("db.write_conflict_exhausted", attempts=failed)
                    raise WriteConflict(attempts=failed) from exc
                self.retry.sleep(self.retry.wait(failed))

    def __enter__(self) -> UnitOfWork:
        self._events = []
        self._later = []
        self._turn = write_turn(self.db)
        self._turn.__enter__()
        try:
            self._connection = self.db.connection_context()
            self._connection.__enter__()
            self._transaction = self.db.atomic()
            self._transaction.__enter__()
        except BaseException:
            self._turn.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._transaction is not None and self._connection is not None
        try:
            if exc_type is None:
                self._write_outbox_or_roll_back()
            self._transaction.__exit__(exc_type, exc, tb)
        finally:
            self._connection.__exit__(None, None, None)
            self._turn.__exit__(None, None, None)
        if exc_type is None and self._events and self._on_commit is not None:
            self._on_commit()

    def _write_outbox_or_roll_back(self) -> None:
        assert self._transaction is not None
        try:
            self._write_outbox()
        except BaseException as failure:
            self._transaction.__exit__(type(failure), failure, failure.__traceback__)
            raise

    def _write_outbox(self) -> None:
        later, self._later = self._later, []
        calls = [call for call, _ in later] + self._outbox_calls()
        results = together(self.db, calls)
        for (_, check), result in zip(later, results, strict=False):
            if check is not None:
                check(result)

    def _outbox_calls(self) -> list[Call]:
        if not self._events:
            return []
        now = self.clock.now()
        occurred_at = now.replace(tzinfo=UTC)
        trace_context = written_by()
        rows = []
        for event in self._events:
            env = encode(event, occurred_at)
            rows.append(
                {
                    "event_id": env.event_id,
                    "topic": env.topic,
                    "key": env.key,
                    "payload": env.value,
                    "trace_context": trace_context,
                    "created_at": now,
                }
            )
        # A few hundred rows a statement: a staged import's commit records one event a row,
        # and one INSERT of them all would pass SQLite's bound on parameters.
        # (Sliced: peewee.chunked pads each chunk to its full size and pops the padding off
        # one by one, 498 pops for an order's 2 rows, about a tenth of its CPU on SQLite.)
        size = OUTBOX_INSERT_CHUNK
        chunks = (
            OUTBOX_ROWS.call(rows[start : start + size]) for start in range(0, len(rows), size)
        )
        return [call for call in chunks if call is not None]


def written_by() -> str | None:
    """The current span's W3C context as JSON, kept with the outbox rows it writes; None
    when tracing is off or no span is on."""
    context = tracing.current_context_headers()
    return json.dumps(context, sort_keys=True) if context else None
