"""Two small tables beside the job table, written in the same transactions as the jobs:

* ``deliveries``, the webhook outbox: a job with a ``webhook_url`` gets one row per event it
  asked for, inserted in the transaction that changes its status (or records its progress), so
  no event is lost and none is invented by a rolled-back change. The server's dispatcher
  (:mod:`rhythmflow.serve.webhooks`) posts them and records every attempt.
* ``counters``: monotonic counters and histogram buckets for ``/metrics`` (webhook results,
  previews, job and step seconds), shared by every process that writes the table.
"""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL, event TEXT NOT NULL, url TEXT NOT NULL,
    job TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending','delivered','failed')),
    attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL, lease_until REAL,
    last_error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
CREATE INDEX IF NOT EXISTS deliveries_job ON deliveries (job_id, created_at);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT NOT NULL, label TEXT NOT NULL DEFAULT '', value REAL NOT NULL,
    PRIMARY KEY (name, label)
);
"""

#: histogram bucket upper bounds (seconds); the last bucket is +Inf
BUCKETS = {
    "rhythmflow_step_seconds": (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    "rhythmflow_job_seconds": (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0),
}


def add(db: sqlite3.Connection, name: str, label: str = "", n: float = 1.0) -> None:
    db.execute("INSERT INTO counters (name, label, value) VALUES (?, ?, ?) ON CONFLICT "
               "(name, label) DO UPDATE SET value=value+excluded.value", (name, label, n))


def observe(db: sqlite3.Connection, name: str, value: float) -> None:
    """One observation of histogram ``name``: its bucket, ``_sum`` and ``_count``."""
    bound = next((b for b in BUCKETS[name] if value <= b), math.inf)
    add(db, name, repr(float(bound)))
    add(db, name, "_sum", value)
    add(db, name, "_count")


def counters(db: sqlite3.Connection) -> dict[tuple[str, str], float]:
    return {(n, lab): v for n, lab, v in db.execute("SELECT name, label, value FROM counters")}


def options_of(row: sqlite3.Row | dict | None) -> dict[str, Any]:
    raw = row["options"] if row is not None else None
    return json.loads(raw) if raw else {}


def enqueue(db: sqlite3.Connection, job_id: str, event: str, now: float,
            row: sqlite3.Row | None = None) -> bool:
    """A pending delivery of ``event`` (queued, running, progress, completed, failed,
    cancelled) when the job asked for it; the job's row as it is now travels with it."""
    row = row or db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
    opts = options_of(row)
    url = opts.get("webhook_url")
    if not url or event not in opts.get("webhook_events", ()):
        return False
    db.execute("INSERT INTO deliveries (id, job_id, event, url, job, next_at, created_at, "
               "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (uuid.uuid4().hex, job_id, event, url, json.dumps(dict(row)), now, now, now))
    return True


def progress(db: sqlite3.Connection, job_id: str, now: float) -> None:
    """A ``progress`` delivery when the job asked for them and the last one is at least its
    ``progress_every`` seconds old."""
    row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
    opts = options_of(row)
    if "progress" not in opts.get("webhook_events", ()) or not opts.get("webhook_url"):
        return
    last = row["webhook_progress_at"]
    if last is not None and now - last < float(opts.get("progress_every", 5.0)):
        return
    db.execute("UPDATE jobs SET webhook_progress_at=? WHERE id=?", (now, job_id))
    enqueue(db, job_id, "progress", now, row)
