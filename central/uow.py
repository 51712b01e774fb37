"""The unit of work: one transaction per use case, with the outbox riding in it.

Use cases change rows and `record()` events; on a clean exit the events are written to the
outbox in the same transaction, the transaction commits once, and only then is the relay
woken. An exception rolls everything back, events included.

With tracing on, each outbox row keeps the trace context of the span that wrote it (the use
case's, e.g. order.reserve): the relay sends it on as Kafka record headers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol

import peewee

from central.db import write_turn
from central.models import Outbox, utcnow
from invwire import tracing
from invwire.events import Event, encode

OUTBOX_INSERT_CHUNK = 500


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()


class UnitOfWork:
    def __init__(
        self, db: peewee.Database, clock: Clock, on_commit: Callable[[], None] | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self._on_commit = on_commit
        self._events: list[Event] = []
        self._connection: peewee.ConnectionContext | None = None
        self._transaction: peewee._atomic | None = None
        self._turn: AbstractContextManager[Any] = nullcontext()

    def record(self, *events: Event | None) -> None:
        self._events.extend(e for e in events if e is not None)

    def __enter__(self) -> UnitOfWork:
        self._events = []
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
        if not self._events:
            return
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
        for chunk in peewee.chunked(rows, OUTBOX_INSERT_CHUNK):
            Outbox.insert_many(chunk).execute()


def written_by() -> str | None:
    """The current span's W3C context as JSON, kept with the outbox rows it writes; None
    when tracing is off or no span is on."""
    context = tracing.current_context_headers()
    return json.dumps(context, sort_keys=True) if context else None
