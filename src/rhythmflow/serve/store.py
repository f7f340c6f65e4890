"""The job table: the source of truth for status, progress, leases, history and cancel.

SQLite (stdlib ``sqlite3``) in WAL mode; every call opens its own short connection, so the HTTP
threads, the worker's step loop and its heartbeat thread never share one. Writes that belong to a
running job (progress, events, the final status) are made only by the worker holding the job's
lease (``lease_owner``); a worker whose lease was taken over writes nothing (the call returns
False and it stops). Every status change and progress event is also appended to ``events``, which
Server-Sent Events replay.

Status: queued → running → completed | failed | cancelled; cancelled/failed → queued (resume);
running → queued (the reaper or a worker shutting down; the saved state is resumed).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rhythmflow.serve import outbox

TERMINAL = ("completed", "failed", "cancelled")
_JSON = ("request", "plan", "timings", "outputs", "attachments", "options")
# columns added after the first release (ALTER TABLE on an older table)
_ADDED = {"attachments": "TEXT", "owner": "TEXT", "priority": "INTEGER NOT NULL DEFAULT 0",
          "max_running": "INTEGER", "idem_key": "TEXT", "idem_hash": "TEXT", "options": "TEXT",
          "started_at": "REAL", "finished_at": "REAL", "webhook_progress_at": "REAL"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('queued','running','completed','failed','cancelled')),
    request TEXT NOT NULL, plan TEXT NOT NULL, runtime_class TEXT,
    step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER, elapsed REAL, eta REAL, stage TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, has_state INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT, lease_expires REAL, heartbeat_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT, timings TEXT, outputs TEXT, attachments TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, lease_expires);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, runtime_class TEXT, model TEXT, pid INTEGER, host TEXT,
    model_loaded INTEGER NOT NULL DEFAULT 0, current_job TEXT,
    started_at REAL NOT NULL, heartbeat_at REAL NOT NULL
);
"""


class Conflict(Exception):
    """The job is not in a state that allows this operation (HTTP 409)."""


class Missing(KeyError):
    """No such job (deleted meanwhile): HTTP 404."""


class OverLimit(Exception):
    """The key has ``max_queued`` jobs waiting already (HTTP 429)."""


