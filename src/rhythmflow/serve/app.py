"""The HTTP process: ``create_app(settings)`` builds the FastAPI app (API under ``/api``, the
page at ``/``). It validates and stores requests and streams events; it never imports torch.
Its lifespan starts the :class:`~rhythmflow.serve.supervisor.Supervisor` (the reaper, the
queue reconciliation and, with ``settings.worker``, one ``rhythmflow worker`` subprocess that
it restarts when it dies) and stops it on shutdown (Ctrl-C / SIGTERM), so nothing is left
running.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from rhythmflow.serve.apierror import ApiError, error_response
from rhythmflow.serve.guard import BodyTooLarge, Guard
from rhythmflow.serve.queue import JobQueue
from rhythmflow.serve.routes import RetryLater, router, top
from rhythmflow.serve.settings import Settings
from rhythmflow.serve.store import Missing, Store, disk_full
from rhythmflow.serve.supervisor import Supervisor

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")


def create_app(settings: Settings, *, queue: JobQueue | None = None,
               store: Store | None = None) -> FastAPI:
    """The service. ``queue``/``store`` default to the ones ``settings`` name (tests pass an
    immediate-mode queue)."""
    store = store or Store(settings.db_path)
    queue = queue or JobQueue(settings.queue, settings.data_dir)
    if not settings.loopback and not settings.all_keys:
        log.warning("WARNING: serving on %s without an API key: anyone who can reach this "
                    "address can submit jobs; give the server an API key (RHYTHMFLOW_API_KEY or "
                    "RHYTHMFLOW_API_KEY_FILE)",
                    settings.host)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        supervisor = Supervisor(settings, store, queue)
        supervisor.start()
        app.state.supervisor = supervisor
        try:
            yield
        finally:
            import anyio

            await anyio.to_thread.run_sync(supervisor.close)

    app = FastAPI(title="rhythmflow", summary="DiffRhythm song generation: jobs, progress, "
                  "audio", lifespan=lifespan)
    app.state.settings, app.state.store, app.state.queue = settings, store, queue
    _handlers(app)
    app.include_router(router)
    app.include_router(top)
    if (STATIC / "index.html").is_file():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    app.add_middleware(Guard, settings=settings)
    return app


def _handlers(app: FastAPI) -> None:
    """Every error in the API's envelope, none with a server path in it."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.field, exc.line,
                              errors=exc.errors)

    @app.exception_handler(RetryLater)
    async def _retry_later(_request: Request, exc: RetryLater) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.field, exc.line,
                              headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_request: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(413, str(exc), exc.field, headers={"Connection": "close"})

    @app.exception_handler(Missing)
    async def _missing(_request: Request, exc: Missing) -> JSONResponse:
        return error_response(404, f"no job {exc.args[0] if exc.args else ''}".strip())

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        status = exc.status_code
        if status == 400 and ("maximum size" in detail or "Too many" in detail):
            status = 413 if "maximum size" in detail else 422
            detail = (f"a multipart field is larger than {app.state.settings.limits.body_bytes}"
                      " bytes" if "maximum size" in detail else f"{detail}: send at most one "
                      "file (style_audio) and 64 fields")
        return error_response(status, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ())]
        return error_response(422, f"{'.'.join(loc)}: {first.get('msg', 'invalid request')}",
                              loc[-1] if loc else None)

    @app.exception_handler(sqlite3.Error)
    @app.exception_handler(OSError)
    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        if disk_full(exc):
            log.warning("%s %s: the data folder is full", request.method, request.url.path)
            if request.method in ("GET", "HEAD"):
                return error_response(503, "the data folder is full; try again later",
                                      headers={"Retry-After": "30"})
            return error_response(507, "the data folder is full: nothing was stored; try "
                                  "again once space is freed", headers={"Retry-After": "30"})
        log.error("%s %s: storage error %s: %s", request.method, request.url.path,
                  type(exc).__name__, exc)
        return error_response(503, "the job store is not available right now; try again",
                              headers={"Retry-After": "5"})


def api_key_from_env(value: str | None, file: str | os.PathLike | None = None) -> str | None:
    """The API key: ``value`` (--api-key), else the first line of ``file`` (--api-key-file,
    else $RHYTHMFLOW_API_KEY_FILE), else $RHYTHMFLOW_API_KEY."""
    if value:
        return value
    file = file or os.environ.get("RHYTHMFLOW_API_KEY_FILE")
    if file:
        text = Path(file).read_text(encoding="utf-8").strip()
        return text.splitlines()[0].strip() if text else None
    return os.environ.get("RHYTHMFLOW_API_KEY") or None
