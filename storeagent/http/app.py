"""The store terminal's HTTP API (loopback): stock and products from the replica, sales
(POST/GET /orders, when the app has an order desk) and sync status.

create_app() is the factory; the app holds no state of its own. Every error body is
{"error": {"code", "message", "details"}}; inputs are validated so no request gets a 500.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from typing import Annotated, Any

import peewee
from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from invwire.errors import InvalidSku, WireError
from invwire.http import RequestContext
from invwire.logs import EventLog, request_id_var
from invwire.rules import is_request_id, is_sku
from storeagent.errors import ProductNotFound, ReplicaNotReady
from storeagent.http.schemas import OrderIn, SyncStatus, problem_statuses, sync_status
from storeagent.ops.metrics import AgentMetrics
from storeagent.ops.vitals import readiness_checks
from storeagent.replica.db import Replica
from storeagent.replica.queries import OrderList, ProductList, ReplicaReads, StockView
from storeagent.sales.desk import OrderDesk, Placed, PlaceOrder, Queued
from storeagent.sync.progress import SyncProgress

MAX_ORDER_PAGE = 200


def create_app(
    replica: Replica,
    progress: SyncProgress,
    *,
    store_id: str,
    topics: Collection[str],
    orders: OrderDesk | None = None,
    resync: Callable[[], None] | None = None,
    metrics: AgentMetrics | None = None,
) -> FastAPI:
    """`replica` is the API's own handle (its own connections); `topics` are the full names.
    Without `orders` the app serves the read side only. `metrics` is the agent's registry,
    served at /metrics (a fresh one when not given)."""
    app = FastAPI(title="storeagent", summary=f"Store {store_id}: local replica API")
    metrics = metrics or AgentMetrics()
    reads = ReplicaReads(replica)
    app.add_middleware(
        RequestContext, observe=metrics.http_request, log=EventLog("storeagent.http")
    )
    _install_error_handlers(app)

    def require_bootstrapped() -> None:
        if not replica.is_bootstrapped():
            raise ReplicaNotReady()

    @app.get("/stock/{sku}")
    def get_stock(sku: str) -> StockView:
        if not is_sku(sku):
            raise InvalidSku(sku=sku[:80])
        require_bootstrapped()
        view = reads.stock_view(sku)
        if view is None:
            raise ProductNotFound(sku=sku)
        return view

    if resync is not None:
        _add_resync_route(app, replica, resync)

    @app.get("/products")
    def get_products() -> ProductList:
        require_bootstrapped()
        return reads.product_list()

    @app.get("/sync/status")
    def get_sync_status() -> SyncStatus:
        ready = all(readiness_checks(replica, progress).values())
        central = orders.central_status() if orders else None
        return sync_status(
            replica,
            progress,
            store_id=store_id,
            topics=topics,
            ready=ready,
            central=central,
            offline_queue=orders.offline_status() if orders else None,
        )

    if orders is not None:
        _add_order_routes(app, orders, require_bootstrapped, metrics)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, Any]:
        checks = readiness_checks(replica, progress)
        failing = [name for name, ok in checks.items() if not ok]
        if failing:
            problems = problem_statuses(progress)
            message = "not ready: " + ", ".join(failing)
            if problems:
                message += " (" + "; ".join(f"{p['code']}: {p['message']}" for p in problems) + ")"
            raise ReplicaNotReady(message, checks=checks, problems=problems)
        return {"status": "ready", "checks": checks}

    @app.get("/metrics", include_in_schema=False)
    def get_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


RESYNC_UNAVAILABLE = (
    "stock reads, the product list and sales answer 503 replica.not_ready until the replica "
    "is rebuilt; offline sales already queued are kept and still replayed"
)


def _add_resync_route(app: FastAPI, replica: Replica, resync: Callable[[], None]) -> None:
    @app.post("/sync/resync", status_code=202)
    def post_resync() -> dict[str, object]:
        """Rebuild the replica from Kafka's compacted topics."""
        resync()
        return {"status": "resync started", "unavailable_meanwhile": RESYNC_UNAVAILABLE}


def _add_order_routes(
    app: FastAPI,
    orders: OrderDesk,
    require_bootstrapped: Callable[[], None],
    metrics: AgentMetrics,
) -> None:
    place = _counted(orders.place, metrics)

    @app.post("/orders", status_code=201)
    def post_order(
        body: OrderIn,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=1000)] = None,
        x_request_id: Annotated[str | None, Header(max_length=1000)] = None,
    ) -> dict[str, Any]:
        """Sell: checked against the replica, then reserved at central; the replica shows
        the new stock as soon as this answers. Replaying an Idempotency-Key sells once.
        202 `queued` when central is unreachable and the offline policy accepts the sale."""
        require_bootstrapped()
        placed = place(PlaceOrder(body.lines, idempotency_key, _request_id(x_request_id)))
        response.status_code = placed.http_status
        if placed.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return _order_answer(placed)

    @app.get("/orders")
    def get_orders(
        status: Annotated[str | None, Query(max_length=16)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_ORDER_PAGE)] = 50,
    ) -> OrderList:
        """This store's sales, newest first."""
        return orders.list_orders(status, limit)


def _order_answer(placed: Placed | Queued) -> dict[str, Any]:
    """A confirmed sale answers central's order object with the agent's `local_ref` beside its
    fields (and, for older tills, the same order again under `order`); a queued one has no
    order yet."""
    if isinstance(placed, Queued):
        return placed.body()
    return {**placed.order, **placed.body()}


def _request_id(raw: str | None) -> str:
    """The request's id (invwire.http took the caller's X-Request-ID when usable),
    forwarded to central so that central's logs match the till's."""
    current = request_id_var.get()
    if current is not None:
        return current
    return raw if raw is not None and is_request_id(raw) else uuid.uuid4().hex


def _counted(
    place: Callable[[PlaceOrder], Placed | Queued], metrics: AgentMetrics
) -> Callable[[PlaceOrder], Placed | Queued]:
    """`place`, counting each sale's outcome: confirmed, queued, replayed, or the error's code."""

    def counted(command: PlaceOrder) -> Placed | Queued:
        try:
            placed = place(command)
        except WireError as exc:
            metrics.order(exc.code)
            raise
        metrics.order("replayed" if placed.replayed else str(placed.body()["status"]))
        return placed

    return counted


def _error(status: int, code: str, message: str, details: dict[str, Any]) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": jsonable_encoder(details)}}
    return JSONResponse(body, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WireError)
    async def wire_error(_: Request, exc: WireError) -> JSONResponse:
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