class IdempotencyConflict(Exception):
    """The same Idempotency-Key came with another body (HTTP 409)."""


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the data folder is full (ENOSPC, SQLite's
    "database or disk is full")."""
    import errno

    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if "no space left" in text or (isinstance(exc, sqlite3.Error) and (
                "full" in text or "disk i/o" in text)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class Store:
    """The job table at ``path`` (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA + outbox.SCHEMA)
            columns = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
            for name, decl in _ADDED.items():  # a table made before the column existed
                if name not in columns:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
            db.execute("CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs "
                       "(COALESCE(owner, ''), idem_key) WHERE idem_key IS NOT NULL")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, priority)")
        finally:
            db.close()
        # held open (idle) for the life of this Store: SQLite deletes the -wal and -shm files
        # when its last connection closes, and a reader on a full disk could not create them
        # again; with this one open, reads keep working when the data folder is full
        self._keeper = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                       check_same_thread=False)
        self._keeper.execute("SELECT COUNT(*) FROM jobs").fetchone()

    def close(self) -> None:
        self._keeper.close()

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One connection, one transaction, committed or rolled back. A write takes the write
        lock at once (``BEGIN IMMEDIATE``); a read (``write=False``) is a deferred snapshot
        that, in WAL mode, never waits for a writer — so the HTTP side keeps answering while a
        worker holds the lock, even one frozen in the middle of a write (SIGSTOP)."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # (SQLite already rolled back a COMMIT that failed)
                    db.execute("ROLLBACK")
                raise
        finally:
            db.close()

    # ---- reading -------------------------------------------------------------------------

    @staticmethod
    def _decode(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        d = dict(row)
        for key in _JSON:
            d[key] = None if d[key] is None else json.loads(d[key])
        return d

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._tx(write=False) as db:
            return self._decode(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def history(self, limit: int = 20, before: str | None = None,
                owner: str | None = None, everyone: bool = True) -> list[dict[str, Any]]:
        """Jobs newest first; ``before``: a job id, the page starts after it; unless
        ``everyone``, only the jobs of ``owner``."""
        mine = "" if everyone else "AND owner IS ? "
        args: tuple = () if everyone else (owner,)
        with self._tx(write=False) as db:
            if before is None:
                rows = db.execute(f"SELECT * FROM jobs WHERE 1 {mine}ORDER BY rowid DESC "
                                  "LIMIT ?", (*args, limit))
            else:
                rows = db.execute(f"SELECT * FROM jobs WHERE rowid < (SELECT rowid FROM jobs "
                                  f"WHERE id=?) {mine}ORDER BY rowid DESC LIMIT ?",
                                  (before, *args, limit))
            return [self._decode(r) for r in rows.fetchall()]

    def counts(self) -> dict[str, int]:
        with self._tx(write=False) as db:
            rows = db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {status: n for status, n in rows}

    def events_after(self, job_id: str, seq: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        """Events of a job with ``seq`` greater than the given one, oldest first."""
        with self._tx(write=False) as db:
            rows = db.execute("SELECT seq, type, data FROM events WHERE job_id=? AND seq>? "
                              "ORDER BY seq LIMIT ?", (job_id, seq, limit)).fetchall()
        return [{"seq": s, "type": t, "data": json.loads(d)} for s, t, d in rows]

    # ---- the HTTP side -------------------------------------------------------------------

    def create(self, job_id: str, request: dict, plan: dict,
               attachments: dict | None = None, **kw: Any) -> dict[str, Any]:
        """A queued job (see :meth:`insert`)."""
        return self.insert(job_id, request, plan, attachments, **kw)[0]

    def insert(self, job_id: str, request: dict, plan: dict, attachments: dict | None = None,
               *, owner: str | None = None, priority: int = 0, max_queued: int | None = None,
               max_running: int | None = None, options: dict | None = None,
               idem: tuple[str, str] | None = None) -> tuple[dict[str, Any], bool]:
        """(the job, True) for a new queued job: ``request`` holds the client's fields,
        ``attachments`` what the server attached (:class:`~rhythmflow.serve.core.
        ServerAttachments` as a dict), ``owner`` the key's name, ``options`` the service
        options. ``idem``: (Idempotency-Key, hash of the body): when ``owner`` already made a
        job with that key, (that job, False) and nothing is inserted, or IdempotencyConflict
        when its body differed. OverLimit when ``owner`` has ``max_queued`` jobs queued."""
        now = time.time()
        with self._tx() as db:
            if idem is not None:
                row = db.execute("SELECT id, idem_hash FROM jobs WHERE owner IS ? AND "
                                 "idem_key=?", (owner, idem[0])).fetchone()
                if row is not None:
                    if row["idem_hash"] != idem[1]:
                        raise IdempotencyConflict(row["id"])
                    return self._decode(db.execute("SELECT * FROM jobs WHERE id=?",
                                                   (row["id"],)).fetchone()), False
            if max_queued is not None:
                n = db.execute("SELECT COUNT(*) FROM jobs WHERE owner IS ? AND "
                               "status='queued'", (owner,)).fetchone()[0]
                if n >= max_queued:
                    raise OverLimit(n)
            db.execute("INSERT INTO jobs (id, status, request, plan, total_steps, stage, "
                       "attachments, owner, priority, max_running, idem_key, idem_hash, "
                       "options, created_at, updated_at) "
                       "VALUES (?, 'queued', ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (job_id, json.dumps(request), json.dumps(plan), plan.get("steps"),
                        _dumps(attachments or None), owner, priority, max_running,
                        idem and idem[0], idem and idem[1], _dumps(options), now, now))
            _status_event(db, job_id, "queued", now)
            return self._decode(db.execute("SELECT * FROM jobs WHERE id=?",
                                           (job_id,)).fetchone()), True

    def find_idempotent(self, owner: str | None, key: str) -> dict[str, Any] | None:
        with self._tx(write=False) as db:
            return self._decode(db.execute("SELECT * FROM jobs WHERE owner IS ? AND "
                                           "idem_key=?", (owner, key)).fetchone())

    def cancel(self, job_id: str) -> dict[str, Any]:
        """A queued job is cancelled now; a running one when its worker next checks (before
        its next model evaluation). A finished job → Conflict."""
        now = time.time()
        with self._tx() as db:
            status = _status_of(db, job_id)
            if status == "queued":
                db.execute("UPDATE jobs SET status='cancelled', stage='cancelled', updated_at=? "
                           "WHERE id=?", (now, job_id))
                _status_event(db, job_id, "cancelled", now)
            elif status == "running":
                db.execute("UPDATE jobs SET cancel_requested=1, updated_at=? WHERE id=?",
                           (now, job_id))
            else:
                raise Conflict(f"job {job_id} is {status}; only a queued or running job can be "
                               "cancelled")
        return self.get(job_id)

    def resume(self, job_id: str) -> dict[str, Any]:
        """A cancelled or failed job goes back to the queue (continuing from its saved state)."""
        now = time.time()
        with self._tx() as db:
            status = _status_of(db, job_id)
            if status not in ("cancelled", "failed"):
                raise Conflict(f"job {job_id} is {status}; only a cancelled or failed job can be "
                               "resumed")
            db.execute("UPDATE jobs SET status='queued', stage='queued', error=NULL, "
                       "cancel_requested=0, updated_at=? WHERE id=?", (now, job_id))
            _status_event(db, job_id, "queued", now)
        return self.get(job_id)

    def delete(self, job_id: str) -> bool:
        """Remove the job, its events and deliveries; a worker running it loses its lease and
        stops."""
        with self._tx() as db:
            return _delete(db, job_id)

    def expire(self, before: float, limit: int = 500) -> list[str]:
        """Remove the finished jobs (rows, events, deliveries) that finished before
        ``before``; returns their ids (the caller removes their files)."""
        with self._tx() as db:
            ids = [r[0] for r in db.execute(
                "SELECT id FROM jobs WHERE status IN ('completed','failed','cancelled') AND "
                "COALESCE(finished_at, updated_at) < ? LIMIT ?", (before, limit)).fetchall()]
            for job_id in ids:
                _delete(db, job_id)
        return ids

    # ---- the worker side -----------------------------------------------------------------

    def claim(self, job_id: str, owner: str, lease: float, runtime_class: str) -> dict | None:
        """Take a queued job: status running, attempts + 1, leased to ``owner`` for ``lease``
        seconds. None when it is not queued (taken, cancelled, deleted) or when its saved state
        belongs to another runtime class (the caller re-routes it)."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT status, runtime_class, has_state FROM jobs WHERE id=?",
                             (job_id,)).fetchone()
            if row is None or row["status"] != "queued":
                return None
            if row["has_state"] and row["runtime_class"] not in (None, runtime_class):
                return None
            _take(db, job_id, owner, lease, runtime_class, now)
        return self.get(job_id)

    def claim_next(self, owner: str, lease: float, runtime_class: str) -> dict | None:
        """Take the queued job that should run next on a worker of ``runtime_class``: the
        highest priority, then the oldest, among the jobs it can run (no saved state of another
        class) whose key is below its ``max_running``; None when there is none."""
        now = time.time()
        with self._tx() as db:
            row = db.execute(_NEXT, (runtime_class,)).fetchone()
            if row is None:
                return None
            _take(db, row[0], owner, lease, runtime_class, now)
        return self.get(row[0])

    def heartbeat(self, job_id: str, owner: str, lease: float) -> tuple[bool, bool]:
        """Extend the lease; (still owned, cancel requested)."""
        now = time.time()
        with self._tx() as db:
            n = db.execute("UPDATE jobs SET heartbeat_at=?, lease_expires=? WHERE id=? AND "
                           "lease_owner=? AND status='running'",
                           (now, now + lease, job_id, owner)).rowcount
            if n == 0:
                return False, False
            flag = db.execute("SELECT cancel_requested FROM jobs WHERE id=?",
                              (job_id,)).fetchone()[0]
        return True, bool(flag)

    def progress(self, job_id: str, owner: str, event: dict[str, Any],
                 step_seconds: float | None = None, **columns: Any) -> bool:
        """Append ``event`` and set progress ``columns`` (step, total_steps, elapsed, eta, stage,
        has_state) if ``owner`` still holds the lease; False otherwise (nothing written).
        ``step_seconds``: the duration of the step the event reports (a metric)."""
        now = time.time()
        allowed = {"step", "total_steps", "elapsed", "eta", "stage", "has_state"}
        assert set(columns) <= allowed, columns
        sets = "".join(f", {k}=?" for k in columns)
        with self._tx() as db:
            n = db.execute(f"UPDATE jobs SET updated_at=?{sets} WHERE id=? AND lease_owner=? "
                           "AND status='running'",
                           (now, *columns.values(), job_id, owner)).rowcount
            if n == 0:
                return False
            kind = event.get("event", "event")
            _event(db, job_id, kind, event, now)
            if kind == "sampling_step":
                outbox.progress(db, job_id, now)
                if step_seconds is not None:
                    outbox.observe(db, "rhythmflow_step_seconds", step_seconds)
            elif kind == "preview":
                outbox.add(db, "rhythmflow_previews_total")
        return True

    def finish(self, job_id: str, owner: str, status: str, *, error: str | None = None,
               outputs: list | None = None, timings: dict | None = None,
               plan: dict | None = None, has_state: bool = False) -> bool:
        """Leave ``running`` for ``status`` (completed/failed/cancelled, or queued when a worker
        shuts down) if ``owner`` holds the lease; False otherwise (nothing written)."""
        now = time.time()
        with self._tx() as db:
            n = db.execute("UPDATE jobs SET status=?, stage=?, error=?, outputs=COALESCE(?, "
                           "outputs), timings=COALESCE(?, timings), plan=COALESCE(?, plan), "
                           "has_state=?, finished_at=?, "
                           "lease_owner=NULL, lease_expires=NULL, cancel_requested=0, "
                           "updated_at=? WHERE id=? AND lease_owner=? AND status='running'",
                           (status, status, error, _dumps(outputs), _dumps(timings),
                            _dumps(plan), int(has_state), now if status in TERMINAL else None,
                            now, job_id, owner)).rowcount
            if n == 0:
                return False
            if status == "completed":
                started = db.execute("SELECT started_at FROM jobs WHERE id=?",
                                     (job_id,)).fetchone()[0]
                if started is not None:
                    outbox.observe(db, "rhythmflow_job_seconds", max(0.0, now - started))
            _status_event(db, job_id, status, now, error=error)
        return True

    def reap(self) -> list[dict[str, Any]]:
        """Requeue every running job whose lease expired (its worker died or hangs); returns
        them, so the caller puts each back on the queue exactly once."""
        now = time.time()
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE status='running' AND "
                                            "lease_expires < ?", (now,)).fetchall()]
            for job_id in ids:
                db.execute("UPDATE jobs SET status='queued', stage='queued', lease_owner=NULL, "
                           "lease_expires=NULL, updated_at=? WHERE id=?", (now, job_id))
                _status_event(db, job_id, "queued", now, reason="lease expired")
        return [self.get(i) for i in ids]

    def queue_snapshot(self) -> dict[str, Any]:
        """What a queue position is computed from: the queued jobs in the order workers take
        them (id, owner, plan), the running ones (eta, plan) and the last completed ones
        (plan, timings)."""
        with self._tx(write=False) as db:
            queued = db.execute("SELECT id, owner, plan FROM jobs WHERE status='queued' "
                                "ORDER BY priority DESC, rowid").fetchall()
            running = db.execute("SELECT id, owner, eta, step, total_steps, plan FROM jobs "
                                 "WHERE status='running'").fetchall()
            done = db.execute("SELECT plan, timings FROM jobs WHERE status='completed' "
                              "ORDER BY finished_at DESC LIMIT 10").fetchall()

        def plan_of(r) -> dict:
            return json.loads(r["plan"]) if r["plan"] else {}

        return {"queued": [{"id": r["id"], "owner": r["owner"], "plan": plan_of(r)}
                           for r in queued],
                "running": [dict(dict(r), plan=plan_of(r)) for r in running],
                "completed": [{"plan": plan_of(r), "timings": json.loads(r["timings"] or "{}")}
                              for r in done]}

    def counters(self) -> dict[tuple[str, str], float]:
        with self._tx(write=False) as db:
            return outbox.counters(db)

    # ---- webhook deliveries (the server's dispatcher) ------------------------------------

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        with self._tx(write=False) as db:
            rows = db.execute("SELECT id, event, attempts, status, last_error FROM deliveries "
                              "WHERE job_id=? ORDER BY created_at, rowid", (job_id,)).fetchall()
        return [dict(r) for r in rows]

    def due_deliveries(self, lease: float, limit: int = 10) -> list[dict[str, Any]]:
        """Pending deliveries whose time has come, each leased to the caller for ``lease``
        seconds (another dispatcher skips them meanwhile; a crash leaves them due again)."""
        now = time.time()
        with self._tx() as db:
            rows = db.execute("SELECT * FROM deliveries WHERE status='pending' AND next_at<=? "
                              "AND (lease_until IS NULL OR lease_until<?) ORDER BY next_at "
                              "LIMIT ?", (now, now, limit)).fetchall()
            for r in rows:
                db.execute("UPDATE deliveries SET lease_until=? WHERE id=?",
                           (now + lease, r["id"]))
        out = []
        for r in rows:
            d = dict(r)
            d["job"] = self._decode(json.loads(d["job"]))
            out.append(d)
        return out

    def delivered(self, delivery_id: str, ok: bool, error: str | None, next_at: float | None
                  ) -> None:
        """Record one attempt: delivered (``ok``), retried at ``next_at``, or failed for good
        (``next_at`` None)."""
        now = time.time()
        status = "delivered" if ok else ("pending" if next_at is not None else "failed")
        with self._tx() as db:
            db.execute("UPDATE deliveries SET attempts=attempts+1, status=?, last_error=?, "
                       "next_at=COALESCE(?, next_at), lease_until=NULL, updated_at=? "
                       "WHERE id=?", (status, error, next_at, now, delivery_id))
            outbox.add(db, "rhythmflow_webhook_attempts_total", "ok" if ok else "error")
            if status != "pending":
                outbox.add(db, "rhythmflow_webhook_deliveries_total", status)

    def queued(self, before: float | None = None) -> list[dict[str, Any]]:
        """Every queued job (id, runtime_class, has_state), oldest first; ``before``: only
        those whose row last changed before this time."""
        with self._tx(write=False) as db:
            rows = db.execute("SELECT id, runtime_class, has_state FROM jobs WHERE "
                              "status='queued' AND updated_at < ? ORDER BY rowid",
                              (float("inf") if before is None else before,)).fetchall()
        return [dict(r) for r in rows]

    # ---- workers -------------------------------------------------------------------------

    def worker_beat(self, worker_id: str, **fields: Any) -> None:
        """Insert or refresh a worker row (runtime_class, model, pid, host, model_loaded,
        current_job)."""
        now = time.time()
        if "model" in fields:
            fields["model"] = json.dumps(fields["model"])
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO workers (id, started_at, heartbeat_at) "
                       "VALUES (?, ?, ?)", (worker_id, now, now))
            sets = "".join(f", {k}=?" for k in fields)
            db.execute(f"UPDATE workers SET heartbeat_at=?{sets} WHERE id=?",
                       (now, *fields.values(), worker_id))

    def worker_gone(self, worker_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM workers WHERE id=?", (worker_id,))

    def workers_alive(self, within: float) -> list[dict[str, Any]]:
        with self._tx(write=False) as db:
            rows = db.execute("SELECT * FROM workers WHERE heartbeat_at > ?",
                              (time.time() - within,)).fetchall()
        out = [dict(r) for r in rows]
        for w in out:
            w["model"] = None if w["model"] is None else json.loads(w["model"])
        return out


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _status_of(db: sqlite3.Connection, job_id: str) -> str:
    row = db.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
    if row is None:
        raise Missing(job_id)
    return row[0]


def _event(db: sqlite3.Connection, job_id: str, kind: str, data: dict, now: float) -> None:
    db.execute("INSERT INTO events (job_id, type, data, at) VALUES (?, ?, ?, ?)",
               (job_id, kind, json.dumps(data), now))


def _status_event(db: sqlite3.Connection, job_id: str, status: str, now: float,
                  **extra: Any) -> None:
    data = {"event": "status", "id": job_id, "status": status,
            **{k: v for k, v in extra.items() if v is not None}}
    _event(db, job_id, "status", data, now)
    outbox.enqueue(db, job_id, status, now)


def _take(db: sqlite3.Connection, job_id: str, owner: str, lease: float, runtime_class: str,
          now: float) -> None:
    db.execute("UPDATE jobs SET status='running', stage='starting', "
               "attempts=attempts+1, lease_owner=?, lease_expires=?, heartbeat_at=?, "
               "runtime_class=?, error=NULL, started_at=?, updated_at=? WHERE id=?",
               (owner, now + lease, now, runtime_class, now, now, job_id))
    _status_event(db, job_id, "running", now, worker=owner)


def _delete(db: sqlite3.Connection, job_id: str) -> bool:
    db.execute("DELETE FROM events WHERE job_id=?", (job_id,))
    db.execute("DELETE FROM deliveries WHERE job_id=?", (job_id,))
    return db.execute("DELETE FROM jobs WHERE id=?", (job_id,)).rowcount == 1


# the next job for a worker of a runtime class: priority, then age; a saved state only on its
# own class; a key at its max_running waits
_NEXT = """
SELECT id FROM jobs AS j WHERE status='queued'
  AND (has_state=0 OR runtime_class IS NULL OR runtime_class=?)
  AND (max_running IS NULL OR (SELECT COUNT(*) FROM jobs AS r WHERE r.status='running'
                               AND r.owner IS j.owner) < j.max_running)
ORDER BY priority DESC, rowid LIMIT 1
"""
