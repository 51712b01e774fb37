"""Group commit of SQLite's orders: one writer thread a process takes every order waiting
for it into one transaction, each order in a savepoint of its own (its unit of work's), and
commits them once.

Why: SQLite lets one transaction write at a time, so orders queue for the writer turn
anyway. Each order in a transaction of its own paid, alone, for its BEGIN and COMMIT, a
connection check-out, the writer turn (a lock and, with `central serve --workers N`, a
flock) and a hand-off to a pool thread and back. Orders that arrive while a batch is being
written wait for the next one, and then share all of that.

Each order stays all-or-nothing and apart from the others: its writes are in its unit of
work's savepoint (a unit of work inside a transaction already open is one, see
central.uow), rolled back alone when it is refused (a CentralError, a replayed key), so one
order's refusal does not touch the others. Nothing is answered before the commit. A batch
in which a database error is raised (after which SQLite may have rolled the whole
transaction back on its own) is rolled back and every order of it is answered that error,
as is a batch whose commit fails: none of it was written, and each till is told so.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import peewee

from central.db import write_turn
from invwire.logs import EventLog

T = TypeVar("T")
MAX_BATCH = 64
# The writer thread ends after this long without an order and starts again at the next:
# an app made and dropped (a test, a restart of the app in one process) leaves none behind.
IDLE_S = 5.0
log = EventLog("central.group_commit")


@dataclass
class Outcome(Generic[T]):
    value: T | None = None
    error: BaseException | None = None


@dataclass
class _Item:
    context: contextvars.Context
    work: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def breaks_the_batch(error: BaseException) -> bool:
    """A database error other than a unique index's refusal (which a use case handles, and
    its savepoint undoes): after it the transaction's state is not known."""
    if isinstance(error, peewee.IntegrityError):
        return False
    return isinstance(error, peewee.DatabaseError | peewee.InterfaceError)


class GroupCommit:
    def __init__(
        self,
        db: peewee.Database,
        on_commit: Callable[[], None] | None,
        idle_s: float = IDLE_S,
    ) -> None:
        self.db = db
        self.on_commit = on_commit
        self.idle_s = idle_s
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """`work()` in the next batch, in the caller's context; its result (or its error)
        once the batch is committed (or not)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Item(contextvars.copy_context(), work, loop, future))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="order-writer", daemon=True)
                self._thread.start()
        return future

    def running(self) -> bool:
        return self._thread is not None

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            batch, outcomes = self.commit(first)
            settle(batch, outcomes)

    def commit(self, first: _Item) -> tuple[list[_Item], list[Outcome[Any]]]:
        """`first` and the orders waiting once the writer turn is held (those that came
        while it was waited for, as from another worker, go in too) in one transaction;
        the batch and each one's outcome, once committed."""
        batch = [first]
        outcomes: list[Outcome[Any]] = []
        try:
            with write_turn(self.db):
                batch += self._waiting()
                with self.db.connection_context(), self.db.atomic():
                    for item in batch:
                        outcome = run_one(item)
                        if outcome.error is not None and breaks_the_batch(outcome.error):
                            raise outcome.error
                        outcomes.append(outcome)
        except Exception as error:  # every order is answered, whatever went wrong
            log.warning("orders.batch_failed", orders=len(batch), error=str(error)[:200])
            return batch, [Outcome(error=error) for _ in batch]
        if self.on_commit is not None and any(o.error is None for o in outcomes):
            self.on_commit()
        return batch, outcomes

    def _waiting(self) -> list[_Item]:
        items: list[_Item] = []
        while len(items) < MAX_BATCH - 1:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items


def run_one(item: _Item) -> Outcome[Any]:
    try:
        return Outcome(value=item.context.run(item.work))
    except Exception as error:
        return Outcome(error=error)


def settle(batch: list[_Item], outcomes: list[Outcome[Any]]) -> None:
    """Hand each outcome to its request's event loop: one wake-up a loop a batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Item, Outcome[Any]]]] = {}
    for item, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(item.loop, []).append((item, outcome))
    for loop, pairs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, pairs)
        except RuntimeError:  # the loop was closed: no one is waiting any more
            continue


def _resolve(pairs: list[tuple[_Item, Outcome[Any]]]) -> None:
    for item, outcome in pairs:
        if item.future.done():  # the request was cancelled (its client went away)
            continue
        if outcome.error is not None:
            item.future.set_exception(outcome.error)
        else:
            item.future.set_result(outcome.value)
