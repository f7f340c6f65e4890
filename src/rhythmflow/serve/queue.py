"""Huey queues carrying job ids: ``new`` for jobs without a saved state (any worker), and one
queue per runtime class (e.g. ``cpu-float32``) for jobs whose saved sampler state only a worker
of that class can resume.

Huey stores and hands out messages (SQLite file in the data folder by default, Redis for many
machines); the job table, not the queue, says what a job is doing, so a duplicate or stale
message is harmless: :meth:`~rhythmflow.serve.store.Store.claim` takes a job once. Huey deletes
a message when a worker takes it, which is why leases and the reaper exist.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
NEW = "new"
TASK = "rhythmflow.run_job"
Handler = Callable[[str], None]


def queue_name(runtime_class: str | None) -> str:
    """``new`` when no runtime class is bound yet, else the class (letters, digits, _)."""
    return NEW if not runtime_class else re.sub(r"[^A-Za-z0-9]", "_", runtime_class)


class JobQueue:
    """The queues of one service. ``url``: None/``sqlite://`` → ``data_dir/queue.sqlite3``,
    ``redis://…`` → Redis. ``immediate``: run a job inside ``enqueue`` (Huey's immediate mode,
    for tests) through the handler given to :meth:`set_handler`."""

    def __init__(self, url: str | None, data_dir: Path, *, immediate: bool = False) -> None:
        self.url, self.data_dir, self.immediate = url, Path(data_dir), immediate
        self._hueys: dict[str, object] = {}
        self._handler: Handler | None = None

    def set_handler(self, handler: Handler) -> None:
        self._handler = handler

    def _huey(self, name: str):
        if name not in self._hueys:
            self._hueys[name] = huey = self._make(f"rhythmflow_{name}")

            @huey.task(name=TASK)
            def run_job(job_id: str) -> None:
                if self._handler is None:
                    raise RuntimeError("no worker handler in this process")
                self._handler(job_id)

            huey.rhythmflow_task = run_job
        return self._hueys[name]

    def _make(self, name: str):
        if self.immediate:
            from huey import MemoryHuey

            return MemoryHuey(name, immediate=True, results=False)
        if self.url is None or self.url.startswith("sqlite://"):
            from huey import SqliteHuey

            path = self.url.removeprefix("sqlite://") if self.url else None
            filename = Path(path) if path else self.data_dir / "queue.sqlite3"
            filename.parent.mkdir(parents=True, exist_ok=True)
            return SqliteHuey(name, filename=str(filename), results=False)
        from huey import RedisHuey

        return RedisHuey(name, url=self.url, results=False, blocking=False)

    def enqueue(self, job_id: str, runtime_class: str | None = None) -> None:
        """Put a job id on the queue of its runtime class (``new`` when None)."""
        name = queue_name(runtime_class)
        log.debug("enqueue %s on %s", job_id, name)
        self._huey(name).rhythmflow_task(job_id)

    def take(self, runtime_class: str) -> str | None:
        """The next job id for a worker of ``runtime_class``: its own queue first (jobs to
        resume), then ``new``; None when both are empty. The message is gone once taken."""
        for name in (queue_name(runtime_class), NEW):
            task = self._huey(name).dequeue()
            if task is not None:
                if task.name != TASK or len(task.args) != 1:
                    log.warning("ignoring an unknown queue message %s", task.name)
                    continue
                return str(task.args[0])
        return None

    def pending_ids(self, names: list[str | None]) -> set[str]:
        """The job ids waiting on the queues of these runtime classes (None: ``new``)."""
        ids: set[str] = set()
        if self.immediate:
            return ids
        for name in {queue_name(n) for n in [None, *names]}:
            for task in self._huey(name).pending():
                if getattr(task, "name", None) == TASK and len(task.args) == 1:
                    ids.add(str(task.args[0]))
        return ids

    def ping(self) -> None:
        """Raise when the queue cannot be reached (Redis down, the queue file unreadable)."""
        if self.immediate:
            return
        huey = self._huey(NEW)
        conn = getattr(huey.storage, "conn", None)
        if conn is not None and hasattr(conn, "ping"):
            conn.ping()
        else:
            huey.pending_count()

    def depth(self, names: list[str] | None = None) -> dict[str, int]:
        """Messages waiting per queue (``new`` and the given runtime classes)."""
        out = {}
        for name in [NEW, *(queue_name(n) for n in names or [])]:
            out[name] = 0 if self.immediate else int(self._huey(name).pending_count())
        return out
