"""The fleet view: every store's replication lag (from Kafka) and last heartbeat."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from central.db import is_mysql
from central.errors import Forbidden, InvalidInput
from central.models import Store, StoreStatus, as_utc
from central.services.principal import Principal, Role
from central.uow import UnitOfWork
from invwire.identity import consumer_group

REPORT_FIELDS = {
    "ready": bool,
    "lag": int,
    "last_event_at": str,
    "offline_queue": int,
    "rejected_offline": int,
    "dead_letters": int,
}
MAX_REPORT_BYTES = 4096


def group_of(store_id: str) -> str:
    return consumer_group(store_id)


@dataclass(frozen=True)
class GroupLag:
    lag: int
    partitions: int
    committed: int


class LagReader(Protocol):
    def lag(self, groups: list[str]) -> dict[str, GroupLag]:
        """Lag of each consumer group over the inventory topics; raises if Kafka is down."""
        ...


def record_heartbeat(uow: UnitOfWork, principal: Principal, report: dict[str, Any]) -> None:
    if principal.role != Role.STORE or principal.store_id is None:
        raise Forbidden("heartbeats come from a store's API key")
    clean = {k: report[k] for k, kind in REPORT_FIELDS.items() if isinstance(report.get(k), kind)}
    text = json.dumps(clean, sort_keys=True)
    if len(text) > MAX_REPORT_BYTES:
        raise InvalidInput("the heartbeat report is too large")
    with uow:
        now = uow.clock.now()
        insert = StoreStatus.insert(store_id=principal.store_id, last_seen=now, report=text)
        update = {StoreStatus.last_seen: now, StoreStatus.report: text}
        if is_mysql(uow.db):
            insert.on_conflict(update=update).execute()
        else:
            insert.on_conflict(conflict_target=[StoreStatus.store_id], update=update).execute()


def fleet_status(uow: UnitOfWork, lag_reader: LagReader | None) -> dict[str, Any]:
    with uow.db.connection_context():
        stores = list(Store.select().order_by(Store.id))
        seen = {s.store_id: s for s in StoreStatus.select()}
    kafka, lags = _lags(lag_reader, [group_of(s.id) for s in stores])
    now = uow.clock.now()
    items = [_store_row(s, seen.get(s.id), lags.get(group_of(s.id)), now) for s in stores]
    return {"kafka": kafka, "items": items}


def _lags(reader: LagReader | None, groups: list[str]) -> tuple[str, dict[str, GroupLag]]:
    if reader is None:
        return "not configured", {}
    if not groups:
        return "ok", {}
    try:
        return "ok", reader.lag(groups)
    except Exception as exc:  # the view stays useful with heartbeats alone
        return f"unavailable: {type(exc).__name__}", {}


def _store_row(
    store: Store, status: StoreStatus | None, lag: GroupLag | None, now: datetime
) -> dict[str, Any]:
    report = json.loads(status.report) if status is not None else {}
    return {
        "store_id": store.id,
        "name": store.name,
        "active": store.active,
        "group": group_of(store.id),
        "lag": lag.lag if lag is not None else None,
        "last_seen": as_utc(status.last_seen) if status is not None else None,
        "seconds_since_seen": (now - status.last_seen).total_seconds() if status else None,
        "reported": report,
    }
