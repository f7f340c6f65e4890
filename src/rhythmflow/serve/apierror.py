"""The API's one error shape, ``{"error": {"message", "field", "line"}}``, and the exception
routes raise to answer with it (its own module: the app, the routes and the guard all use it).
A refused request (422/413 from validation) adds ``errors``: every problem found, each
``{"field", "message", "line"}``, the first being the one ``message``/``field``/``line`` name."""

from __future__ import annotations

from fastapi.responses import JSONResponse


class ApiError(Exception):
    """An answer ``{"error": {"message", "field", "line"}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 line: int | None = None, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.line = status, message, field, line
        self.errors = errors


def error_response(status: int, message: str, field: str | None = None,
                   line: int | None = None, headers: dict[str, str] | None = None,
                   errors: list[dict] | None = None) -> JSONResponse:
    error = {"message": message, "field": field, "line": line}
    if errors is not None:
        error["errors"] = errors
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def error_body(status: int, message: str, field: str | None = None) -> bytes:
    """The envelope as bytes, for answers sent below FastAPI (the ASGI guard)."""
    import json

    return json.dumps({"error": {"message": message, "field": field, "line": None}}).encode()
