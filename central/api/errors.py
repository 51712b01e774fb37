"""Maps every error to the JSON error body, once. No request gets a 500 from bad input."""

from __future__ import annotations

from typing import Any

import peewee
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from central.app import Central
from central.db import is_node_unavailable, is_write_conflict
from invwire.errors.central import CentralError, DatabaseUnavailable, NodeUnavailable, WriteConflict
from invwire.logs import EventLog
from invwire.text import escape_all

log = EventLog("central.api")

# A validation failure on one of these fields gets the field's own stable code.
FIELD_CODES = {
    "sku": "sku.invalid",
    "price": "price.invalid",
    "quantity": "quantity.invalid",
    "delta": "quantity.invalid",
    "name": "name.invalid",
}

# pydantic's type for a field a RequestBody does not declare: `request.invalid` whatever the
# field's name (an unknown `sku` at the top of an order is not a bad SKU).
UNKNOWN_FIELD = "extra_forbidden"

STATUS_CODES = {
    400: "request.malformed",
    401: "auth.required",
    403: "auth.forbidden",
    404: "not_found",
    405: "method.not_allowed",
    409: "conflict",
    413: "request.too_large",
    415: "request.unsupported_media_type",
    422: "request.invalid",
}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status in (429, 503) and isinstance((details or {}).get("retry_after"), int):
        headers = {"Retry-After": str((details or {})["retry_after"])}
    # Refusals echo what was sent: a lone surrogate cannot be encoded as UTF-8 (the answer
    # would be a 500) and a control character would act on the terminal that shows it.
    return JSONResponse(escape_all(body), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(CentralError, _central_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(peewee.OperationalError, _database_error)
    app.add_exception_handler(peewee.InterfaceError, _database_error)
    app.add_exception_handler(Exception, _unexpected)


CONFLICT_CODES = ("stock.insufficient", "stock.negative")


async def _central_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CentralError)
    return central_error_response(request.app.state.central, exc)


def central_error_response(central: Central, exc: CentralError) -> JSONResponse:
    if exc.code in CONFLICT_CODES:
        central.metrics.stock_conflicts.labels(exc.code).inc()
    return error_response(exc.status, exc.code, exc.message, exc.details)


def known_error_response(central: Central, exc: Exception) -> JSONResponse | None:
    """The answer the handlers installed by `install` give `exc` (a CentralError, a database
    error), for an ASGI path that runs outside FastAPI's exception handling; None for any
    other exception (it goes on to the 500 handler)."""
    if isinstance(exc, CentralError):
        return central_error_response(central, exc)
    if isinstance(exc, peewee.OperationalError | peewee.InterfaceError):
        return database_error_response(exc)
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": _message(e)}
        for e in exc.errors()
    ]
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return error_response(400, "request.malformed", "the body is not valid JSON", {})
    code = _field_code(exc.errors())
    return error_response(422, code, "the request is not valid", {"errors": problems})


def _message(error: Any) -> str:
    return "unknown field" if error.get("type") == UNKNOWN_FIELD else str(error["msg"])


def _field_code(errors: Any) -> str:
    for error in errors:
        loc = error.get("loc", ())
        if error.get("type") != UNKNOWN_FIELD and loc and str(loc[-1]) in FIELD_CODES:
            return FIELD_CODES[str(loc[-1])]
    return "request.invalid"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = STATUS_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    return database_error_response(exc)


def database_error_response(exc: Exception) -> JSONResponse:
    log.warning("db.unavailable", error=str(exc)[:200])
    err = database_refusal(exc)
    return error_response(err.status, err.code, err.message, err.details)


def database_refusal(exc: Exception) -> DatabaseUnavailable:
    """The 503 for a database error that reached the API: a Galera node out of service, a
    write conflict of a use case that does not retry (UnitOfWork.run does), else down."""
    if is_node_unavailable(exc):
        return NodeUnavailable()
    if is_write_conflict(exc):
        return WriteConflict(attempts=1)
    return DatabaseUnavailable()


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("http.unexpected", exc=True, path=request.url.path)
    return error_response(500, "internal", "an unexpected error occurred; it has been logged")
