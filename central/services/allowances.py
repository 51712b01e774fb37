"""Allowance use cases: an admin grants units of a SKU to a store or returns a grant's
unused units; admins list grants, a store reads its own live ones. Each change moves units
between what any store may take and what is held, on the stock row under its lock, with its
ledger row and its StockChanged in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from peewee import fn

from central.db import locked
from central.domain import allowances as rules
from central.domain.catalog import valid_sku
from central.domain.stock import StockLevel
from central.models import Allowance, Movement, Store, as_utc
from central.services.orders import locked_levels, write_changes
from central.services.principal import Principal, Role
from central.uow import UnitOfWork
from invwire.errors.central import (
    AllowanceClosed,
    AllowanceNotFound,
    Forbidden,
    InvalidInput,
    ProductNotFound,
    StatementMismatch,
    StoreInactive,
    StoreNotFound,
)
from invwire.logs import EventLog

MAX_PAGE = 200
log = EventLog("central.allowances")


@dataclass(frozen=True)
class GrantRequest:
    store_id: str
    sku: str
    units: object
    ttl_s: object


def grant(uow: UnitOfWork, principal: Principal, wanted: GrantRequest) -> dict[str, Any]:
    valid_sku(wanted.sku)
    units = rules.valid_units(wanted.units)
    grant_id = str(uuid.uuid4())  # one id for every attempt of the unit of work

    def set_aside() -> Allowance:
        now = uow.clock.now()
        expires_at = rules.expiry(now, wanted.ttl_s)
        _require_active_store(wanted.store_id)
        level = _locked_level(wanted.sku)
        change = rules.set_aside(level, units)
        write_changes(uow, principal, [change], now, _note(grant_id))
        return Allowance.create(
            id=grant_id,
            store_id=wanted.store_id,
            sku=wanted.sku,
            units=units,
            remaining=units,
            expires_at=expires_at,
            state=rules.LIVE,
            created_at=now,
            updated_at=now,
        )

    return allowance_view(uow.run(set_aside))


def return_grant(
    uow: UnitOfWork, principal: Principal, grant_id: str, margin_s: int
) -> dict[str, Any]:
    """Close a live grant; its unused units become available to any store again. One
    settling (past its expiry and `margin_s`) is written off instead, or closed by its
    store's statement: its store may have sold under it offline."""

    def give_back() -> Allowance:
        level, row = _locked_grant(grant_id)
        state = rules.state_at(row.state, row.expires_at, uow.clock.now(), margin_s)
        if state != rules.LIVE:
            raise AllowanceClosed(allowance_id=row.id, state=state)
        return _close(uow, principal, level, row, rules.give_back)

    return allowance_view(uow.run(give_back))


def write_off(uow: UnitOfWork, principal: Principal, grant_id: str) -> dict[str, Any]:
    """Close a live or settling grant without its store's statement (an admin's choice):
    its units are available again, and a sale replayed under it later is booked from
    available stock, or left for review when none is left."""

    def written_off() -> Allowance:
        level, row = _locked_grant(grant_id)
        if row.state == rules.CLOSED:
            raise AllowanceClosed(allowance_id=row.id, state=row.state)
        closed = _close(uow, principal, level, row, rules.write_off)
        log.warning("allowances.written_off", allowance_id=row.id, units=row.remaining)
        return closed

    return allowance_view(uow.run(written_off))


def settle_statement(
    uow: UnitOfWork, principal: Principal, grant_id: str, raw_sold: object
) -> dict[str, Any]:
    """A store says how many units it sold under its grant in all, once every sale under
    it is replayed: equal to what central booked against it, the grant closes and what is
    left of it is available again. Repeating it for the closed grant answers the same."""
    if principal.role != Role.STORE or principal.store_id is None:
        raise Forbidden("only the grant's store sends its statement")
    sold = rules.valid_sold(raw_sold)

    def settle() -> Allowance:
        level, row = _locked_grant(grant_id, principal.store_id)
        if row.state == rules.CLOSED:
            if sold == row.units - _given_back(row):
                return row
            raise AllowanceClosed(allowance_id=row.id, state=row.state)
        try:
            rules.check_statement(row.id, row.units - row.remaining, sold)
        except StatementMismatch as mismatch:
            log.warning("allowances.statement_mismatch", **mismatch.details)
            raise
        return _close(uow, principal, level, row, rules.give_back)

    return allowance_view(uow.run(settle))


def return_store_grants(uow: UnitOfWork, principal: Principal, store_id: str) -> int:
    """Inside the caller's unit of work: every grant of a store that can sell no more (it
    is deactivated, its keys revoked) closes, its units available again; how many."""
    query = Allowance.select().where(
        Allowance.store_id == store_id, Allowance.state != rules.CLOSED
    )
    open_ = list(query.order_by(Allowance.sku, Allowance.seq))
    if not open_:
        return 0
    levels = locked_levels(sorted({row.sku for row in open_}))
    # no grant of the store is made meanwhile: the caller holds its store row's lock
    rows = list(locked(query.order_by(Allowance.sku, Allowance.seq)))
    for row in rows:
        level = levels[row.sku]
        _close(uow, principal, level, row, rules.give_back)
        if row.remaining:
            levels[row.sku] = rules.give_back(level, row.remaining)[0]
    return len(rows)


