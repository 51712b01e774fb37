"""The fleet view: every store's replication lag (from Kafka) and last heartbeat, and the
agent processes (instances) heartbeating for it: two live at once for one store is an
operator mistake (a copied config, a second machine) flagged as `duplicate_agents`.

An instance is live while its last heartbeat is younger than LIVE_INTERVALS of the interval
it announced (`every_s`), plus LIVE_GRACE_S for the heartbeat's own trip. Two live instances
run at once when each heartbeated between the other's first and last heartbeat: so an agent
restarted is not flagged (its old instance last heartbeated before the new one first did),
and a second agent is flagged by the first one's next heartbeat, within one interval. All
times are central's: the agents' clocks play no part.

Each store has one state (`store_state`), for people, `invctl sync status --all --check`
and the Prometheus fleet metrics: a deactivated store is `inactive`; a store whose key
central refused more recently than it last accepted a heartbeat is `auth_failed`; one never
heard from is `never_seen`; one whose last heartbeat is older than the down window is
`down`, older than the live window `stale`; a live one is `not_ready` while its agent says
so or a problem stands, else `ok`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import peewee

from central.db import is_mysql
from central.models import AgentInstance, Store, StoreRefusal, StoreStatus, as_utc
from central.services.fleet_lags import FleetLags, GroupLag, lag_reading
from central.services.principal import Principal, Role
from central.uow import UnitOfWork
from invwire.errors.central import Forbidden, InvalidInput
from invwire.identity import consumer_group
from invwire.logs import EventLog

log = EventLog("central.fleet")

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
    "allowance_units_held": int,  # central's remaining of the store's live grants, as it heard
    "allowance_units_used": int,  # units sold offline under them, not replayed yet
}
MAX_REPORT_BYTES = 4096
LIVE_INTERVALS = 2
LIVE_GRACE_S = 1.0
DEFAULT_EVERY_S = 10.0  # the agent's default, for a heartbeat that does not say
INSTANCE_RETENTION = timedelta(hours=1)  # a quiet instance is shown (not live) this long
DUPLICATE_AGENTS = "duplicate_agents"
# Down: silent for DOWN_INTERVALS of the announced interval, and never sooner than
# DOWN_FLOOR_S, so an agent heartbeating every 0.5 s is not called down for a 3 s pause.
DOWN_INTERVALS = 6
DOWN_FLOOR_S = 30.0
# A refused key is recorded at most this often per store: a revoked key still in use (or
# held by an attacker) must not make each of its requests a write.
REFUSAL_RESOLUTION = timedelta(seconds=5)


class StoreState(StrEnum):
    OK = "ok"
    NOT_READY = "not_ready"
    STALE = "stale"
    DOWN = "down"
    AUTH_FAILED = "auth_failed"
    NEVER_SEEN = "never_seen"
    INACTIVE = "inactive"


# A deactivated store was stopped on purpose: nothing to alarm anyone about.
HEALTHY_STATES = frozenset({StoreState.OK, StoreState.INACTIVE})
ACTIVE_STATES = tuple(state.value for state in StoreState if state is not StoreState.INACTIVE)


@dataclass(frozen=True)
class Heard:
    """What central knows of a store, on its own clock: enough to tell the store's state."""

    active: bool
    last_seen: datetime | None  # the last heartbeat central accepted
    every_s: float  # the interval the agent announced (DEFAULT_EVERY_S if it did not)
    says_ready: bool
    has_problems: bool
    last_refused: datetime | None  # the last time central refused one of its keys


def live_window_s(every_s: float) -> float:
    return LIVE_INTERVALS * every_s + LIVE_GRACE_S


def down_window_s(every_s: float) -> float:
    return max(DOWN_INTERVALS * every_s, DOWN_FLOOR_S)


def store_state(heard: Heard, now: datetime) -> StoreState:
    if not heard.active:
        return StoreState.INACTIVE
    if heard.last_refused is not None and (
        heard.last_seen is None or heard.last_refused > heard.last_seen
    ):
        return StoreState.AUTH_FAILED
    if heard.last_seen is None:
        return StoreState.NEVER_SEEN
    return _heartbeat_state(heard, (now - heard.last_seen).total_seconds())


def _heartbeat_state(heard: Heard, silent_s: float) -> StoreState:
    """The state of a store heard from, its key accepted: by how long it has been silent,
    then by what its agent says."""
    if silent_s > down_window_s(heard.every_s):
        return StoreState.DOWN
    if silent_s > live_window_s(heard.every_s):
        return StoreState.STALE
    if not heard.says_ready or heard.has_problems:
        return StoreState.NOT_READY
    return StoreState.OK


def group_of(store_id: str) -> str:
    return consumer_group(store_id)


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


