"""The worker: one loaded model, jobs taken one at a time from the queue, never lost.

For each job id taken from the queue the worker claims the job row with a lease
(:meth:`Store.claim`); a heartbeat thread, independent of how long a step takes, extends the
lease and reads the cancel flag. The sampler state is saved after every step (``checkpoint``)
into the job's folder, and a later attempt (after a crash, a lost lease, a cancel + resume or a
shutdown) continues from it bit-identically. A worker that lost its lease (the reaper gave the
job to another worker, or the job was deleted) stops before its next model evaluation and
writes nothing more. The worker knows nothing about HTTP.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from rhythmflow.serve import core
from rhythmflow.serve.queue import JobQueue
from rhythmflow.serve.settings import Settings
from rhythmflow.serve.store import Store, disk_full

log = logging.getLogger(__name__)
BACKOFF_MAX = 30.0  # the longest pause after a failed round (full disk, queue unreachable)


class DiskFull(Exception):
    """The data folder is full: the job went back to the queue; the worker waits."""


class JobToken:
    """The cancel token of one running job (``is_set()`` before every model evaluation): set
    when the job row asks for a cancel, when the lease is lost, or when the worker stops.
    Reads the row at most every ``every`` seconds; the heartbeat thread also sets it."""

    def __init__(self, store: Store, job_id: str, owner: str, stop: threading.Event,
                 every: float = 0.2) -> None:
        self.store, self.job_id, self.owner, self.stop = store, job_id, owner, stop
        self.cancelled, self.lost = threading.Event(), threading.Event()
        self.every, self._checked = every, 0.0

    def update(self, owned: bool, cancel: bool) -> None:
        if not owned:
            self.lost.set()
        if cancel:
            self.cancelled.set()

    def is_set(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= self.every:
            self._checked = now
            row = self.store.get(self.job_id)
            owned = row is not None and row["lease_owner"] == self.owner
            self.update(owned, bool(row and row["cancel_requested"]))
        return self.cancelled.is_set() or self.lost.is_set() or self.stop.is_set()


class Worker:
    """Runs the jobs of one runtime class. ``load()`` loads the model once; ``process(id)`` runs
    one job; ``run(stop)`` loops (take, process, reap) until ``stop`` is set."""

    def __init__(self, settings: Settings, store: Store, queue: JobQueue,
                 worker_id: str | None = None) -> None:
        self.settings, self.store, self.queue = settings, store, queue
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stop = threading.Event()
        self.generator = None
        self.runtime_class = ""
        self.facts: dict[str, Any] = {}
        self._token: JobToken | None = None
        self._beat_thread: threading.Thread | None = None
        self._next_reap = 0.0
        self.preview_cost: float | None = None  # seconds of one preview decode, measured

    # ---- model ------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model and VAE and publish the facts the HTTP side plans with: the
        architecture, the runtime and this machine (free memory, measured GEMM rate)."""
        import dataclasses

        from rhythmflow.machine.process import configure_process
        from rhythmflow.pipeline import SongGenerator
        from rhythmflow.planner.core import Machine, model_dtype, runtime_class, runtime_for

        s = self.settings
        self.store.worker_beat(self.id, pid=os.getpid(), host=socket.gethostname(),
                               model_loaded=0)
        self._start_beats()
        # the machine probe (cached per machine) decides --dtype auto, as for generate
        machine = Machine.detect(threads=s.threads)
        dtype = model_dtype(s.dtype, s.quantize)
        rt = runtime_for(machine, s.device, dtype, s.threads, s.vae_dtype)
        for reason in rt.reasons:
            log.info("%s", reason)
        configure_process(rt.threads)  # the worker is an entry point: threads + malloc tuning
        self.generator = gen = SongGenerator.load(
            s.model_name, rt, config=s.model_config, vae=s.vae, assets_dir=s.assets_dir,
            offline=True if s.offline else None, quantize=s.quantize)
        # the VAE's dtype as loaded: a low-precision decoder its accuracy check refused is float32
        self.runtime_class = runtime_class(rt.kind, rt.dtype,
                                           getattr(gen.vae, "residual_dtype", "float32"),
                                           s.quantize)
        runtime = {k: v for k, v in dataclasses.asdict(rt).items() if k != "reasons"}
        self.facts = {"config": gen.config.to_dict(), "runtime_class": self.runtime_class,
                      "runtime": runtime, "machine": machine.to_dict()}
        from rhythmflow.serve.preview import measure

        try:  # what the default previews are budgeted with (also warms the decoder up)
            self.preview_cost = measure(gen.decode)
        except Exception as exc:  # no previews is better than no worker
            log.warning("measuring a preview decode failed (%s); previews only on request", exc)
        self.store.worker_beat(self.id, runtime_class=self.runtime_class, model=self.facts,
                               model_loaded=1)
        log.info("worker %s ready: %s", self.id, self.runtime_class)

    # ---- heartbeat --------------------------------------------------------------------

    def _start_beats(self) -> None:
        if self._beat_thread is None:
            self._beat_thread = threading.Thread(target=self._beats, name="heartbeat",
                                                 daemon=True)
            self._beat_thread.start()

    def _beats(self) -> None:
        """Every ``heartbeat`` seconds: refresh the worker row and the running job's lease."""
        s = self.settings
        while not self.stop.wait(s.heartbeat):
            try:
                token = self._token
                if token is not None:
                    token.update(*self.store.heartbeat(token.job_id, self.id, s.lease))
                self.store.worker_beat(self.id, current_job=token.job_id if token else None)
            except Exception:  # a locked or briefly unreachable database: try again next beat
                log.exception("heartbeat failed")

    # ---- one job ----------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        return self.settings.jobs_dir / job_id

    def process(self, job_id: str) -> str | None:
        """Claim and run one job; returns its final status, or None when it was not ours to
        run (taken, cancelled, deleted, or its saved state belongs to another runtime class)."""
        if self.generator is None:
            self.load()
        job = self.store.claim(job_id, self.id, self.settings.lease, self.runtime_class)
        if job is None:
            self._reroute(job_id)
            return None
        token = self._token = JobToken(self.store, job_id, self.id, self.stop)
        log.info("job %s: attempt %d", job_id, job["attempts"])
        try:
            return self._run(job, token)
        finally:
            self._token = None

    def process_next(self, hint: str | None = None) -> str | None:
        """Claim and run the job that should run next (priority, then age; see
        :meth:`Store.claim_next`), whichever job id the queue message named (``hint``): a
        message is a turn, the job table says whose. None when no job can run now."""
        if self.generator is None:
            self.load()
        job = self.store.claim_next(self.id, self.settings.lease, self.runtime_class)
        if job is None:
            if hint is not None:
                self._reroute(hint)
            return None
        token = self._token = JobToken(self.store, job["id"], self.id, self.stop)
        log.info("job %s: attempt %d", job["id"], job["attempts"])
        try:
            return self._run(job, token)
        finally:
            self._token = None

    def _reroute(self, job_id: str) -> None:
        row = self.store.get(job_id)
        if row and row["status"] == "queued" and row["has_state"] and \
                row["runtime_class"] not in (None, self.runtime_class):
            log.info("job %s resumes on %s only; put back on its queue", job_id,
                     row["runtime_class"])
            self.queue.enqueue(job_id, row["runtime_class"])

    def _run(self, job: dict[str, Any], token: JobToken) -> str | None:
        from rhythmflow.errors import RhythmflowError, SamplingCancelled

        job_id, folder = job["id"], self.job_dir(job["id"])
        folder.mkdir(parents=True, exist_ok=True)
        checkpoint = folder / "state.pt"
        last = {"step": None, "elapsed": 0.0}

        def on_event(event: Any) -> None:
            d, cols = _event_columns(event)
            seconds = None
            if d["event"] == "sampling_step":
                cols["has_state"] = int(d["step"] < d["total"])
                seconds = (d["elapsed"] - last["elapsed"] if last["step"] == d["step"] - 1
                           else d["sec_per_step"])
                last.update(step=d["step"], elapsed=d["elapsed"])
            if not self.store.progress(job_id, self.id, d, step_seconds=seconds, **cols):
                token.lost.set()

        def record(preview: dict[str, Any]) -> None:
            if not self.store.progress(job_id, self.id, preview):
                token.lost.set()

        def previews(plan):
            from rhythmflow.serve.preview import SECONDS, Previewer

            every = (job.get("options") or {}).get("preview_every")
            if every == 0:
                return None
            fps = plan.frames / plan.duration
            expected = self.preview_cost
            if expected is None and plan.estimate.decode:
                expected = plan.estimate.decode * min(1.0, SECONDS / plan.duration)
            return Previewer(every, folder / "previews", self.generator.decode,
                             self.generator.vae.sample_rate, fps, record, expected)

        def owned() -> bool:
            row = self.store.get(job_id)
            return not token.lost.is_set() and row is not None and row["lease_owner"] == self.id

        try:
            plan, outputs, timings = core.execute(job, self.settings, self.generator, on_event,
                                                  token, checkpoint, folder, still_owned=owned,
                                                  previews=previews)
        except core.LostLease:
            status, kw = None, {}
        except SamplingCancelled:
            if token.lost.is_set():
                status, kw = None, {}
            elif token.cancelled.is_set():
                status, kw = "cancelled", {"has_state": checkpoint.is_file()}
            else:  # the worker is stopping: back on the queue, resumed by the next worker
                status, kw = "queued", {"has_state": checkpoint.is_file()}
        except RhythmflowError as exc:
            if disk_full(exc):
                self._requeue_full(job_id, checkpoint, exc)
            status, kw = "failed", {"error": core.public(str(exc), self.settings),
                                    "has_state": checkpoint.is_file()}
        except Exception as exc:
            if disk_full(exc):
                self._requeue_full(job_id, checkpoint, exc)
            log.exception("job %s failed", job_id)
            error = core.public(f"internal error: {type(exc).__name__}: {exc}", self.settings)
            status, kw = "failed", {"error": error, "has_state": checkpoint.is_file()}
        else:
            status, kw = "completed", {"outputs": outputs, "timings": timings,
                                       "plan": {**{k: v for k, v in plan.to_dict().items()
                                                   if k != "request"}, "provisional": False}}
        if status is None:
            log.warning("job %s: lease lost; stopped without writing", job_id)
            return None
        if not self.store.finish(job_id, self.id, status, **kw):
            log.warning("job %s: lease lost before the result was recorded", job_id)
            return None
        if status == "queued":
            self.queue.enqueue(job_id, self.runtime_class if kw["has_state"] else None)
        if status == "completed":
            checkpoint.unlink(missing_ok=True)
        log.info("job %s: %s", job_id, status)
        return status

    def _requeue_full(self, job_id: str, checkpoint: Path, exc: Exception) -> None:
        """The data folder is full: not the job's fault. Back on the queue (resumed from its
        saved state later); if even that cannot be written, its lease expires and the reaper
        requeues it. Raises DiskFull so the loop waits before the next round."""
        log.warning("job %s: the data folder is full; requeued", job_id)
        has_state = checkpoint.is_file()
        if self.store.finish(job_id, self.id, "queued", has_state=has_state):
            self.queue.enqueue(job_id, self.runtime_class if has_state else None)
        raise DiskFull(str(exc)) from exc

    # ---- the loop ---------------------------------------------------------------------

    def reap(self) -> int:
        """Requeue jobs whose lease expired; returns how many."""
        jobs = self.store.reap()
        for job in jobs:
            log.warning("job %s: its worker stopped heartbeating; requeued", job["id"])
            self.queue.enqueue(job["id"], job["runtime_class"] if job["has_state"] else None)
        return len(jobs)

    def run(self, max_jobs: int | None = None) -> int:
        """Take and run jobs until :attr:`stop` is set (or ``max_jobs`` ran); returns the
        number of jobs run. Reaps stale leases every ``lease / 2`` seconds. A round that fails
        (a full disk, an unreachable queue or store) is logged and retried after a pause that
        grows to ``BACKOFF_MAX`` seconds; nothing is lost meanwhile: a job taken from the queue
        but not claimed stays queued in the table, and ``serve`` enqueues it again."""
        if self.generator is None:
            self.load()
        done, pause = 0, 0.0
        self._next_reap = 0.0
        try:
            while not self.stop.is_set() and (max_jobs is None or done < max_jobs):
                try:
                    ran = self._round()
                except Exception as exc:
                    pause = min(BACKOFF_MAX, max(1.0, 10 * self.settings.poll, 2 * pause))
                    what = "the data folder is full" if disk_full(exc) or isinstance(
                        exc, DiskFull) else f"{type(exc).__name__}: {exc}"
                    log.warning("worker round failed (%s); retrying in %.0f s", what, pause)
                    self.stop.wait(pause)
                    continue
                pause = 0.0
                done += ran
        finally:
            self.stop.set()
            try:
                self.store.worker_gone(self.id)
            except Exception:
                log.warning("could not remove this worker's row (it expires by itself)")
        return done

    def _round(self) -> bool:
        """One turn of the loop: reap when due, take one job id and run it (True when a job
        ran, False when the queue was empty or the job not ours)."""
        if time.monotonic() >= self._next_reap:
            self._next_reap = time.monotonic() + self.settings.lease / 2
            self.reap()
        job_id = self.queue.take(self.runtime_class)
        if job_id is None:
            self.stop.wait(self.settings.poll)
            return False
        return self.process_next(job_id) is not None


def _event_columns(event: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the event as JSON, the job columns it updates)."""
    from rhythmflow import events

    d = events.to_dict(event)
    kind = d["event"]
    if kind == "sampling_step":
        return d, {"step": d["step"], "total_steps": d["total"], "elapsed": d["elapsed"],
                   "eta": d["eta"], "stage": "sample"}
    if kind in ("stage_started", "stage_finished"):
        return d, {"stage": d["stage"]}
    if kind == "decode_chunk":
        return d, {"stage": "decode"}
    return d, {}
