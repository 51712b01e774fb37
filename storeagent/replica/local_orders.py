"""This store's sales as the replica records them (table local_orders): a repository with one
method per change of a sale's state, and the reads the till, the replayer and the status
decide on. Sales come back as LocalSale values, never as table rows.

Helpers never commit: the caller (OrderDesk, Replayer) holds the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from invwire.orders import Line
from storeagent.clock import Clock, utc_now
from storeagent.replica.db import Replica, iso
from storeagent.replica.models import LocalOrder, bind_models
from storeagent.sales import rules


@dataclass(frozen=True)
class LocalSale:
    """A sale placed at this store, persisted with its idempotency key before central saw it."""

    seq: int
    local_ref: str
    idempotency_key: str
    fingerprint: str
    lines: tuple[Line, ...]  # in SKU order
    status: str
    order_id: str | None
    central_order: dict[str, Any] | None  # central's order, replayed as sent
    reason_code: str | None
    reason_message: str | None
    attempts: int
    created_at: str
    updated_at: str
    queued_at: str | None  # accepted offline then (kept once replayed)
    outcome_unknown: bool  # failed, and an attempt may have reached central
    instance_id: str | None = None  # the agent process that last sent it (sales.rules.orphaned)
    store_id: str | None = None  # the store it was recorded under (None: before schema 5)
    central_epoch: int = 0  # central's epoch that last confirmed or held it (0: unknown)
    recovery: str | None = None  # the last recovery check's outcome (sales.recovery)
    allowance_reason: str | None = None  # queued: why allowances did not cover it


@dataclass(frozen=True)
class QueueCounts:
    depth: int
    units: int
    oldest_queued_at: str | None
    rejected: int  # queued offline, then refused by central
    pending: int
    in_doubt: int  # failed, and central may hold them


class LocalOrders:
    """The local_orders table of one replica handle; timestamps come from `clock`.

    With `store_id`, new sales are recorded under it, and the queue, its counts and what is
    replayed or voided are this store's sales only (and those recorded before store ids
    were): a sale recorded under another store is never sent (foreign_sales() counts them).
    """

    def __init__(self, replica: Replica, clock: Clock = utc_now, store_id: str | None = None):
        self._replica, self._clock, self.store_id = replica, clock, store_id
        self._lo = bind_models(replica.db).local_order

    def transaction(self) -> AbstractContextManager[Any]:
        return self._replica.transaction()

    @property
    def replica(self) -> Replica:
        """The handle the sales are recorded through (their reads join other tables)."""
        return self._replica

    def by_key(self, key: str) -> LocalSale | None:
        row = self._lo.get_or_none(self._lo.idempotency_key == key)
        return None if row is None else _sale(row)

    def newest_first(self, status: str | None, limit: int) -> list[LocalSale]:
        query = self._lo.select()
        if status is not None:
            query = query.where(self._lo.status == status)
        return [_sale(row) for row in query.order_by(self._lo.seq.desc()).limit(limit)]

    def queued_lines(self) -> list[tuple[Line, ...]]:
        """The lines of every sale queued offline (their customers took the goods)."""
        return [_lines(row) for row in self._with_status(rules.QUEUED)]

    def counts(self) -> QueueCounts:
        queued = list(self._with_status(rules.QUEUED))
        lo = self._lo
        return QueueCounts(
            depth=len(queued),
            units=sum(line.quantity for row in queued for line in _lines(row)),
            oldest_queued_at=min((str(row.queued_at) for row in queued), default=None),
            rejected=self.rejected_offline(),
            pending=int(self._with_status(rules.PENDING).count()),
            in_doubt=int(self._with_status(rules.FAILED).where(lo.outcome_unknown).count()),
        )

    def rejected_offline(self) -> int:
        """Sales queued offline that central then refused (the customer has the goods)."""
        lo = self._lo
        queued_once = lo.queued_at.is_null(False)
        query = lo.select().where((lo.status == rules.REJECTED) & queued_once & self._mine())
        return int(query.count())

    def queue_depth(self) -> int:
        return int(self._with_status(rules.QUEUED).count())

    def next_to_replay(self, skip: Collection[str]) -> LocalSale | None:
        """The oldest sale to send again: queued offline, or left pending by an agent that
        stopped before recording central's answer (`skip`: keys a till is sending now).
        Sales made under allowances go first: central books them against their grants,
        and a sale queued at risk before them, sent first, could draw the same units from
        the store's grants (central's online orders take them after what anyone may take)."""
        lo = self._lo
        under_grants = self._oldest((lo.status == rules.ALLOWANCE) & self._mine(), skip)
        if under_grants is not None:
            return under_grants
        waiting = lo.status.in_([*rules.WAITING, rules.PENDING])
        return self._oldest(waiting & self._mine(), skip)

    def next_to_void(self, failed_before: datetime, skip: Collection[str]) -> LocalSale | None:
        """The oldest failed sale that may be at central: failed before `failed_before`, or
        one whose order central had answered (central is done with it: no need to wait)."""
        lo = self._lo
        doubtful = (lo.status == rules.FAILED) & lo.outcome_unknown
        due = (lo.updated_at < iso(failed_before)) | lo.order_id.is_null(False)
        return self._oldest(doubtful & due & self._mine(), skip)

    def foreign_sales(self) -> dict[str, int]:
        """Sales waiting for central (queued or pending) recorded under another store's id:
        never sent by this store's agent. Their count by store id."""
        if self.store_id is None:
            return {}
        lo = self._lo
        waiting = lo.status.in_([*rules.WAITING, rules.PENDING])
        counts: dict[str, int] = {}
        for row in lo.select(lo.store_id).where(waiting & ~self._mine()):
            counts[str(row.store_id)] = counts.get(str(row.store_id), 0) + 1
        return counts

    def adopt(self, store_id: str) -> int:
        """Record the sales that have no store id (recorded before schema 5) under
        `store_id`; how many."""
        lo = self._lo
        return int(lo.update(store_id=store_id).where(lo.store_id.is_null()).execute())

    def is_foreign(self, sale: LocalSale) -> bool:
        """Whether `sale` was recorded under another store than this one."""
        return None not in (sale.store_id, self.store_id) and sale.store_id != self.store_id

    def add_pending(
        self,
        local_ref: str,
        key: str,
        fingerprint: str,
        lines: Sequence[Line],
        *,
        instance_id: str | None = None,
    ) -> None:
        """A new sale, about to be sent to central by the agent process `instance_id`."""
        now = self._now()
        self._lo.insert(
            local_ref=local_ref,
            idempotency_key=key,
            fingerprint=fingerprint,
            lines=json.dumps([line.to_wire() for line in lines]),
            status=rules.PENDING,
            attempts=1,
            created_at=now,
            updated_at=now,
            instance_id=instance_id,
            store_id=self.store_id,
        ).execute()

    def retry(self, local_ref: str, *, instance_id: str | None = None) -> None:
        """A sale seen before is sent again (by `instance_id`): pending, one attempt more."""
        self._update(
            local_ref,
            status=rules.PENDING,
            attempts=self._lo.attempts + 1,
            updated_at=self._now(),
            instance_id=instance_id,
        )

    def confirm(
        self,
        local_ref: str,
        order_id: str,
        central_order: Mapping[str, Any],
        *,
        epoch: int | None = None,
    ) -> None:
        """`epoch`: central's epoch in its answer (None when it sent none: 0, the first)."""
        self._record(
            local_ref,
            rules.CONFIRMED,
            order_id=order_id,
            central_order=json.dumps(central_order),
            central_epoch=epoch or 0,
        )

    def to_recover(self, epoch: int, limit: int) -> list[LocalSale]:
        """This store's sales central confirmed in an incarnation older than `epoch` (sales.
        recovery), oldest first: the ones a restored central may have lost."""
        return [_sale(row) for row in self._older(epoch).order_by(self._lo.seq).limit(limit)]

    def to_recover_count(self, epoch: int) -> int:
        return int(self._older(epoch).count())

    def newest_central_epoch(self) -> int:
        """The newest epoch of central that confirmed a sale here (0 when none said)."""
        return int(self._lo.select(peewee.fn.MAX(self._lo.central_epoch)).scalar() or 0)

    def held(self, local_ref: str, epoch: int, outcome: str) -> None:
        """Central at `epoch` holds the sale (it had it, or took it again): `outcome`."""
        self._update(local_ref, central_epoch=epoch, recovery=outcome, updated_at=self._now())

    def unrecovered(
        self, local_ref: str, epoch: int, outcome: str, code: str, message: str
    ) -> None:
        """Central at `epoch` lost the sale and could not take it again: for review."""
        self._record(
            local_ref, rules.UNRECOVERED, code, message, central_epoch=epoch, recovery=outcome
        )

    def cancelled_at(self, order_ids: Collection[str]) -> dict[str, str]:
        """When central cancelled each of these orders, as the replica heard it
        (replica.order_status); orders not cancelled are left out."""
        if not order_ids:
            return {}
        marks = ", ".join("?" for _ in order_ids)
        sql = (
            "SELECT order_id, cancelled_at FROM order_status "  # noqa: S608 (bound values)
            f"WHERE status = 'cancelled' AND order_id IN ({marks})"
        )
        rows = self._replica.db.execute_sql(sql, tuple(order_ids)).fetchall()
        return {str(order_id): str(at) for order_id, at in rows if at is not None}

    def recovery_counts(self) -> dict[str, int]:
        """Sales by the outcome of their last recovery check (never checked: left out)."""
        lo = self._lo
        query = (
            lo.select(lo.recovery, peewee.fn.COUNT(lo.seq))
            .where(lo.recovery.is_null(False) & self._mine())
            .group_by(lo.recovery)
            .tuples()
        )
        rows: Iterable[tuple[str, int]] = query  # type: ignore[assignment] # .tuples()
        return {str(outcome): int(count) for outcome, count in rows}

    def _older(self, epoch: int) -> peewee.ModelSelect[LocalOrder]:
        """Confirmed by central in an incarnation older than `epoch`: epochs 0 (unknown) and 1
        are the first, so nothing is older than an epoch below 2."""
        lo = self._lo
        if epoch < 2:
            return lo.select().where(lo.seq.is_null())
        confirmed = (lo.status == rules.CONFIRMED) & lo.order_id.is_null(False)
        return lo.select().where(confirmed & (lo.central_epoch < epoch) & self._mine())

    def queue(
        self, local_ref: str, code: str, message: str, *, allowance_reason: str | None = None
    ) -> None:
        """Accepted offline: the customer takes the goods, central hears of it later.
        `allowance_reason`: why the store's allowances did not cover it."""
        self._record(
            local_ref,
            rules.QUEUED,
            code,
            message,
            queued_at=self._now(),
            allowance_reason=allowance_reason,
        )

    def sell_under_allowance(self, local_ref: str, code: str, message: str) -> None:
        """Sold offline under grants (the caller records the debits in the same transaction):
        final; central hears of it later. `code`, `message`: why central was not asked."""
        self._record(local_ref, rules.ALLOWANCE, code, message, queued_at=self._now())

    def allowance_sales(self) -> int:
        """Sales made under allowances that wait to be replayed."""
        return int(self._with_status(rules.ALLOWANCE).count())

    def reject(self, local_ref: str, code: str, message: str) -> None:
        self._record(local_ref, rules.REJECTED, code, message)

    def fail(self, local_ref: str, code: str, message: str, *, outcome_unknown: bool) -> None:
        """`outcome_unknown`: an attempt may have reached central, which the replayer checks."""
        self._record(local_ref, rules.FAILED, code, message, outcome_unknown=outcome_unknown)

    def void(self, local_ref: str, order_id: str, message: str) -> None:
        """A failed sale central had recorded, and that was cancelled there."""
        self._record(local_ref, rules.FAILED, rules.VOIDED, message, order_id=order_id)

    def not_recorded(
        self, local_ref: str, message: str, *, at_central: bool, order_id: str | None
    ) -> None:
        """A sale whose outcome could not be recorded when it happened: its till was told it
        failed, so it is voided. `at_central`: central may hold it (`order_id`, when central
        had answered with it); the replayer then looks it up and cancels it there. A sale
        already voided stays as it is."""
        lo = self._lo
        lo.update(
            status=rules.FAILED,
            reason_code=rules.NOT_RECORDED,
            reason_message=message,
            outcome_unknown=at_central,
            order_id=order_id,
            updated_at=self._now(),
        ).where(
            (lo.local_ref == local_ref)
            & (lo.reason_code.is_null() | (lo.reason_code != rules.VOIDED))
        ).execute()

    def key_conflict(self, local_ref: str, message: str) -> None:
        """Central held the key's order from another sale: this one failed, and that order
        is not this store's to cancel."""
        self._record(local_ref, rules.FAILED, rules.KEY_CONFLICT, message)

    def clear_doubt(self, local_ref: str) -> None:
        """A failed sale central turned out not to hold: failed for good."""
        self._update(local_ref, outcome_unknown=False)

    def _record(
        self,
        local_ref: str,
        status: str,
        code: str | None = None,
        message: str | None = None,
        *,
        outcome_unknown: bool = False,
        **columns: object,
    ) -> None:
        """Set the status and reason; a sale central answered is no longer in doubt."""
        self._update(
            local_ref,
            status=status,
            reason_code=code,
            reason_message=message,
            outcome_unknown=outcome_unknown,
            updated_at=self._now(),
            **columns,
        )

    def _update(self, local_ref: str, **columns: object) -> None:
        self._lo.update(**columns).where(self._lo.local_ref == local_ref).execute()

    def _oldest(self, condition: peewee.Expression, skip: Collection[str]) -> LocalSale | None:
        query = self._lo.select().where(condition)
        if skip:
            query = query.where(self._lo.idempotency_key.not_in(list(skip)))
        row = query.order_by(self._lo.seq).first()
        return None if row is None else _sale(row)

    def _with_status(self, status: str) -> peewee.ModelSelect[LocalOrder]:
        return self._lo.select().where((self._lo.status == status) & self._mine())

    def _mine(self) -> peewee.Expression:
        """This store's sales, and those recorded before store ids were."""
        lo = self._lo
        if self.store_id is None:
            return lo.seq.is_null(False)
        return lo.store_id.is_null() | (lo.store_id == self.store_id)

    def _now(self) -> str:
        return iso(self._clock())


def _lines(row: LocalOrder) -> tuple[Line, ...]:
    return tuple(Line(item["sku"], item["quantity"]) for item in json.loads(str(row.lines)))


def _sale(row: LocalOrder) -> LocalSale:
    return LocalSale(
        seq=int(row.seq),
        local_ref=str(row.local_ref),
        idempotency_key=str(row.idempotency_key),
        fingerprint=str(row.fingerprint),
        lines=_lines(row),
        status=str(row.status),
        order_id=row.order_id,
        central_order=None if row.central_order is None else json.loads(row.central_order),
        reason_code=row.reason_code,
        reason_message=row.reason_message,
        attempts=int(row.attempts),
        created_at=str(row.created_at),
        updated_at=str(row.updated_at),
        queued_at=row.queued_at,
        outcome_unknown=bool(row.outcome_unknown),
        instance_id=row.instance_id,
        store_id=row.store_id,
        central_epoch=int(row.central_epoch or 0),
        recovery=row.recovery,
        allowance_reason=row.allowance_reason,
    )
