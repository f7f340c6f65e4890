"""The server's webhook dispatcher: posts the pending rows of the outbox
(:mod:`rhythmflow.serve.outbox`), signed, and records every attempt on the job.

Each delivery is ``POST <webhook_url>`` with a JSON body ``{"event", "delivery", "timestamp",
"job"}`` (``job``: what ``GET /api/jobs/{id}`` showed when the event happened) and the headers
``X-Rhythmflow-Event: job.<event>``, ``X-Rhythmflow-Delivery: <id>`` (the same on every retry),
``X-Rhythmflow-Timestamp: <unix seconds>`` and ``X-Rhythmflow-Signature: sha256=<hex>``, the
HMAC-SHA256 of ``"<timestamp>.<raw body>"`` with the server's secret. A 2xx answer ends the
delivery; anything else (or no answer in ``TIMEOUT`` seconds) is retried 1, 2, 4, 8 … s later
(at most ``MAX_PAUSE`` apart) while fewer than ``settings.webhook_retry_for`` seconds have passed
since the event; the attempt after that is the last one, then the delivery is marked failed. The rows live in the job table's database, so a
restart resumes the retries; redirects are not followed (the allow-list is the only way out).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from typing import Any

from rhythmflow.serve.settings import Settings
from rhythmflow.serve.store import Store
from rhythmflow.serve.views import job_view

log = logging.getLogger(__name__)
TIMEOUT = 10.0
MAX_PAUSE = 300.0
LEASE = 60.0  # seconds a delivery being posted is this dispatcher's


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 1, 2, 4, 8 … MAX_PAUSE."""
    return min(MAX_PAUSE, 2.0 ** max(0, attempts - 1))


class Dispatcher:
    """A thread of ``serve``: ``start()``, then ``close()``."""

    def __init__(self, settings: Settings, store: Store, every: float = 0.2) -> None:
        self.settings, self.store, self.every = settings, store, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
        self._client = None

    def start(self) -> None:
        if self.settings.webhook_secret:
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=TIMEOUT + 5)
        if self._client is not None:
            self._client.close()

    def _loop(self) -> None:
        import httpx

        self._client = httpx.Client(timeout=TIMEOUT, follow_redirects=False,
                                    headers={"User-Agent": "rhythmflow-webhooks"})
        while not self._stop.wait(self.every):
            try:
                for delivery in self.store.due_deliveries(LEASE):
                    if self._stop.is_set():
                        break
                    self.post(delivery)
            except Exception as exc:  # a locked or full store: tried again next round
                log.warning("webhook round failed (%s: %s)", type(exc).__name__, exc)

    def payload(self, delivery: dict[str, Any]) -> tuple[str, bytes]:
        """(timestamp, body) of one attempt."""
        ts = str(int(time.time()))
        job = job_view(delivery["job"], self.settings,
                       webhooks=self.store.deliveries(delivery["job_id"]))
        body = {"event": f"job.{delivery['event']}", "delivery": delivery["id"],
                "timestamp": int(ts), "job": job}
        return ts, json.dumps(body, separators=(",", ":")).encode()

    def post(self, delivery: dict[str, Any]) -> bool:
        """One attempt; recorded. True when the receiver answered 2xx."""
        import httpx

        ts, body = self.payload(delivery)
        headers = {"Content-Type": "application/json",
                   "X-Rhythmflow-Event": f"job.{delivery['event']}",
                   "X-Rhythmflow-Delivery": delivery["id"], "X-Rhythmflow-Timestamp": ts,
                   "X-Rhythmflow-Signature": sign(self.settings.webhook_secret or "", ts, body)}
        error = None
        try:
            r = self._client.post(delivery["url"], content=body, headers=headers)
            ok = 200 <= r.status_code < 300
            error = None if ok else f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"[:300]
        attempts = delivery["attempts"] + 1
        next_at = None
        if not ok:
            now = time.time()
            if now - delivery["created_at"] < self.settings.webhook_retry_for:
                next_at = now + backoff(attempts)
            log.info("webhook %s (%s of job %s): attempt %d failed (%s)%s", delivery["id"],
                     delivery["event"], delivery["job_id"], attempts, error,
                     "" if next_at else "; giving up")
        self.store.delivered(delivery["id"], ok, error, next_at)
        return ok
