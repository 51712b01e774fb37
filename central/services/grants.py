"""Allowance rows inside a caller's unit of work: a store's grants locked for an order, and
the grants it drew on written back, each conditional on the version read under the lock."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from central.db import locked
from central.domain import allowances as rules
from central.models import Allowance


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
    query = (
        Allowance.select()
        .where(
            Allowance.store_id == store_id,
            Allowance.sku.in_(skus),
            Allowance.state == rules.LIVE,
        )
        .order_by(Allowance.sku, Allowance.seq)
    )
    by_sku: dict[str, list[rules.Grant]] = defaultdict(list)
    for row in locked(query):
        by_sku[row.sku].append(grant_of(row))
    return {sku: rules.usable(grants, now) for sku, grants in by_sku.items()}


def save_drawn(grants: list[rules.Grant], now: datetime) -> None:
    for grant in grants:
        updated = (
            Allowance.update(remaining=grant.remaining, version=grant.version, updated_at=now)
            .where(Allowance.id == grant.id, Allowance.version == grant.version - 1)
            .execute()
        )
        if updated != 1:
            raise RuntimeError(f"allowance {grant.id} changed under its lock")
