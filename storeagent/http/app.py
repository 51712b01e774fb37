"""The store terminal's HTTP API (loopback): stock and products from the replica, sales
(POST/GET /orders, when the app has an order desk), sync status and the dead letters
(storeagent.http.dead_letters).

create_app() is the factory; the app holds no state of its own. Every error body is
{"error": {"code", "message", "details"}}; inputs are validated so no request gets a 500.
Before routing, its edge (storeagent.http.guard) serves only requests addressed to a loopback
Host from no foreign Origin, and takes a POST only as JSON with the terminal token; bodies
are bounded (invwire.limits). create_metrics_app() serves only the probes and /metrics, for a
listener of their own that Prometheus may reach from the store network.
With tracing on, each request is one SERVER span (invwire.http.RequestContext) under the
till's `traceparent`; FastAPI's own tracing is off, so there is no second one.
With a replica file watch, /readyz answers 503 `replica.missing` or `replica.replaced` while
the replica's path does not name the file the agent opened, and /sync/status lists it among
its problems (with the sales recorded under another store's id, which are never sent).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Annotated, Any

import peewee
from fastapi import FastAPI, Header, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator
from starlette.exceptions import HTTPException

from invwire.errors import InvalidSku, WireError
from invwire.errors.agent import ProductNotFound, ReplicaNotReady
from invwire.failover import Failover
from invwire.http import RequestContext, without_own_telemetry
from invwire.limits import DEFAULT_MAX_BODY, BodyLimit, fixed_limit
from invwire.logs import EventLog, request_id_var
from invwire.rules import is_request_id, is_sku
from storeagent.http.catalog import add_catalog_routes
from storeagent.http.dead_letters import add_dead_letter_routes
from storeagent.http.guard import LoopbackOnly, TerminalWrites
from storeagent.http.schemas import (
    OrderIn,
    ProblemStatus,
    SyncStatus,
    problem_statuses,
    sync_status,
)
from storeagent.ops.metrics import AgentMetrics
from storeagent.ops.vitals import readiness_checks
from storeagent.replica.db import DATABASE_ERRORS, Replica
from storeagent.replica.integrity import ReplicaFileWatch
from storeagent.replica.queries import OrderItem, OrderList, ReplicaReads, SaleQuery, StockView
from storeagent.sales.desk import AllowanceSold, OrderDesk, Outcome, PlaceOrder, Queued
from storeagent.sales.recovery import RecoveryStatus
from storeagent.sync.progress import SyncProgress

MAX_ORDER_PAGE = 200


def _in_utc(moment: datetime) -> datetime:
    """A moment without an offset is UTC; one that leaves the years 1-9999 there is refused."""
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError("the moment is outside the years 1 to 9999 in UTC") from None


UtcMoment = Annotated[datetime, AfterValidator(_in_utc)]
# A sale's local reference or central order id (UUIDs), or a prefix of one.
SaleRef = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


def create_app(
    replica: Replica,
    progress: SyncProgress,
    *,
    store_id: str,
    topics: Collection[str],
    terminal_token: str,
    orders: OrderDesk | None = None,
    recovery: Callable[[], RecoveryStatus] | None = None,
    resync: Callable[[], datetime | None] | None = None,
    metrics: AgentMetrics | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    replica_file: ReplicaFileWatch | None = None,
    central_at: Failover | None = None,
    allowances: Callable[[], dict[str, Any]] | None = None,
) -> FastAPI:
    """`replica` is the API's own handle (its own connections); `topics` are the full names.
    Every POST must carry `terminal_token`. Without `orders` the app serves the read side
    only. `metrics` is the agent's registry, served at /metrics (a fresh one when not given).
    `replica_file` watches the replica's file for /readyz and /sync/status; `central_at`, the
    central URLs the agent's clients share, names the current one there when there are
    several; `allowances` says how the store's grants stand (the `allowances` section)."""
    if not terminal_token:
        raise ValueError("the store terminal API needs a terminal token")
    app = FastAPI(
        title="storeagent",
        summary=f"Store {store_id}: local replica API",
        **without_own_telemetry(),  # RequestContext makes the one server span
    )
    metrics = metrics or AgentMetrics()
    reads = ReplicaReads(replica)
    # The last added runs first: request id and access log, Host/Origin, JSON + token, size.
    app.add_middleware(BodyLimit, limit_for=fixed_limit(max_body))
    app.add_middleware(TerminalWrites, token=terminal_token)
    app.add_middleware(LoopbackOnly)
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

    add_catalog_routes(app, reads, require_bootstrapped)
    add_dead_letter_routes(app, reads)

    @app.get("/sync/status")
    def get_sync_status() -> SyncStatus:
        ready = all(readiness_checks(replica, progress).values())
        try:
            status = sync_status(replica, progress, store_id=store_id, topics=topics, ready=ready)
            _add_order_path(status, orders, recovery)
            if allowances is not None:
                _add_allowances(status, allowances())
        except DATABASE_ERRORS as exc:  # a connection made since the file was deleted
            problem = replica_file.problem() if replica_file is not None else None
            if problem is not None:
                raise type(problem)(problem.message, **problem.details) from exc
            raise
        _add_replica_problems(status, replica_file, orders)
        _add_central_urls(status, central_at)
        return status

    if orders is not None:
        _add_order_routes(app, orders, require_bootstrapped, metrics)

    _add_probe_routes(app, replica, progress, metrics, replica_file)
    return app


