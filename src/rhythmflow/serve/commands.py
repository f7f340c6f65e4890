"""What ``rhythmflow serve`` and ``rhythmflow worker`` do with parsed arguments."""

from __future__ import annotations

import argparse
import logging
import signal

from rhythmflow import errors
from rhythmflow.serve.settings import Settings, default_data_dir

log = logging.getLogger(__name__)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """The flags only ``serve`` has that guard the API (for the CLI's ``serve`` parser)."""
    p.add_argument("--api-key", help="key every route but /api/health requires; a flag is "
                   "visible in `ps`: prefer $RHYTHMFLOW_API_KEY or --api-key-file")
    p.add_argument("--api-key-file", help="read the API key from the first line of this file "
                   "(default: $RHYTHMFLOW_API_KEY_FILE, then $RHYTHMFLOW_API_KEY)")
    p.add_argument("--allow-origin", action="append", default=None, metavar="ORIGIN",
                   help="a web origin (https://app.example) allowed to submit, cancel or "
                   "delete jobs besides the server's own page (repeatable; "
                   "$RHYTHMFLOW_ALLOW_ORIGIN: comma-separated)")
    p.add_argument("--allow-host", action="append", default=None, metavar="NAME",
                   help="a host name the server answers to besides its bind address, "
                   "localhost and 127.0.0.1 (repeatable; $RHYTHMFLOW_ALLOW_HOST)")


def _listed(values: list[str] | None, env: str) -> tuple[str, ...]:
    import os

    given = list(values or []) or os.environ.get(env, "").split(",")
    return tuple(v.strip() for v in given if v.strip())


def settings_from_args(args: argparse.Namespace) -> Settings:
    from rhythmflow.serve.app import api_key_from_env

    return Settings(
        allow_origins=_listed(getattr(args, "allow_origin", None), "RHYTHMFLOW_ALLOW_ORIGIN"),
        allow_hosts=_listed(getattr(args, "allow_host", None), "RHYTHMFLOW_ALLOW_HOST"),
        data_dir=args.data_dir or default_data_dir(), host=getattr(args, "host", "127.0.0.1"),
        port=getattr(args, "port", 7860), queue=args.queue,
        api_key=api_key_from_env(getattr(args, "api_key", None),
                                 getattr(args, "api_key_file", None)),
        worker=not getattr(args, "no_worker", True), model=args.model,
        checkpoint=args.checkpoint, model_config=args.model_config, vae=args.vae,
        assets_dir=args.assets_dir, offline=args.offline, device=args.device, dtype=args.dtype,
        quantize=args.quantize, vae_dtype=args.vae_dtype, threads=args.threads,
        lease=args.lease, heartbeat=args.heartbeat, poll=args.poll)


def run_serve(args: argparse.Namespace) -> int:
    """The HTTP server (and, unless --no-worker, one worker subprocess) until SIGINT/SIGTERM."""
    try:
        import uvicorn

        from rhythmflow.serve.app import create_app
    except ImportError as exc:
        raise errors.DependencyError(f"rhythmflow serve needs the serve extra ({exc.name} is "
                                     "missing): pip install 'rhythmflow[serve]'") from None
    settings = settings_from_args(args)
    app = create_app(settings)
    log.info("serving on http://%s:%d (data in %s)", settings.host, settings.port,
             settings.data_dir)
    from rhythmflow.serve.guard import http_protocol

    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                timeout_graceful_shutdown=5, http=http_protocol(), timeout_keep_alive=5)
    return errors.EXIT_OK


def run_worker(args: argparse.Namespace) -> int:
    """Load the model, then take jobs until SIGINT/SIGTERM; the running job's state is saved
    and the job requeued for the next worker."""
    from rhythmflow.serve.queue import JobQueue
    from rhythmflow.serve.store import Store
    from rhythmflow.serve.worker import Worker

    settings = settings_from_args(args)
    worker = Worker(settings, Store(settings.db_path), JobQueue(settings.queue,
                                                                settings.data_dir))

    def stop(signum, _frame) -> None:
        log.warning("%s: stopping the worker (the running job is saved and requeued)",
                    signal.Signals(signum).name)
        worker.stop.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return errors.EXIT_OK
