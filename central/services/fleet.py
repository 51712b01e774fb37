"""The fleet view: every store's replication lag (from Kafka) and last heartbeat, and the
agent processes (instances) heartbeating for it: two live at once for one store is an
operator mistake (a copied config, a second machine) flagged as `duplicate_agents`.

An instance is live while its last heartbeat is younger than LIVE_INTERVALS of the interval
it announced (`every_s`), plus LIVE_GRACE_S for the heartbeat's own trip. Two live instances
run at once when each heartbeated between the other's first and last heartbeat: so an agent
restarted is not flagged (its old instance last heartbeated before the new one first did),
and a second agent is flagged by the first one's next heartbeat, within one interval. All
times are central's: the agents' clocks play no part.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from central.db import is_mysql
from central.errors import Forbidden, InvalidInput
from central.models import AgentInstance, Store, StoreStatus, as_utc
from central.services.principal import Principal, Role
from central.uow import UnitOfWork
from invwire.identity import consumer_group

NUMBER = (int, float)
REPORT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "instance_id": str,
    "ready": bool,
    "lag": int,
    "last_event_at": str,
    "staleness_s": NUMBER,
    "clock_offset_s": NUMBER,
    "every_s": NUMBER,
    "offline_queue": int,
    "rejected_offline": int,
    "dead_letters": int,
    "replica_id": str,  # the agent's replica file: its start compares queues with it
}
MAX_REPORT_BYTES = 4096
LIVE_INTERVALS = 2
LIVE_GRACE_S = 1.0
DEFAULT_EVERY_S = 10.0  # the agent's default, for a heartbeat that does not say
INSTANCE_RETENTION = timedelta(hours=1)  # a quiet instance is shown (not live) this long
DUPLICATE_AGENTS = "duplicate_agents"


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


def record_heartbeat(
    uow: UnitOfWork, principal: Principal, report: dict[str, Any]
) -> dict[str, str]:
    """Keep the store's last heartbeat, and its instance's. The answer holds central's time
    (`server_time`, to the millisecond), from which the agent estimates central's clock."""
    if principal.role != Role.STORE or principal.store_id is None:
        raise Forbidden("heartbeats come from a store's API key")
    store_id = principal.store_id
    clean = {k: report[k] for k, kind in REPORT_FIELDS.items() if isinstance(report.get(k), kind)}
    text = json.dumps(clean, sort_keys=True)
    if len(text) > MAX_REPORT_BYTES:
        raise InvalidInput("the heartbeat report is too large")
    with uow:
        now = uow.clock.now()
        _upsert(uow, StoreStatus, {"store_id": store_id}, {"last_seen": now, "report": text})
        instance_id = clean.get("instance_id")
        if instance_id:
            keys = {"store_id": store_id, "instance_id": instance_id}
            values = {"last_seen": now, "every_s": clean.get("every_s"), "report": text}
            _upsert(uow, AgentInstance, keys, values, first={"first_seen": now})
            _forget_quiet_instances(store_id, now)
    answered_at = uow.clock.now()  # after the commit: as near the answer as the service gets
    return {"server_time": answered_at.replace(tzinfo=UTC).isoformat(timespec="milliseconds")}


def last_heartbeat(uow: UnitOfWork, principal: Principal) -> dict[str, Any]:
    """The store's own last heartbeat as central keeps it: its agent compares the queue it
    reported (and the replica it reported from) with its replica at start."""
    if principal.role != Role.STORE or principal.store_id is None:
        raise Forbidden("a store's last heartbeat is read with its API key")
    with uow.db.connection_context():
        status = StoreStatus.get_or_none(StoreStatus.store_id == principal.store_id)
    last_seen = as_utc(status.last_seen) if status is not None else None
    return {"store_id": principal.store_id, "last_seen": last_seen, "reported": _reported(status)}


def _upsert(
    uow: UnitOfWork,
    model: type[StoreStatus | AgentInstance],
    keys: dict[str, Any],
    values: dict[str, Any],
    first: dict[str, Any] | None = None,
) -> None:
    """Insert the row (`first`: columns set only then), or update `values` in the row with
    the same `keys`."""
    insert = model.insert(**keys, **values, **(first or {}))
    update = {getattr(model, name): value for name, value in values.items()}
    if is_mysql(uow.db):
        insert.on_conflict(update=update).execute()
    else:
        target = [getattr(model, name) for name in keys]
        insert.on_conflict(conflict_target=target, update=update).execute()


