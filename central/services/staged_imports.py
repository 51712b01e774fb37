"""Staged imports: a file larger than one request, applied in one transaction or not at all.

`open_batch` makes a batch; `stage_rows` checks a request's rows (as `POST /import` does) and
appends them to import_staged_rows; `commit_batch` applies every staged row, in the order
sent, in one unit of work: if any row cannot be applied (an unknown category or SKU) the
answer lists the bad rows and nothing is applied. Either way the batch is gone afterwards.

Staging is bounded: at most MAX_OPEN_BATCHES batches at once, MAX_BATCH_ROWS rows and
MAX_BATCH_BYTES of rows each, and a batch unused for BATCH_IDLE_EXPIRY is dropped when the
next batch is opened. Only the principal that opened a batch may use it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from peewee import chunked

from central.db import locked
from central.models import ImportBatch, StagedRow, as_utc
from central.services import importing
from central.services.principal import Principal
from central.uow import UnitOfWork
from invwire.errors.central import (
    ImportBatchFull,
    ImportBatchNotFound,
    ImportInvalid,
    TooManyImportBatches,
)

MAX_OPEN_BATCHES = 4
MAX_BATCH_ROWS = 250_000
MAX_BATCH_BYTES = 256 * 1024 * 1024
BATCH_IDLE_EXPIRY = timedelta(hours=1)
INSERT_CHUNK = 200


def open_batch(uow: UnitOfWork, principal: Principal) -> dict[str, Any]:
    with uow:
        now = uow.clock.now()
        _drop_idle(now)
        open_now = ImportBatch.select().count()
        if open_now >= MAX_OPEN_BATCHES:
            raise TooManyImportBatches(open=open_now, limit=MAX_OPEN_BATCHES)
        batch = ImportBatch.create(
            id=str(uuid.uuid4()), owner=principal.actor, created_at=now, touched_at=now
        )
    return batch_view(batch)


def stage_rows(
    uow: UnitOfWork, principal: Principal, batch_id: str, raw_rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """Check the rows and append them; a bad row rejects the request (422 import.invalid,
    every bad row listed) and nothing of it is staged."""
    payloads = [importing.staged_payload(row) for row in importing.valid_rows(raw_rows)]
    size = sum(len(payload) for payload in payloads)
    with uow:
        now = uow.clock.now()
        batch = _usable_batch(principal, batch_id, now)
        if batch.rows + len(payloads) > MAX_BATCH_ROWS or batch.size + size > MAX_BATCH_BYTES:
            raise ImportBatchFull(max_rows=MAX_BATCH_ROWS, max_bytes=MAX_BATCH_BYTES)
        for chunk in chunked(payloads, INSERT_CHUNK):
            StagedRow.insert_many([{"batch_id": batch.id, "payload": p} for p in chunk]).execute()
        batch.rows += len(payloads)
        batch.size += size
        batch.touched_at = now
        batch.save()
    return batch_view(batch)


def commit_batch(uow: UnitOfWork, principal: Principal, batch_id: str) -> dict[str, int]:
    """Apply every staged row in one transaction, or none (422 import.invalid listing the
    rows that could not be applied); the batch is deleted either way."""
    try:
        with uow:
            _usable_batch(principal, batch_id, uow.clock.now())
            applier = importing.Applier(uow, principal)
            for rows in _staged_pages(batch_id):
                applier.apply(rows)
            applier.errors.raise_if_any()
            _delete(batch_id)
    except ImportInvalid:
        discard_batch(uow, principal, batch_id)
        raise
    return dict(applier.counts)


def discard_batch(uow: UnitOfWork, principal: Principal, batch_id: str) -> None:
    with uow:
        _usable_batch(principal, batch_id, uow.clock.now())
        _delete(batch_id)


def batch_view(batch: ImportBatch) -> dict[str, Any]:
    return {
        "id": batch.id,
        "rows": batch.rows,
        "max_rows": MAX_BATCH_ROWS,
        "expires_at": as_utc(batch.touched_at + BATCH_IDLE_EXPIRY),
    }


def _usable_batch(principal: Principal, batch_id: str, now: datetime) -> ImportBatch:
    """The caller's batch, locked; another principal's, or one unused too long, is not found."""
    batch = locked(ImportBatch.select().where(ImportBatch.id == batch_id)).get_or_none()
    if (
        batch is None
        or batch.owner != principal.actor
        or batch.touched_at + BATCH_IDLE_EXPIRY < now
    ):
        raise ImportBatchNotFound(batch_id=batch_id)
    return batch


def _staged_pages(batch_id: str) -> Iterator[list[importing.Row]]:
    """The staged rows in the order they were sent, MAX_ROWS at a time."""
    last = 0
    while True:
        query = (
            StagedRow.select()
            .where(StagedRow.batch_id == batch_id, StagedRow.id > last)
            .order_by(StagedRow.id)
            .limit(importing.MAX_ROWS)
        )
        page = list(query)
        if not page:
            return
        yield [importing.staged_row(row.payload) for row in page]
        last = page[-1].id


def _drop_idle(now: datetime) -> None:
    idle = [
        batch.id
        for batch in ImportBatch.select(ImportBatch.id).where(
            ImportBatch.touched_at < now - BATCH_IDLE_EXPIRY
        )
    ]
    for batch_id in idle:
        _delete(batch_id)


def _delete(batch_id: str) -> None:
    StagedRow.delete().where(StagedRow.batch_id == batch_id).execute()
    ImportBatch.delete().where(ImportBatch.id == batch_id).execute()
