"""Service settings: one frozen value built by the command line, read by app, queue and worker."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rhythmflow.errors import UsageError
from rhythmflow.request import MAX_STEPS

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

    def __post_init__(self) -> None:
        if self.queue is not None and not self.queue.startswith(("redis://", "rediss://",
                                                                 "sqlite://")):
            raise UsageError(f"--queue {self.queue}: use redis://HOST:PORT/DB (or leave it out "
                             "for the SQLite queue in --data-dir)")
        if self.heartbeat <= 0 or self.lease <= 2 * self.heartbeat:
            raise UsageError("the lease must be longer than two heartbeats")
        if self.model and self.checkpoint:
            raise UsageError("use either --model or --checkpoint, not both")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK

    @property
    def model_name(self) -> str:
        """The model the workers load: the checkpoint path, the --model name, else "base"."""
        return str(self.checkpoint) if self.checkpoint else (self.model or "base")

    def worker_args(self) -> list[str]:
        """The ``rhythmflow worker`` arguments that load the same weights from the same queue."""
        args = ["--data-dir", str(self.data_dir), "--device", self.device, "--dtype", self.dtype,
                "--quantize", self.quantize, "--vae-dtype", self.vae_dtype,
                "--lease", str(self.lease), "--heartbeat", str(self.heartbeat),
                "--poll", str(self.poll)]
        for flag, value in (("--queue", self.queue), ("--model", self.model),
                            ("--checkpoint", self.checkpoint), ("--vae", self.vae),
                            ("--model-config", self.model_config),
                            ("--assets-dir", self.assets_dir), ("--threads", self.threads)):
            if value is not None:
                args += [flag, str(value)]
        return args + (["--offline"] if self.offline else [])
