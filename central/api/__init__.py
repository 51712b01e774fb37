"""The HTTP API: an app factory over a Central container."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from central import __version__
from central.api import errors
from central.api.epoch import EpochHeader
from central.api.order_path import OrderPath
from central.api.routes import (
    allowance_rules,
    allowances,
    auth,
    catalog,
    exports,
    fleet,
    health,
    imports,
    orders,
    reports,
    stock,
    stores,
    users,
)
from central.api.schemas import ERROR_CODES
from central.app import Central
from central.settings import Settings
from invwire.http import RequestContext, without_own_telemetry
from invwire.limits import BodyLimit, LimitFor
from invwire.logs import EventLog


def create_app(central: Central, *, manage_relay: bool = True) -> FastAPI:
    """`manage_relay`: run the background threads (the relay, the revocation retrier, the
    allowance sweep) while the app runs."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_relay:
            central.start_relay()
            central.start_revocations()
            central.start_sweeper()
        yield
        if manage_relay:
            central.stop_relay()
            central.stop_revocations()
            central.stop_sweeper()

    app = FastAPI(
        title="invctl central",
        version=__version__,
        lifespan=lifespan,
        **without_own_telemetry(),  # central's spans are RequestContext's and its use cases'
        **documentation(central.settings),
    )
    app.state.central = central
    errors.install(app)
    # Innermost of ours: an order it serves is still bounded, logged, counted and epoch-marked.
    app.add_middleware(OrderPath, central=central)
    # Next, so it runs inside RequestContext (a 413 is logged and counted like any
    # answer) and outside everything else: before routing, authentication and parsing.
    app.add_middleware(BodyLimit, limit_for=body_limit(central.settings))
    app.add_middleware(
        RequestContext, observe=central.metrics.http_request, log=EventLog("central.http")
    )
    # Outermost of ours: every answer says the epoch, a 413 and an error body included.
    app.add_middleware(EpochHeader, epoch=central.epoch)
    app.include_router(health.router)
    for module in (
        auth,
        users,
        fleet,
        stores,
        catalog,
        stock,
        imports,
        orders,
        exports,
        allowances,
        allowance_rules,
    ):
        app.include_router(module.router)
    app.include_router(reports.router)
    declare_too_large(app)
    return app


def body_limit(settings: Settings) -> LimitFor:
    """`max_body_bytes` for every request but a batch import's rows (`POST /import`, and a
    staged import's `POST /import/batches/{id}/rows`), which get `max_import_bytes`, and a
    store's sales sent back after a restore (`POST /orders/recover`), which get 4 MiB or
    `max_body_bytes` if more."""

    def limit_for(method: str, path: str) -> int:
        if imports.takes_import_body(method, path):
            return settings.max_import_bytes
        if orders.takes_recovered_sales(method, path):
            return max(settings.max_body_bytes, orders.MAX_RECOVER_BYTES)
        return settings.max_body_bytes

    return limit_for


def documentation(settings: Settings) -> dict[str, Any]:
    """FastAPI's arguments for /docs, /redoc and /openapi.json: its defaults, or none."""
    if settings.api_docs:
        return {}
    return {"docs_url": None, "redoc_url": None, "openapi_url": None}


def declare_too_large(app: FastAPI) -> None:
    """/openapi.json declares 413 on every operation that takes a body: BodyLimit answers it
    before any route runs, so no route declares it itself."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = generate()  # made once, then FastAPI's cached copy
        if first:
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    if "requestBody" in operation:
                        operation["responses"].setdefault("413", TOO_LARGE)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point


TOO_LARGE = {
    "description": ERROR_CODES[413],
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}
