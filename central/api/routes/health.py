from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from central.api.deps import CentralDep
from central.api.schemas import Health, Readiness
from central.outbox import relay_state
from invwire.logs import EventLog

router = APIRouter(tags=["health"])
log = EventLog("central.api")

PROMETHEUS_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}}}


@router.get("/healthz", response_model=Health)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "the database does not answer"}},
)
def readyz(central: CentralDep) -> JSONResponse:
    """Ready when the database answers. Kafka is reported, not required: while the broker is
    down, central keeps taking writes and the outbox holds the events, so a failing relay is
    `relay: failing` in the body (and invctl_relay_failing), still 200; so is `relay:
    behind_kafka`, a relay that found the database behind what central already published and
    publishes nothing from it (`relay.behind_kafka` in the log: confirm the restore). Anyone
    may ask, so each check is a word; why one fails is in the log (`ready.database_failed`,
    `relay.failed`)."""
    checks: dict[str, Any] = {"database": _database(central)}
    checks["relay"] = relay_state(
        central.db,
        central.clock,
        central.relay,
        kafka=bool(central.settings.kafka),
        failing_after=central.settings.relay_failing_after_seconds,
    )
    ready = checks["database"] == "ok"
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


def _database(central: CentralDep) -> str:
    try:
        with central.db.connection_context():
            central.db.execute_sql("SELECT 1")
    except Exception as exc:  # any failure means not ready; the reason goes to the log
        log.warning("ready.database_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        return "unavailable"
    return "ok"


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {**PROMETHEUS_TEXT, "description": "Prometheus text format"}},
)
def metrics(central: CentralDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(central.metrics.registry), media_type=CONTENT_TYPE_LATEST)
