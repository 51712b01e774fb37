from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from central.api.deps import API_PREFIX, CentralDep, Ops, Reader, UowDep
from central.services import fleet

router = APIRouter(prefix=API_PREFIX, tags=["sync"])


class Heartbeat(BaseModel):
    ready: bool | None = None
    lag: int | None = None
    last_event_at: str | None = None
    offline_queue: int | None = None
    rejected_offline: int | None = None
    dead_letters: int | None = None


@router.post("/stores/heartbeat", status_code=204)
def heartbeat(body: Heartbeat, uow: UowDep, principal: Reader) -> Response:
    """A store agent reports that it is alive and how current its replica is."""
    fleet.record_heartbeat(uow, principal, body.model_dump(exclude_none=True))
    return Response(status_code=204)


@router.get("/sync/stores")
def stores_sync(central: CentralDep, uow: UowDep, _: Ops) -> dict[str, Any]:
    """Every registered store: consumer-group lag from Kafka and the last heartbeat."""
    return fleet.fleet_status(uow, central.lag_reader)