def record_refusal(uow: UnitOfWork, store_id: str) -> None:
    """Keep the time central refused one of the store's keys (revoked, or the store
    deactivated): the fleet shows it `auth_failed`. Written only when the kept time is
    REFUSAL_RESOLUTION old (read first, then a conditional UPDATE, so concurrent refusals
    write once); a failure is logged, never raised: the caller answers 401 all the same."""
    now = uow.clock.now()
    due = now - REFUSAL_RESOLUTION
    try:
        with uow.db.connection_context():
            kept = StoreRefusal.get_or_none(StoreRefusal.store_id == store_id)
        if kept is not None and kept.last_refused > due:
            return
        with uow:
            updated = (
                StoreRefusal.update(last_refused=now)
                .where((StoreRefusal.store_id == store_id) & (StoreRefusal.last_refused <= due))
                .execute()
            )
            if not updated and kept is None:
                StoreRefusal.insert(
                    store_id=store_id, last_refused=now
                ).on_conflict_ignore().execute()
    except peewee.DatabaseError as exc:
        log.warning("fleet.refusal_not_recorded", store_id=store_id, error=str(exc)[:200])


@dataclass(frozen=True)
class _Known:
    """Everything central keeps about the stores, read at once."""

    stores: list[Store]
    seen: dict[str, StoreStatus]
    instances: dict[str, list[AgentInstance]]
    refused: dict[str, datetime]


def _read_known(uow: UnitOfWork) -> _Known:
    with uow.db.connection_context():
        return _Known(
            stores=list(Store.select().order_by(Store.id)),
            seen={s.store_id: s for s in StoreStatus.select()},
            instances=_by_store(AgentInstance.select().order_by(AgentInstance.last_seen.desc())),
            refused={r.store_id: r.last_refused for r in StoreRefusal.select()},
        )


def fleet_status(uow: UnitOfWork, lags: FleetLags | None) -> dict[str, Any]:
    """Every store's row, from four queries and one lag reading for the whole fleet (kept
    up to LAG_CACHE_S: `lag_as_of` says when it was read)."""
    known = _read_known(uow)
    reading = lag_reading(lags, [group_of(s.id) for s in known.stores])
    now = uow.clock.now()
    items = [
        _store_row(store, known, reading.lags.get(group_of(store.id)), now)
        for store in known.stores
    ]
    return {"kafka": reading.kafka, "lag_as_of": as_utc(reading.as_of), "items": items}


@dataclass(frozen=True)
class StoreHealth:
    store_id: str
    state: StoreState
    seconds_since_seen: float | None  # None: never heard from


def active_store_health(uow: UnitOfWork) -> list[StoreHealth]:
    """Each active store's state and heartbeat age, from the database alone (no Kafka), for
    the metrics read at scrape time."""
    known = _read_known(uow)
    now = uow.clock.now()
    health = []
    for store in known.stores:
        if not store.active:
            continue
        status = known.seen.get(store.id)
        problems = _problems(known.instances.get(store.id, []), now)
        heard = _heard(store, status, _reported(status), problems, known)
        age = (now - status.last_seen).total_seconds() if status is not None else None
        health.append(StoreHealth(store.id, store_state(heard, now), age))
    return health


def _heard(
    store: Store,
    status: StoreStatus | None,
    report: dict[str, Any],
    problems: list[dict[str, Any]],
    known: _Known,
) -> Heard:
    """`report`: the status's, parsed once per store (a fleet of 1,000 parses 1,000)."""
    return Heard(
        active=bool(store.active),
        last_seen=status.last_seen if status is not None else None,
        every_s=float(report.get("every_s") or DEFAULT_EVERY_S),
        says_ready=report.get("ready") is True,
        has_problems=bool(problems),
        last_refused=known.refused.get(store.id),
    )


def _by_store(instances: Iterable[AgentInstance]) -> dict[str, list[AgentInstance]]:
    grouped: dict[str, list[AgentInstance]] = {}
    for instance in instances:
        grouped.setdefault(instance.store_id, []).append(instance)
    return grouped


def _is_live(heartbeat: AgentInstance | StoreStatus, now: datetime) -> bool:
    return (now - heartbeat.last_seen).total_seconds() <= live_window_s(_every_s(heartbeat))


def _every_s(heartbeat: AgentInstance | StoreStatus) -> float:
    every_s = getattr(heartbeat, "every_s", None) or _reported(heartbeat).get("every_s")
    return float(every_s or DEFAULT_EVERY_S)


def _reported(heartbeat: AgentInstance | StoreStatus | None) -> dict[str, Any]:
    return json.loads(heartbeat.report) if heartbeat is not None else {}


def _store_row(store: Store, known: _Known, lag: GroupLag | None, now: datetime) -> dict[str, Any]:
    status = known.seen.get(store.id)
    instances = known.instances.get(store.id, [])
    report, problems = _reported(status), _problems(instances, now)
    state = store_state(_heard(store, status, report, problems, known), now)
    return {
        "store_id": store.id,
        "name": store.name,
        "active": store.active,
        "group": group_of(store.id),
        "lag": lag.lag if lag is not None else None,
        "last_seen": as_utc(status.last_seen) if status is not None else None,
        "seconds_since_seen": (now - status.last_seen).total_seconds() if status else None,
        # None: never heard from; true only in state ok (a live agent says it is ready, no
        # problem stands, its key is accepted and its store active)
        "ready": None if status is None else state is StoreState.OK,
        "state": state.value,
        "healthy": state in HEALTHY_STATES,
        "last_refused": as_utc(known.refused.get(store.id)),
        "problems": problems,
        "instances": [_instance_row(instance, now) for instance in instances],
        "reported": report,
    }


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