def _forget_quiet_instances(store_id: str, now: datetime) -> None:
    AgentInstance.delete().where(
        (AgentInstance.store_id == store_id) & (AgentInstance.last_seen < now - INSTANCE_RETENTION)
    ).execute()


def duplicate_agents(uow: UnitOfWork) -> dict[str, list[str]]:
    """For each store heard from in the last hour, the instance ids of its agent processes
    that run at once (empty: one agent, as it should be)."""
    with uow.db.connection_context():
        instances = _by_store(AgentInstance.select())
    now = uow.clock.now()
    return {store: _running_together(found, now) for store, found in instances.items()}


def fleet_status(uow: UnitOfWork, lag_reader: LagReader | None) -> dict[str, Any]:
    with uow.db.connection_context():
        stores = list(Store.select().order_by(Store.id))
        seen = {s.store_id: s for s in StoreStatus.select()}
        instances = _by_store(AgentInstance.select().order_by(AgentInstance.last_seen.desc()))
    kafka, lags = _lags(lag_reader, [group_of(s.id) for s in stores])
    now = uow.clock.now()
    items = [
        _store_row(s, seen.get(s.id), instances.get(s.id, []), lags.get(group_of(s.id)), now)
        for s in stores
    ]
    return {"kafka": kafka, "items": items}


def _by_store(instances: Iterable[AgentInstance]) -> dict[str, list[AgentInstance]]:
    grouped: dict[str, list[AgentInstance]] = {}
    for instance in instances:
        grouped.setdefault(instance.store_id, []).append(instance)
    return grouped


def _is_live(heartbeat: AgentInstance | StoreStatus, now: datetime) -> bool:
    every_s = getattr(heartbeat, "every_s", None) or _reported(heartbeat).get("every_s")
    window = LIVE_INTERVALS * float(every_s or DEFAULT_EVERY_S) + LIVE_GRACE_S
    return (now - heartbeat.last_seen).total_seconds() <= window


def _reported(heartbeat: AgentInstance | StoreStatus | None) -> dict[str, Any]:
    return json.loads(heartbeat.report) if heartbeat is not None else {}


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
    store: Store,
    status: StoreStatus | None,
    instances: list[AgentInstance],
    lag: GroupLag | None,
    now: datetime,
) -> dict[str, Any]:
    report = _reported(status)
    problems = _problems(instances, now)
    return {
        "store_id": store.id,
        "name": store.name,
        "active": store.active,
        "group": group_of(store.id),
        "lag": lag.lag if lag is not None else None,
        "last_seen": as_utc(status.last_seen) if status is not None else None,
        "seconds_since_seen": (now - status.last_seen).total_seconds() if status else None,
        "ready": _ready(status, report, problems, now),
        "problems": problems,
        "instances": [_instance_row(instance, now) for instance in instances],
        "reported": report,
    }


def _ready(
    status: StoreStatus | None, report: dict[str, Any], problems: list[Any], now: datetime
) -> bool | None:
    """None: never heard from; true only while an agent is live, says it is ready, and no
    problem stands."""
    if status is None:
        return None
    return _is_live(status, now) and report.get("ready") is True and not problems


def _running_together(instances: list[AgentInstance], now: datetime) -> list[str]:
    """The live instances that each heartbeated while another live one did (between its
    first and last heartbeat): two agents at once, not one restarted, whose old instance
    stays live for a while but heartbeated last before the new one first did."""
    live = [instance for instance in instances if _is_live(instance, now)]
    together = [
        instance
        for instance in live
        if any(other is not instance and _overlap(instance, other) for other in live)
    ]
    return [instance.instance_id for instance in together]


def _overlap(one: AgentInstance, other: AgentInstance) -> bool:
    return one.first_seen <= other.last_seen and other.first_seen <= one.last_seen


def _problems(instances: list[AgentInstance], now: datetime) -> list[dict[str, Any]]:
    together = _running_together(instances, now)
    if not together:
        return []
    message = (
        f"{len(together)} agent processes run for this store at once (instances "
        f"{', '.join(together)}): they split its Kafka partitions; stop all but one"
    )
    return [{"code": DUPLICATE_AGENTS, "message": message, "instance_ids": together}]


def _instance_row(instance: AgentInstance, now: datetime) -> dict[str, Any]:
    return {
        "instance_id": instance.instance_id,
        "first_seen": as_utc(instance.first_seen),
        "last_seen": as_utc(instance.last_seen),
        "seconds_since_seen": (now - instance.last_seen).total_seconds(),
        "live": _is_live(instance, now),
        "ready": _reported(instance).get("ready"),
    }
