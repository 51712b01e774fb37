from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from central.api.deps import CentralDep
from central.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])

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
    down, central keeps taking writes and the outbox holds the events."""
    checks: dict[str, Any] = {"database": _database(central)}
    if central.relay is not None:
        stats = central.relay.stats
        checks["relay"] = {"leader": stats.leader, "last_error": stats.last_error or None}
    ready = checks["database"] == "ok"
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


def _database(central: CentralDep) -> str:
    try:
        with central.db.connection_context():
            central.db.execute_sql("SELECT 1")
    except Exception as exc:  # any failure means not ready; the reason is reported
        return f"error: {type(exc).__name__}"
    return "ok"


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {**PROMETHEUS_TEXT, "description": "Prometheus text format"}},
)
def metrics(central: CentralDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(central.metrics.registry), media_type=CONTENT_TYPE_LATEST)
