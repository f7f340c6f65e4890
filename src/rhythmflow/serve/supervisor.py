"""What ``serve`` keeps running beside the HTTP routes, in one background thread:

* its worker subprocess (with ``settings.worker``): started, and started again with a growing
  pause (1 s, 2 s, 4 s … 30 s; back to 1 s after a minute of running) whenever it exits
  without being asked to — SIGKILL, the OOM killer, a crash — with a log line each time;
* the reaper: running jobs whose lease expired go back to the queue, whether or not a worker
  is alive;
* the reconciliation: queued jobs of the table that no queue message names (a message lost
  with a Redis restart, or taken by a worker that died before claiming it) are enqueued again.
  A duplicate message is harmless: a job is claimed once;
* retention (``--keep-days``): finished jobs older than that lose their rows and files;
* the webhook dispatcher (:mod:`rhythmflow.serve.webhooks`), in a thread of its own.

Every step is guarded: a full disk or an unreachable queue is logged and tried again later.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import threading
import time

from rhythmflow.serve.queue import JobQueue
from rhythmflow.serve.settings import Settings
from rhythmflow.serve.store import Store
from rhythmflow.serve.webhooks import Dispatcher

log = logging.getLogger(__name__)
STOP_GRACE = 30.0  # seconds a stopping worker gets to save its state and requeue its job
BACKOFF_MAX = 30.0
STABLE = 60.0  # a worker that ran this long restarts after the shortest pause again


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


def recover(store: Store, queue: JobQueue, before: float | None = None) -> int:
    """Enqueue every queued job (changed before ``before``) that no queue message names;
    returns how many were enqueued."""
    jobs = store.queued(before)
    if not jobs:
        return 0
    waiting = queue.pending_ids(sorted({j["runtime_class"] for j in jobs if j["has_state"]}))
    missing = [j for j in jobs if j["id"] not in waiting]
    for job in missing:
        queue.enqueue(job["id"], job["runtime_class"] if job["has_state"] else None)
    if missing:
        log.warning("%d queued job(s) had no queue message; enqueued again", len(missing))
    return len(missing)


def expire(settings: Settings, store: Store) -> int:
    """Remove the finished jobs older than ``settings.keep_days`` (rows, events, deliveries,
    then their folders); returns how many."""
    if settings.keep_days is None:
        return 0
    ids = store.expire(time.time() - settings.keep_days * 86400.0)
    for job_id in ids:
        shutil.rmtree(settings.jobs_dir / job_id, ignore_errors=True)
    if ids:
        log.info("removed %d job(s) finished more than %g day(s) ago", len(ids),
                 settings.keep_days)
    return len(ids)


def reap(store: Store, queue: JobQueue) -> int:
    """Requeue the running jobs whose lease expired; returns how many."""
    jobs = store.reap()
    for job in jobs:
        log.warning("job %s: its worker stopped heartbeating; requeued", job["id"])
        queue.enqueue(job["id"], job["runtime_class"] if job["has_state"] else None)
    return len(jobs)


class Supervisor:
    """The background thread of ``serve``: ``start()``, then ``close()`` on shutdown."""

    def __init__(self, settings: Settings, store: Store, queue: JobQueue,
                 run_worker: bool | None = None) -> None:
        self.settings, self.store, self.queue = settings, store, queue
        self.run_worker = settings.worker if run_worker is None else run_worker
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._started_at = 0.0
        self._pause = 1.0
        self._next_start = 0.0
        self.webhooks = Dispatcher(settings, store)

    def start(self) -> None:
        self._guarded("recovering queued jobs", recover, self.store, self.queue)
        if self.run_worker:
            self._start_worker()
        self._thread.start()
        self.webhooks.start()

    def close(self) -> None:
        self._stop.set()
        self.webhooks.close()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.proc is not None:
            stop_worker_process(self.proc)

    def _start_worker(self) -> None:
        self.proc = start_worker_process(self.settings)
        self._started_at = time.monotonic()

    def _guarded(self, what: str, fn, *args) -> object:
        try:
            return fn(*args)
        except Exception as exc:  # a full disk, an unreachable queue: logged, tried again later
            log.warning("%s failed (%s: %s); trying again later", what, type(exc).__name__, exc)
            return None

    def _watch_worker(self) -> None:
        now = time.monotonic()
        if self.proc is not None and self.proc.poll() is not None:  # poll() reaps the zombie
            code = self.proc.returncode
            ran = now - self._started_at
            first = ran >= STABLE or self.restarts == 0
            self._pause = 1.0 if first else min(BACKOFF_MAX, self._pause * 2)
            self._next_start = now + self._pause
            self.restarts += 1
            how = (f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}")
            log.warning("the worker (pid %d) died (%s) after %.0f s; restarting it in %.0f s "
                        "(restart %d)", self.proc.pid, how, ran, self._pause, self.restarts)
            self.proc = None
        if self.proc is None and now >= self._next_start:
            self._guarded("starting the worker", self._start_worker)
            if self.proc is None:
                self._next_start = now + BACKOFF_MAX

    def _loop(self) -> None:
        s = self.settings
        next_reap = next_reconcile = next_expire = 0.0
        # retention looks a few times per kept period, at most once a minute
        expire_every = min(60.0, max(0.5, (s.keep_days or 1.0) * 86400.0 / 4))
        while not self._stop.wait(0.25):
            if self.run_worker:
                self._watch_worker()
            now = time.monotonic()
            if now >= next_reap:
                self._guarded("reaping expired leases", reap, self.store, self.queue)
                next_reap = now + s.lease / 2
            if now >= next_reconcile and not self.queue.immediate:
                # jobs queued for a while only: a message just taken is about to be claimed
                self._guarded("reconciling the queue with the job table", recover, self.store,
                              self.queue, time.time() - max(2.0, s.reconcile))
                next_reconcile = now + s.reconcile
            if s.keep_days is not None and now >= next_expire:
                self._guarded("removing old jobs", expire, s, self.store)
                next_expire = now + expire_every
