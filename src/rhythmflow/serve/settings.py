"""Service settings: one frozen value built by the command line, read by app, queue and worker."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rhythmflow.errors import UsageError
from rhythmflow.request import MAX_STEPS
from rhythmflow.serve.keys import ApiKey, admin_key

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def default_data_dir() -> Path:
    """``$RHYTHMFLOW_DATA_DIR``, else ``$XDG_DATA_HOME/rhythmflow``, else
    ``~/.local/share/rhythmflow``."""
    if os.environ.get("RHYTHMFLOW_DATA_DIR"):
        return Path(os.environ["RHYTHMFLOW_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "rhythmflow"


@dataclass(frozen=True)
class Limits:
    """What one request may send (413 beyond the byte sizes, 422 beyond the others)."""

    lrc_bytes: int = 64 * 1024
    lyrics_bytes: int = 64 * 1024
    body_bytes: int = 256 * 1024
    json_depth: int = 16
    audio_bytes: int = 50 * 1024 * 1024
    audio_seconds: float = 600.0
    batch: int = 8
    steps: int = MAX_STEPS  # the request's own bound (a server may lower it)


@dataclass(frozen=True)
class Settings:
    """Everything ``serve`` and ``worker`` are started with.

    queue: None → a Huey SQLite queue in ``data_dir``; ``redis://host:port/db`` → Redis.
    model / checkpoint / vae / assets_dir / offline / device / dtype / quantize / vae_dtype: the
    weights and arithmetic every worker of this service loads (requests cannot choose them).
    lease: seconds a running job stays owned without a heartbeat; heartbeat: seconds between them.
    allow_origins / allow_hosts: the extra ``Origin`` values allowed to change state (POST,
    DELETE) and the extra ``Host`` names answered, beyond the server's own (its bind address,
    ``localhost``, ``127.0.0.1``).
    reconcile: seconds between two reconciliations of the job table with the queue.
    keys: the API keys with their limits (``--keys``); ``api_key`` adds one admin key.
    webhook_allow: the hosts (``host`` or ``host:port``) webhooks may be posted to; none: a job
    with a ``webhook_url`` is refused. webhook_secret: the HMAC-SHA256 key deliveries are signed
    with. webhook_retry_for: seconds a delivery is retried (1, 2, 4 … s apart) before it is
    marked failed. webhook_progress_every: the least seconds between two ``progress`` posts.
    metrics_public: ``/metrics`` without a key. keep_days: finished jobs (rows and files) older
    than this are removed (None: kept). preview_every: the previews of a job that does not say
    (None: as many as fit the worker's budget, a few per cent of the job's time; 0: none).
    asr_command / asr_model: the recogniser of jobs that ask ``check`` or ``repair`` (a program
    template or a local Whisper folder; :func:`rhythmflow.asr.recognizer_for`); neither: such
    jobs are refused. Never a request field.
    """

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 7860
    queue: str | None = None
    api_key: str | None = None
    worker: bool = True
    model: str | None = None
    checkpoint: Path | None = None
    model_config: Path | None = None
    vae: Path | None = None
    assets_dir: Path | None = None
    offline: bool = False
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    vae_dtype: str = "auto"
    threads: int | None = None
    lease: float = 15.0
    heartbeat: float = 2.0
    poll: float = 0.5
    allow_origins: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    reconcile: float = 5.0
    limits: Limits = field(default_factory=Limits)
    keys: tuple[ApiKey, ...] = ()
    webhook_allow: tuple[str, ...] = ()
    webhook_secret: str | None = None
    webhook_retry_for: float = 600.0
    webhook_progress_every: float = 5.0
    metrics_public: bool = False
    keep_days: float | None = None
    preview_every: int | None = None
    asr_command: str | None = None
    asr_model: Path | None = None

    def __post_init__(self) -> None:
        import re

        if self.asr_command is not None and self.asr_model is not None:
            raise UsageError("give one recogniser: --asr-command or --asr-model, not both")
        if self.asr_command is not None:
            from rhythmflow.request import GenerationRequest

            try:  # the template's checks ({wav} present, quotes that split)
                GenerationRequest(asr_command=self.asr_command)
            except UsageError as exc:
                raise UsageError(f"--{exc}".replace("asr_command", "asr-command", 1)) from None
        if self.webhook_allow and not self.webhook_secret:
            raise UsageError("--webhook-allow needs a secret to sign the deliveries with: "
                             "--webhook-secret or $RHYTHMFLOW_WEBHOOK_SECRET")
        for entry in self.webhook_allow:
            if not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]/\s]+)(:\d{1,5})?", entry.strip()):
                raise UsageError(f"--webhook-allow {entry!r}: a host name or IP, optionally "
                                 "with :PORT ([v6]:PORT for IPv6)")
        if self.keep_days is not None and self.keep_days <= 0:
            raise UsageError("--keep-days must be more than 0 (leave it out to keep every job)")
        if self.preview_every is not None and not 0 <= self.preview_every <= 1000:
            raise UsageError("--preview-every: 0 (no previews) to 1000 steps")
        if self.queue is not None and not self.queue.startswith(("redis://", "rediss://",
                                                                 "sqlite://")):
            raise UsageError(f"--queue {self.queue}: use redis://HOST:PORT/DB (or leave it out "
                             "for the SQLite queue in --data-dir)")
        if self.heartbeat <= 0 or self.lease <= 2 * self.heartbeat:
            raise UsageError("the lease must be longer than two heartbeats")
        if self.model and self.checkpoint:
            raise UsageError("use either --model or --checkpoint, not both")

    @property
    def all_keys(self) -> tuple[ApiKey, ...]:
        """``keys`` plus the ``--api-key`` admin key (empty: no key needed)."""
        return self.keys + ((admin_key(self.api_key),) if self.api_key else ())

    @property
    def has_recognizer(self) -> bool:
        """Whether jobs may ask ``check`` / ``repair`` (a recogniser was given)."""
        return self.asr_command is not None or self.asr_model is not None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK

    def weights(self) -> dict[str, Any]:
        """The request fields the service decides — its weights, runtime and recogniser: the
        one statement of what every plan and every worker of this service uses."""
        def text(p: Path | None) -> str | None:
            return None if p is None else str(p)

        model = None if self.checkpoint else self.model or "base"
        return {"model": model, "model_config": text(self.model_config),
                "checkpoint": text(self.checkpoint), "vae": text(self.vae),
                "quantize": self.quantize, "device": self.device, "dtype": self.dtype,
                "vae_dtype": self.vae_dtype, "threads": self.threads, "estimate": False,
                "asr_command": self.asr_command, "asr_model": text(self.asr_model)}

    @property
    def model_name(self) -> str:
        """The model the workers load: the checkpoint path, else the model name."""
        w = self.weights()
        return w["checkpoint"] or w["model"]

    def worker_args(self) -> list[str]:
        """The ``rhythmflow worker`` arguments that load the same weights from the same queue."""
        args = ["--data-dir", str(self.data_dir), "--device", self.device, "--dtype", self.dtype,
                "--quantize", self.quantize, "--vae-dtype", self.vae_dtype,
                "--lease", str(self.lease), "--heartbeat", str(self.heartbeat),
                "--poll", str(self.poll)]
        for flag, value in (("--queue", self.queue), ("--model", self.model),
                            ("--checkpoint", self.checkpoint), ("--vae", self.vae),
                            ("--model-config", self.model_config),
                            ("--assets-dir", self.assets_dir), ("--threads", self.threads),
                            ("--asr-command", self.asr_command), ("--asr-model", self.asr_model)):
            if value is not None:
                args += [flag, str(value)]
        return args + (["--offline"] if self.offline else [])
