"""Allowance rows inside a caller's unit of work: a store's grants locked for an order, and
the grants it drew on written back, each conditional on the version read under the lock."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from central.db import locked
from central.domain import allowances as rules
from central.models import Allowance
from central.rows import Result, Statement, together
from invwire.errors.central import GrantNotYours, GrantUnknown

if TYPE_CHECKING:
    from central.uow import UnitOfWork

# every order by a store runs these (central.rows: their text built once); a grant with no
# unit left stays live until its expiry, but has nothing to give and is neither read nor locked
LIVE_GRANTS = Statement(
    'SELECT "id", "sku", "remaining", "expires_at", "version" FROM "allowances" '
    'WHERE "store_id" = ? AND "sku" IN ({marks}) AND "state" = ? AND "remaining" > 0 '
    'ORDER BY "sku", "seq"{lock}'
)
DRAWN = Statement(
    'UPDATE "allowances" SET "remaining" = ?, "version" = ?, "updated_at" = ? '
    'WHERE "id" = ? AND "version" = ?'
)


def grant_of(row: Allowance) -> rules.Grant:
    return rules.Grant(row.id, row.store_id, row.sku, row.remaining, row.expires_at, row.version)


def own_grants(
    store_id: str | None, skus: list[str], now: datetime
) -> dict[str, list[rules.Grant]]:
    """The store's grants an order of `skus` may draw on, locked, by SKU. Locked after the
    stock rows, as every use case that changes both does, so none waits on another's lock
    in the opposite order."""
    if store_id is None:
        return {}
    database = Allowance._meta.database
    rows = LIVE_GRANTS.run(database, live_params(store_id, skus), size=len(skus)).fetchall()
    return usable_grants(store_id, rows, now)


def live_params(store_id: str | None, skus: list[str]) -> list[object]:
    """LIVE_GRANTS's parameters for a store's grants of `skus` (none for no store)."""
    return [store_id, *skus, rules.LIVE]


def usable_grants(
    store_id: str | None, rows: list[tuple[Any, ...]], now: datetime
) -> dict[str, list[rules.Grant]]:
    """`own_grants` from the rows LIVE_GRANTS read."""
    if store_id is None:
        return {}
    by_sku: dict[str, list[rules.Grant]] = defaultdict(list)
    for grant_id, sku, remaining, expires_at, version in rows:
        expiry = Allowance.expires_at.python_value(expires_at)
        by_sku[sku].append(rules.Grant(grant_id, store_id, sku, remaining, expiry, version))
    return {sku: rules.usable(grants, now) for sku, grants in by_sku.items()}


def save_drawn(grants: list[rules.Grant], now: datetime, uow: UnitOfWork | None = None) -> None:
    """Each grant drawn on written if it still has the version read under the lock; at the
    commit with `uow` (UnitOfWork.later), else now."""
    database = Allowance._meta.database
    stamp = Allowance.updated_at.db_value(now)
    for grant in grants:
        params = [grant.remaining, grant.version, stamp, grant.id, grant.version - 1]
        call, check = DRAWN.call(database, params), _one_row(grant.id)
        if uow is not None:
            uow.later(call, check)
        else:
            check(together(database, [call])[0])


def _one_row(grant_id: str) -> Callable[[Result], None]:
    def check(result: Result) -> None:
        if result.rowcount != 1:
            raise RuntimeError(f"allowance {grant_id} changed under its lock")

    return check


def named_grants(store_id: str, grant_ids: list[str]) -> dict[str, rules.Grant]:
    """The grants an order's lines name, locked (after the stock rows, as above), by id:
    any state or expiry, but each the ordering store's own."""
    query = Allowance.select().where(Allowance.id.in_(grant_ids)).order_by(Allowance.id)
    found = {row.id: grant_of(row) for row in locked(query)}
    for grant_id in grant_ids:
        grant = found.get(grant_id)
        if grant is None:
            raise GrantUnknown(allowance_id=grant_id, field="grant_id")
        if grant.store_id != store_id:
            raise GrantNotYours(allowance_id=grant_id, field="grant_id")
    return found