def _locked_grant(grant_id: str, store_id: str | None = None) -> tuple[StockLevel, Allowance]:
    """The grant's stock row and the grant, locked in that order (as orders lock them);
    a store's grant only to that store."""
    found = Allowance.get_or_none(Allowance.id == grant_id)
    if found is None or (store_id is not None and found.store_id != store_id):
        raise AllowanceNotFound(allowance_id=grant_id)
    level = _locked_level(found.sku)
    return level, locked(Allowance.select().where(Allowance.id == grant_id)).get()


def _close(
    uow: UnitOfWork,
    principal: Principal,
    level: StockLevel,
    row: Allowance,
    release: Callable[[StockLevel, int], rules.Change],
) -> Allowance:
    now = uow.clock.now()
    if row.remaining:
        write_changes(uow, principal, [release(level, row.remaining)], now, _note(row.id))
    updated = (
        Allowance.update(remaining=0, state=rules.CLOSED, version=row.version + 1, updated_at=now)
        .where(Allowance.id == row.id, Allowance.version == row.version)
        .execute()
    )
    if updated != 1:
        raise RuntimeError(f"allowance {row.id} changed under its lock")
    return Allowance.get(Allowance.id == row.id)


def _given_back(row: Allowance) -> int:
    """The units a closed grant gave back, from its ledger rows."""
    given = Movement.select(fn.COALESCE(fn.SUM(Movement.delta), 0)).where(
        Movement.sku == row.sku,
        Movement.note == _note(row.id),
        Movement.reason.in_(rules.GIVEN_BACK),
    )
    return int(given.scalar())


@dataclass(frozen=True)
class GrantFilter:
    store: str | None = None
    sku: str | None = None
    state: str | None = None
    limit: int = 50
    before: int = 0


def list_grants(uow: UnitOfWork, wanted: GrantFilter) -> dict[str, Any]:
    """Grants, newest first, a page at a time: `next_before` is set when more are left."""
    if wanted.state is not None and wanted.state not in rules.STATES:
        raise InvalidInput(f"state is one of {', '.join(rules.STATES)}", field="state")
    limit = max(1, min(wanted.limit, MAX_PAGE))
    query = Allowance.select()
    if wanted.store is not None:
        query = query.where(Allowance.store_id == wanted.store)
    if wanted.sku is not None:
        query = query.where(Allowance.sku == wanted.sku)
    if wanted.state is not None:
        query = query.where(Allowance.state == wanted.state)
    if wanted.before > 0:
        query = query.where(Allowance.seq < wanted.before)
    with uow.db.connection_context():
        rows = list(query.order_by(Allowance.seq.desc()).limit(limit + 1))
    cursor = rows[limit - 1].seq if len(rows) > limit else None
    return {"items": [allowance_view(row) for row in rows[:limit]], "next_before": cursor}


def own_live_grants(uow: UnitOfWork, principal: Principal, margin_s: int) -> dict[str, Any]:
    """A store's live grants, and nobody else's: what its agent may sell without asking
    (until each one's expiry, less `margin_s`), with central's clock to set its own by."""
    if principal.role != Role.STORE or principal.store_id is None:
        raise Forbidden("only a store's API key reads its own allowances")
    now = uow.clock.now()
    # one past its expiry and the margin is settling, swept or not yet
    query = Allowance.select().where(
        Allowance.store_id == principal.store_id,
        Allowance.state == rules.LIVE,
        Allowance.expires_at > settles_before(now, margin_s),
    )
    with uow.db.connection_context():
        rows = list(query.order_by(Allowance.sku, Allowance.seq))
    items = [allowance_view(row) for row in rows]
    return {"items": items, "margin_s": margin_s, "server_time": as_utc(now)}


def settles_before(now: datetime, margin_s: int) -> datetime:
    """A live grant that expired before this is settling at `now`."""
    return now - timedelta(seconds=margin_s)


def settle_expired(uow: UnitOfWork, margin_s: int) -> int:
    """Every live grant past its expiry plus `margin_s` moves to settling, its units still
    held; how many did. One conditional update: an order holding a grant's lock finishes
    first, and a grant another central settled meanwhile is no longer live."""

    def settle() -> int:
        now = uow.clock.now()
        return int(
            Allowance.update(state=rules.SETTLING, version=Allowance.version + 1, updated_at=now)
            .where(
                Allowance.state == rules.LIVE,
                Allowance.expires_at <= settles_before(now, margin_s),
            )
            .execute()
        )

    return uow.run(settle)


def allowance_view(row: Allowance) -> dict[str, Any]:
    return {
        "id": row.id,
        "store_id": row.store_id,
        "sku": row.sku,
        "units": row.units,
        "remaining": row.remaining,
        "expires_at": as_utc(row.expires_at),
        "state": row.state,
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
        "version": row.version,
    }


def _require_active_store(store_id: str) -> None:
    # locked: a deactivation returning the store's grants waits, or is waited for
    store = locked(Store.select().where(Store.id == store_id)).get_or_none()
    if store is None:
        raise StoreNotFound(store_id=store_id)
    if not store.active:
        raise StoreInactive(store_id=store_id)


def _locked_level(sku: str) -> StockLevel:
    level = locked_levels([sku]).get(sku)
    if level is None:
        raise ProductNotFound(sku=sku)
    return level


def _note(grant_id: str) -> str:
    return f"allowance {grant_id}"
