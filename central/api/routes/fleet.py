from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from central.api.deps import API_PREFIX, CanMonitorStores, CanSendHeartbeat, CentralDep, UowDep
from central.api.schemas import (
    CleanStr,
    Count,
    Fleet,
    HeartbeatAnswer,
    LastHeartbeat,
    RequestBody,
    errors,
)
from central.services import fleet

router = APIRouter(prefix=API_PREFIX, tags=["sync"], responses=errors(401, 403, 503))

InstanceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Seconds = Annotated[float, Field(ge=-1e9, le=1e9, allow_inf_nan=False)]
Interval = Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)]


class Heartbeat(RequestBody):
    ready: bool | None = None
    lag: Count | None = None
    # Shown as it came by GET /sync/stores, so it is held to the rule for names.
    last_event_at: Annotated[CleanStr, Field(max_length=64)] | None = None
    offline_queue: Count | None = None
    rejected_offline: Count | None = None
    dead_letters: Count | None = None
    # the agent process: two live for one store are flagged (duplicate_agents)
    instance_id: InstanceId | None = None
    every_s: Interval | None = None  # its heartbeat interval: how long it counts as live
    staleness_s: Seconds | None = None  # on central's clock as the agent estimates it
    clock_offset_s: Seconds | None = None  # central's clock minus the agent's, estimated
    replica_id: InstanceId | None = None  # the agent's replica file (its queue is in it)
    allowance_units_held: Count | None = None  # what its live grants have left, as it heard
    allowance_units_used: Count | None = None  # sold under them offline, not replayed yet


@router.post("/stores/heartbeat", response_model=HeartbeatAnswer, responses=errors(400, 422))
def heartbeat(body: Heartbeat, uow: UowDep, principal: CanSendHeartbeat) -> dict[str, str]:
    """A store agent reports that it is alive and how current its replica is; the answer
    holds central's time, from which the agent estimates central's clock."""
    return fleet.record_heartbeat(uow, principal, body.model_dump(exclude_none=True))


@router.get("/stores/heartbeat", response_model=LastHeartbeat)
def last_heartbeat(uow: UowDep, principal: CanSendHeartbeat) -> dict[str, Any]:
    """The store's last heartbeat as central keeps it (the store's API key only): its agent
    checks at start that the sales it last reported queued are in its replica."""
    return fleet.last_heartbeat(uow, principal)


@router.get("/sync/stores", response_model=Fleet)
def stores_sync(central: CentralDep, uow: UowDep, _: CanMonitorStores) -> dict[str, Any]:
    """Every registered store: consumer-group lag from Kafka (read for all stores at once,
    kept 2 s: `lag_as_of` says when) and the last heartbeat."""
    return fleet.fleet_status(uow, central.fleet_lags)
