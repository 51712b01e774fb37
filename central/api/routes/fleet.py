from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from central.api.deps import API_PREFIX, CanMonitorStores, CanSendHeartbeat, CentralDep, UowDep
from central.api.schemas import Fleet, errors
from central.services import fleet

router = APIRouter(prefix=API_PREFIX, tags=["sync"], responses=errors(401, 403, 503))


class Heartbeat(BaseModel):
    ready: bool | None = None
    lag: int | None = None
    last_event_at: str | None = None
    offline_queue: int | None = None
    rejected_offline: int | None = None
    dead_letters: int | None = None


@router.post("/stores/heartbeat", status_code=204, responses=errors(400, 422))
def heartbeat(body: Heartbeat, uow: UowDep, principal: CanSendHeartbeat) -> Response:
    """A store agent reports that it is alive and how current its replica is."""
    fleet.record_heartbeat(uow, principal, body.model_dump(exclude_none=True))
    return Response(status_code=204)


@router.get("/sync/stores", response_model=Fleet)
def stores_sync(central: CentralDep, uow: UowDep, _: CanMonitorStores) -> dict[str, Any]:
    """Every registered store: consumer-group lag from Kafka and the last heartbeat."""
    return fleet.fleet_status(uow, central.lag_reader)
