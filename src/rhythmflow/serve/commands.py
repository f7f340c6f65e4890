"""What ``rhythmflow serve`` and ``rhythmflow worker`` do with parsed arguments."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

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
    p.add_argument("--keys", metavar="FILE", help="API keys with limits and priorities (TOML, "
                   "[[keys]] tables; `rhythmflow keys add NAME` prints one)")
    p.add_argument("--webhook-allow", action="append", default=None, metavar="HOST[:PORT]",
                   help="a host a job's webhook_url may point at (repeatable or comma-"
                   "separated; $RHYTHMFLOW_WEBHOOK_ALLOW); without it webhooks are refused")
    p.add_argument("--webhook-secret", help="the key webhook deliveries are signed with "
                   "(HMAC-SHA256; prefer $RHYTHMFLOW_WEBHOOK_SECRET: a flag is visible in `ps`)")
    p.add_argument("--metrics-public", action="store_true", help="serve /metrics without a "
                   "key (default: an admin key when keys are set)")
    p.add_argument("--keep-days", type=float, metavar="N", help="remove finished jobs (rows "
                   "and files) N days after they ended (default: keep every job)")
    p.add_argument("--preview-every", type=int, metavar="STEPS", help="a preview every STEPS "
                   "steps for jobs that do not say (0: none; default: as many as fit in about "
                   "5 %% of the job's time)")


def add_recognizer_arguments(p: argparse.ArgumentParser) -> None:
    """``--asr-command`` / ``--asr-model`` (``serve`` and ``worker``): the recogniser of jobs
    that ask ``check`` or ``repair``; a request can never name one."""
    asr = p.add_mutually_exclusive_group()
    asr.add_argument("--asr-command", metavar="T", help="recogniser program for jobs with "
                     "check/repair, run on each line's 16 kHz mono window; transcript = its "
                     "stdout; placeholders {wav} {start} {end} {line} {lang} (default: none, "
                     "such jobs are refused)")
    asr.add_argument("--asr-model", type=Path, metavar="DIR", help="a local transformers "
                     "Whisper folder as that recogniser")


def add_keys_parser(sub, common) -> None:
    """``rhythmflow keys add NAME``: a new API key for ``serve --keys FILE``."""
    k = sub.add_parser("keys", help="API keys for `serve --keys FILE`")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    a = ksub.add_parser("add", help="print a new key (once) and the [[keys]] entry to paste "
                        "into the keys file")
    a.add_argument("name", help="the key's name (its jobs' owner)")
    a.add_argument("--max-queued", type=int, default=10, help="jobs waiting at once (default 10)")
    a.add_argument("--max-running", type=int, default=1, help="jobs running at once (default 1)")
    a.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    a.add_argument("--admin", action="store_true", help="sees and controls every job")
    common(a)


def run_keys(args: argparse.Namespace) -> int:
    """Print a new key and its TOML entry; only the hash goes into the file."""
    import sys

    from rhythmflow.serve.keys import new_key

    key, entry = new_key(args.name, max_queued=args.max_queued, max_running=args.max_running,
                         priority=args.priority, admin=args.admin)
    sys.stdout.write(f"key (shown once; give it to the client, keep it out of the file):\n"
                     f"{key}\n\n# paste into the --keys file:\n{entry}")
    return errors.EXIT_OK


def _listed(values: list[str] | None, env: str) -> tuple[str, ...]:
    import os

    given = list(values or []) or os.environ.get(env, "").split(",")
    return tuple(v.strip() for v in given if v.strip())


def settings_from_args(args: argparse.Namespace) -> Settings:
    import os

    from rhythmflow.serve.app import api_key_from_env
    from rhythmflow.serve.keys import load_keys

    keys_file = getattr(args, "keys", None)
    serving = hasattr(args, "webhook_allow")  # a worker posts no webhooks and checks no keys
    allow = [h for v in _listed(args.webhook_allow, "RHYTHMFLOW_WEBHOOK_ALLOW")
             for h in v.split(",") if h.strip()] if serving else []
    return Settings(
        keys=load_keys(keys_file) if keys_file else (),
        webhook_allow=tuple(h.strip() for h in allow),
        webhook_secret=(getattr(args, "webhook_secret", None)
                        or os.environ.get("RHYTHMFLOW_WEBHOOK_SECRET") or None) if serving
        else None,
        metrics_public=bool(getattr(args, "metrics_public", False)),
        keep_days=getattr(args, "keep_days", None),
        preview_every=getattr(args, "preview_every", None),
        asr_command=getattr(args, "asr_command", None),
        asr_model=getattr(args, "asr_model", None),
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
