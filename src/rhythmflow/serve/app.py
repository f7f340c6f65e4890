"""The HTTP process: ``create_app(settings)`` builds the FastAPI app (API under ``/api``, the
page at ``/``). It validates and stores requests and streams events; it never imports torch.
With ``settings.worker`` its lifespan starts one ``rhythmflow worker`` subprocess and stops it
on shutdown (Ctrl-C / SIGTERM), so nothing is left running.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from rhythmflow.serve.queue import JobQueue
from rhythmflow.serve.settings import Settings
from rhythmflow.serve.store import Store

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
STOP_GRACE = 30.0  # seconds a stopping worker gets to save its state and requeue its job


class ApiError(Exception):
    """An answer ``{"error": {"message", "field", "line"}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 line: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.line = status, message, field, line


def error_response(status: int, message: str, field: str | None = None,
                   line: int | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "field": field, "line": line}},
                        status_code=status)


def _die_with_parent() -> None:  # runs in the child before exec (Linux): no orphan worker
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_worker_process(settings: Settings) -> subprocess.Popen:
    """``python -m rhythmflow worker`` with the service's settings; it dies with this process."""
    cmd = [sys.executable, "-m", "rhythmflow", "worker", *settings.worker_args()]
    log.info("starting the worker: %s", " ".join(cmd))
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    return subprocess.Popen(cmd, preexec_fn=preexec)  # noqa: PLW1509 (no threads yet)


def stop_worker_process(proc: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """SIGTERM (the worker saves its state and requeues its job), then SIGKILL after ``grace``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("the worker did not stop within %.0f s; killing it", grace)
            proc.kill()
            proc.wait(timeout=10)


def create_app(settings: Settings, *, queue: JobQueue | None = None,
               store: Store | None = None) -> FastAPI:
    """The service. ``queue``/``store`` default to the ones ``settings`` name (tests pass an
    immediate-mode queue)."""
    from rhythmflow.serve.routes import router

    store = store or Store(settings.db_path)
    queue = queue or JobQueue(settings.queue, settings.data_dir)
    if not settings.loopback and not settings.api_key:
        log.warning("WARNING: serving on %s without an API key: anyone who can reach this "
                    "address can submit jobs; set --api-key or RHYTHMFLOW_API_KEY",
                    settings.host)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        recover(store, queue)
        proc = start_worker_process(settings) if settings.worker else None
        app.state.worker_process = proc
        try:
            yield
        finally:
            if proc is not None:
                import anyio

                await anyio.to_thread.run_sync(stop_worker_process, proc)

    app = FastAPI(title="rhythmflow", summary="DiffRhythm song generation: jobs, progress, "
                  "audio", lifespan=lifespan)
    app.state.settings, app.state.store, app.state.queue = settings, store, queue

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.field, exc.line)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ())]
        return error_response(422, f"{'.'.join(loc)}: {first.get('msg', 'invalid request')}",
                              loc[-1] if loc else None)

    app.include_router(router)
    if (STATIC / "index.html").is_file():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app


def recover(store: Store, queue: JobQueue) -> int:
    """Put every queued job on the queue again (at start-up): a message taken by a worker that
    died before claiming its job would otherwise be lost. A duplicate message is harmless (a
    job is claimed once); returns how many were enqueued."""
    jobs = store.queued()
    for job in jobs:
        queue.enqueue(job["id"], job["runtime_class"] if job["has_state"] else None)
    if jobs:
        log.info("%d queued job(s) put back on the queue", len(jobs))
    return len(jobs)


def api_key_from_env(value: str | None) -> str | None:
    return value if value is not None else os.environ.get("RHYTHMFLOW_API_KEY") or None
