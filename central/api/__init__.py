"""The HTTP API: an app factory over a Central container."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from central import __version__
from central.api import errors
from central.api.routes import (
    auth,
    catalog,
    fleet,
    health,
    imports,
    orders,
    stock,
    stores,
    users,
)
from central.app import Central
from invwire.http import RequestContext
from invwire.logs import EventLog


def create_app(central: Central, *, manage_relay: bool = True) -> FastAPI:
    """`manage_relay`: run the background threads (the relay, the revocation retrier) while
    the app runs."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_relay:
            central.start_relay()
            central.start_revocations()
        yield
        if manage_relay:
            central.stop_relay()
            central.stop_revocations()

    app = FastAPI(title="invctl central", version=__version__, lifespan=lifespan)
    app.state.central = central
    errors.install(app)
    app.add_middleware(
        RequestContext, observe=central.metrics.http_request, log=EventLog("central.http")
    )
    app.include_router(health.router)
    for module in (auth, users, fleet, stores, catalog, stock, imports, orders):
        app.include_router(module.router)
    return app
