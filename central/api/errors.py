"""Maps every error to the JSON error body, once. No request gets a 500 from bad input."""

from __future__ import annotations

from typing import Any

import peewee
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from central.errors import CentralError, DatabaseUnavailable
from invwire.logs import EventLog

log = EventLog("central.api")

# A validation failure on one of these fields gets the field's own stable code.
FIELD_CODES = {
    "sku": "sku.invalid",
    "price": "price.invalid",
    "quantity": "quantity.invalid",
    "delta": "quantity.invalid",
    "name": "name.invalid",
}

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
    return JSONResponse(body, status_code=status, headers=headers)


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
    if exc.code in CONFLICT_CODES:
        request.app.state.central.metrics.stock_conflicts.labels(exc.code).inc()
    return error_response(exc.status, exc.code, exc.message, exc.details)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": e["msg"]}
        for e in exc.errors()
    ]
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return error_response(400, "request.malformed", "the body is not valid JSON", {})
    code = _field_code(exc.errors())
    return error_response(422, code, "the request is not valid", {"errors": problems})


def _field_code(errors: Any) -> str:
    for error in errors:
        loc = error.get("loc", ())
        if loc and str(loc[-1]) in FIELD_CODES:
            return FIELD_CODES[str(loc[-1])]
    return "request.invalid"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = STATUS_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("db.unavailable", error=str(exc)[:200])
    err = DatabaseUnavailable()
    return error_response(err.status, err.code, err.message)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("http.unexpected", exc=True, path=request.url.path)
    return error_response(500, "internal", "an unexpected error occurred; it has been logged")