def create_metrics_app(
    replica: Replica,
    progress: SyncProgress,
    *,
    metrics: AgentMetrics,
    loopback_only: bool,
    replica_file: ReplicaFileWatch | None = None,
) -> FastAPI:
    """/metrics, /healthz and /readyz, and nothing else: no route reads the catalog or sells.
    `loopback_only` (the listener is on loopback) checks Host and Origin as the terminal API
    does; a listener open to the store network answers whatever name Prometheus uses."""
    app = FastAPI(
        title="storeagent metrics",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        **without_own_telemetry(),
    )
    if loopback_only:
        app.add_middleware(LoopbackOnly)
    app.add_middleware(
        RequestContext, observe=metrics.http_request, log=EventLog("storeagent.http")
    )
    _install_error_handlers(app)
    _add_probe_routes(app, replica, progress, metrics, replica_file)
    return app


def _add_order_path(
    status: SyncStatus,
    orders: OrderDesk | None,
    recovery: Callable[[], RecoveryStatus] | None,
) -> None:
    """When the agent places orders: central's circuit breaker and the offline queue; and the
    sales given back to a restored central, when that is watched."""
    if orders is not None:
        status["central"] = orders.central_status()
        status["offline_queue"] = orders.offline_status()
    if recovery is not None:
        status["recovery"] = recovery()


def _add_central_urls(status: SyncStatus, central_at: Failover | None) -> None:
    """Which of several central URLs the agent uses now (one configured: nothing to say)."""
    if central_at is not None and central_at.several:
        status["central_url"] = central_at.current
        status["central_urls"] = list(central_at.urls)


def _add_replica_problems(
    status: SyncStatus, replica_file: ReplicaFileWatch | None, orders: OrderDesk | None
) -> None:
    """The replica file's problem (not ready while it lasts), and sales of another store."""
    problem = replica_file.problem() if replica_file is not None else None
    if replica_file is not None and problem is not None:
        status["ready"] = False
        for_s = replica_file.problem_for_s()
        status["problems"].append(
            ProblemStatus(code=problem.code, message=problem.message, for_s=for_s, failures=0)
        )
    foreign = orders.foreign_sales() if orders is not None else {}
    if foreign:
        listed = ", ".join(f"{count} of store {store}" for store, count in sorted(foreign.items()))
        message = (
            f"this replica holds sales recorded under another store's id ({listed}): they are "
            "never sent as this store's; salvage them (storeagent salvage) for their store"
        )
        status["problems"].append(
            ProblemStatus(code=FOREIGN_SALES, message=message, for_s=0.0, failures=0)
        )


