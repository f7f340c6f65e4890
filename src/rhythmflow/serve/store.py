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

TERMINAL = ("completed", "failed", "cancelled")
_JSON = ("request", "plan", "timings", "outputs", "attachments")
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
            db.executescript(_SCHEMA)
            columns = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
            if "attachments" not in columns:  # a table made before attachments had a column
                db.execute("ALTER TABLE jobs ADD COLUMN attachments TEXT")
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

    def history(self, limit: int = 20, before: str | None = None) -> list[dict[str, Any]]:
        """Jobs newest first; ``before``: a job id, the page starts after it."""
        with self._tx(write=False) as db:
            if before is None:
                rows = db.execute("SELECT * FROM jobs ORDER BY rowid DESC LIMIT ?", (limit,))
            else:
                rows = db.execute("SELECT * FROM jobs WHERE rowid < (SELECT rowid FROM jobs "
                                  "WHERE id=?) ORDER BY rowid DESC LIMIT ?", (before, limit))
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
               attachments: dict | None = None) -> dict[str, Any]:
        """A queued job: ``request`` holds the client's fields, ``attachments`` what the
        server attached (:class:`~rhythmflow.serve.core.ServerAttachments` as a dict)."""
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT INTO jobs (id, status, request, plan, total_steps, stage, "
                       "attachments, created_at, updated_at) "
                       "VALUES (?, 'queued', ?, ?, ?, 'queued', ?, ?, ?)",
                       (job_id, json.dumps(request), json.dumps(plan), plan.get("steps"),
                        _dumps(attachments or None), now, now))
            _status_event(db, job_id, "queued", now)
        return self.get(job_id)

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
        """Remove the job and its events; a worker running it loses its lease and stops."""
        with self._tx() as db:
            db.execute("DELETE FROM events WHERE job_id=?", (job_id,))
            return db.execute("DELETE FROM jobs WHERE id=?", (job_id,)).rowcount == 1

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
            db.execute("UPDATE jobs SET status='running', stage='starting', "
                       "attempts=attempts+1, lease_owner=?, lease_expires=?, heartbeat_at=?, "
                       "runtime_class=?, error=NULL, updated_at=? WHERE id=?",
                       (owner, now + lease, now, runtime_class, now, job_id))
            _status_event(db, job_id, "running", now, worker=owner)
        return self.get(job_id)

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

    def progress(self, job_id: str, owner: str, event: dict[str, Any], **columns: Any) -> bool:
        """Append ``event`` and set progress ``columns`` (step, total_steps, elapsed, eta, stage,
        has_state) if ``owner`` still holds the lease; False otherwise (nothing written)."""
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
            _event(db, job_id, event.get("event", "event"), event, now)
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
                           "has_state=?, "
                           "lease_owner=NULL, lease_expires=NULL, cancel_requested=0, "
                           "updated_at=? WHERE id=? AND lease_owner=? AND status='running'",
                           (status, status, error, _dumps(outputs), _dumps(timings),
                            _dumps(plan), int(has_state), now, job_id, owner)).rowcount
            if n == 0:
                return False
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
