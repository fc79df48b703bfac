"""Error responses that name the field (422), and the Retry-After answers (429, 503).

Every error body has the same shape, ``{"error": "<field>: <message>", "field": ...}`` (``field``
where one is to blame), whether FastAPI's validation, a route's own ``HTTPException`` or
Starlette (a body that is not JSON, an unknown route) raised it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from artisan_ensemble.ensemble.admission import OverloadedError


class UnavailableError(Exception):
    """The service cannot answer now; the client should retry after ``retry_after_seconds``."""

    def __init__(self, message: str, retry_after_seconds: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


def field_of(location: tuple[Any, ...] | list[Any]) -> str:
    """body.text → text; query.x → x; the body itself → body."""
    parts = [str(p) for p in location]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts) or "body"


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(seconds)))}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": field_of(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
            for e in error.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return JSONResponse(
            status_code=422,
            content={
                "error": f"{first['field']}: {first['message']}",
                "field": first["field"],
                "errors": errors,
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = error.detail
        content = dict(detail) if isinstance(detail, dict) and "error" in detail else {"error": str(detail)}
        return JSONResponse(status_code=error.status_code, content=content, headers=error.headers)

    @app.exception_handler(OverloadedError)
    async def _overloaded(request: Request, error: OverloadedError) -> JSONResponse:
        return JSONResponse(
            status_code=429,
            content={"error": "too many requests waiting; retry later"},
            headers=retry_after(error.retry_after_seconds),
        )

    @app.exception_handler(UnavailableError)
    async def _unavailable(request: Request, error: UnavailableError) -> JSONResponse:
        return JSONResponse(
            status_code=503, content={"error": str(error)}, headers=retry_after(error.retry_after_seconds)
        )