FOREIGN_SALES = "replica.other_store_sales"


def _add_allowances(status: SyncStatus, section: dict[str, Any]) -> None:
    """The grants' section, and each statement central refused among the problems."""
    status["allowances"] = section
    for problem in section.get("problems", []):
        status["problems"].append(
            ProblemStatus(code=problem["code"], message=problem["problem"], for_s=0.0, failures=0)
        )


def _add_probe_routes(
    app: FastAPI,
    replica: Replica,
    progress: SyncProgress,
    metrics: AgentMetrics,
    replica_file: ReplicaFileWatch | None,
) -> None:
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, Any]:
        checks = readiness_checks(replica, progress)
        file_problem = replica_file.problem() if replica_file is not None else None
        if replica_file is not None:
            checks["replica_file"] = file_problem is None
        if file_problem is not None:
            details = {**file_problem.details, "checks": checks}
            raise type(file_problem)(file_problem.message, **details)
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


RESYNC_MEANWHILE = (
    "the replica is rebuilt beside the live one, which goes on serving stock reads, the "
    "product list and sales; it is replaced in one step once the rebuild has caught up "
    "(`rebuild` in GET /sync/status)"
)


def _add_resync_route(
    app: FastAPI, replica: Replica, resync: Callable[[], datetime | None]
) -> None:
    @app.post("/sync/resync", status_code=202)
    def post_resync() -> dict[str, object]:
        """Rebuild the replica from Kafka's compacted topics. The body is JSON, `{}`."""
        requested = resync()
        answer: dict[str, object] = {"status": "resync started", "meanwhile": RESYNC_MEANWHILE}
        if requested is not None:
            answer["requested_at"] = requested.isoformat()
        return answer


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
        202 `allowance` when central is unreachable and the store's allowances cover the
        sale (final); else 202 `queued` when the offline policy accepts it."""
        require_bootstrapped()
        placed = place(PlaceOrder(body.lines, idempotency_key, _request_id(x_request_id)))
        response.status_code = placed.http_status
        if placed.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return _order_answer(placed)

    @app.get("/orders")
    def get_orders(
        status: Annotated[str | None, Query(max_length=16)] = None,
        since: Annotated[UtcMoment | None, Query()] = None,
        until: Annotated[UtcMoment | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_ORDER_PAGE)] = 50,
    ) -> OrderList:
        """This store's sales, newest first, with the status central gave them since
        (`cancelled`); `since`/`until`: placed at or after, before (UTC without an offset)."""
        return orders.list_orders(SaleQuery(status, since, until, limit))

    @app.get("/orders/{ref}")
    def get_order(ref: SaleRef) -> OrderItem:
        """One sale, by its local reference or central's order id (or a prefix of one)."""
        return orders.find_order(ref)

    @app.post("/orders/{ref}/cancel")
    def cancel_order(ref: SaleRef) -> dict[str, Any]:
        """Cancel the sale's order at central, as this store; central's order, cancelled,
        with `local_ref`. Never queued: 503 while central is unreachable. The body is `{}`."""
        return orders.cancel(ref)


def _order_answer(placed: Outcome) -> dict[str, Any]:
    """A confirmed sale answers central's order object with the agent's `local_ref` beside its
    fields (and, for older tills, the same order again under `order`); a queued one, or one
    sold under allowances, has no order yet."""
    if isinstance(placed, Queued | AllowanceSold):
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
    place: Callable[[PlaceOrder], Outcome], metrics: AgentMetrics
) -> Callable[[PlaceOrder], Outcome]:
    """`place`, counting each sale's outcome: confirmed, queued, replayed, or the error's code."""

    def counted(command: PlaceOrder) -> Outcome:
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
