"""The store terminal's HTTP API (loopback): stock and products from the replica, sync status.

create_app() is the factory; the app holds no state of its own. Every error body is
{"error": {"code", "message", "details"}}; inputs are validated so no request gets a 500.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import peewee
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from storeagent.errors import AgentError, InvalidSku, ProductNotFound, ReplicaNotReady
from storeagent.events import is_valid_sku
from storeagent.progress import SyncProgress
from storeagent.replica import Replica
from storeagent.views import (
    ProductList,
    StockView,
    SyncStatus,
    product_list,
    readiness_checks,
    stock_view,
    sync_status,
)


def create_app(
    replica: Replica, progress: SyncProgress, *, store_id: str, topics: Collection[str]
) -> FastAPI:
    """`replica` is the API's own handle (its own connections); `topics` are the full names."""
    app = FastAPI(title="storeagent", summary=f"Store {store_id}: local replica API")
    _install_error_handlers(app)

    def require_bootstrapped() -> None:
        if not replica.is_bootstrapped():
            raise ReplicaNotReady()

    @app.get("/stock/{sku}")
    def get_stock(sku: str) -> StockView:
        if not is_valid_sku(sku):
            raise InvalidSku(sku=sku[:80])
        require_bootstrapped()
        view = stock_view(replica, sku)
        if view is None:
            raise ProductNotFound(sku=sku)
        return view

    @app.get("/products")
    def get_products() -> ProductList:
        require_bootstrapped()
        return product_list(replica)

    @app.get("/sync/status")
    def get_sync_status() -> SyncStatus:
        ready = all(readiness_checks(replica, progress).values())
        return sync_status(replica, progress, store_id=store_id, topics=topics, ready=ready)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, Any]:
        checks = readiness_checks(replica, progress)
        failing = [name for name, ok in checks.items() if not ok]
        if failing:
            raise ReplicaNotReady("not ready: " + ", ".join(failing), checks=checks)
        return {"status": "ready", "checks": checks}

    return app


def _error(status: int, code: str, message: str, details: dict[str, Any]) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": jsonable_encoder(details)}}
    return JSONResponse(body, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AgentError)
    async def agent_error(_: Request, exc: AgentError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "request.invalid", "The request is not valid.", {"errors": exc.errors()})

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "request.invalid"
        return _error(exc.status_code, code, str(exc.detail), {})

    @app.exception_handler(peewee.DatabaseError)
    async def database_error(_: Request, exc: peewee.DatabaseError) -> JSONResponse:
        return _error(503, "database.unavailable", "The replica database is unavailable.", {})
