"""One JSON shape for every error the API returns, whatever raised it.

    {"error": {"status": 400, "code": "invalid_parameter", "message": "...", "details": [...]}}

Validation errors become 400 with one detail per bad parameter; HTTP exceptions (including
404 for unknown routes) keep their status; an unavailable store is 503; anything unexpected is
a 500 with a generic message, logged once with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.base import StoreError

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    parameter: str | None = Field(default=None, description="The parameter at fault, if any")
    location: str | None = Field(default=None, description="query, path or header")
    message: str


class ErrorBody(BaseModel):
    status: int = Field(description="The HTTP status, repeated for clients that lose it")
    code: str = Field(
        description="Stable machine-readable code: invalid_parameter, unauthorized, not_found, "
        "method_not_allowed, store_unavailable, unavailable, internal_error, ..."
    )
    message: str = Field(description="What went wrong, for people")
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorBody


# For OpenAPI: every route documents these responses with the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid parameter"},
    401: {"model": ErrorResponse, "description": "Missing or unknown bearer token"},
    500: {"model": ErrorResponse, "description": "Internal error"},
}


class ApiError(Exception):
    """Raised by handlers for an error response in the common shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[ErrorDetail] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})


def invalid_parameter(parameter: str, message: str, location: str = "query") -> ApiError:
    return ApiError(
        400,
        "invalid_parameter",
        f"invalid parameter {parameter!r}: {message}",
        [ErrorDetail(parameter=parameter, location=location, message=message)],
    )


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[ErrorDetail] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(
        error=ErrorBody(status=status, code=code, message=message, details=list(details))
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _code_of(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details: list[ErrorDetail] = []
    for err in exc.errors():
        # ("query", "kind", 0) for the first value of a repeated parameter: name the parameter.
        loc = [str(x) for x in err.get("loc", ())]
        where = loc[0] if loc else None
        name = loc[1] if len(loc) > 1 else None
        details.append(ErrorDetail(parameter=name, location=where, message=str(err.get("msg"))))
    names = sorted({d.parameter for d in details if d.parameter})
    plural = "s" if len(names) > 1 else ""
    message = f"invalid parameter{plural}: {', '.join(names)}" if names else "invalid request"
    return error_response(400, "invalid_parameter", message, details)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _code_of(exc.status_code)
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = "no such resource"
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StoreError)
    if exc.retryable:
        log.warning("store unavailable for %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503, "store_unavailable", "the time-series store is unavailable; try again shortly"
        )
    log.error("store error for %s %s", request.method, request.url.path, exc_info=exc)
    return _internal()


def _internal() -> JSONResponse:
    return error_response(500, "internal_error", "internal error; the server log has the details")


class CatchAll:
    """Turns an unexpected exception into the common 500 shape, logged once with its traceback.

    A pure ASGI middleware rather than an ``Exception`` handler: Starlette re-raises after
    calling such a handler, which would log every traceback twice.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            # The path only: query strings are not logged (they may carry personal filters).
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await _internal()(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_middleware(CatchAll)
