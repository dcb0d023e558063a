"""Errors as orchestrator's envelope ``{"Code": "ERROR", "Message": ..., "Details": null}``.

orchestrator answers every error with HTTP 500; we keep its envelope (so its clients still parse
the answer) but use the status that says whose fault it is: 400 malformed input, 401/403 auth
(403 also for a host the discovery filters refuse to contact), 404 unknown cluster/instance/
route, 405 wrong method, 409 refused operation, 503 a backend is down. Unexpected exceptions
are 500, logged with their traceback, and never leak it.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator_api.wire import error_envelope
from orchestrator_shared.errors import (
    InvalidInstanceKey,
    OperationRefused,
    StoreError,
)
from orchestrator_shared.patterns import InvalidPattern

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answer: HTTP status plus the envelope's message."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class NotFound(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_envelope(message), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(InvalidInstanceKey)
    async def bad_key(_request: Request, exc: InvalidInstanceKey) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(InvalidPattern)
    async def bad_pattern(_request: Request, exc: InvalidPattern) -> JSONResponse:
        return error_response(400, f"bad pattern: {exc}")

    @app.exception_handler(OperationRefused)
    async def refused(_request: Request, exc: OperationRefused) -> JSONResponse:
        return error_response(409, str(exc))

    @app.exception_handler(StoreError)
    async def store_down(_request: Request, exc: StoreError) -> JSONResponse:
        log.warning("store error: %s", exc)
        return error_response(503, f"storage unavailable: {exc}")

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        return error_response(400, f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no such route: {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}")
