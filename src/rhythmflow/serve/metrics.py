"""``GET /metrics``: the Prometheus text format (``prometheus_client``), read from the job table
at each scrape, so every process that writes it (the server, its workers, workers on other
machines) is counted and a restart resets nothing.

=====================================  ======================================================
``rhythmflow_jobs{status}``            jobs in the table by status (gauge)
``rhythmflow_queue_depth{queue}``      messages waiting per queue (``new``, runtime classes)
``rhythmflow_workers_alive``           workers that heartbeated within two leases
``rhythmflow_job_seconds``             histogram: a completed attempt, claim to result
``rhythmflow_step_seconds``            histogram: one solver step
``rhythmflow_webhook_deliveries_total`` deliveries ended, by ``status`` (delivered, failed)
``rhythmflow_webhook_attempts_total``  posts, by ``result`` (ok, error)
``rhythmflow_previews_total``          previews decoded
=====================================  ======================================================
"""

from __future__ import annotations

import math
from typing import Any

from rhythmflow.serve.outbox import BUCKETS
from rhythmflow.serve.store import TERMINAL

STATUSES = ("queued", "running", *TERMINAL)


class Collector:
    """A ``prometheus_client`` collector over a store and a queue."""

    def __init__(self, store, queue, settings) -> None:
        self.store, self.queue, self.settings = store, queue, settings

    def collect(self):
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        counts = self.store.counts()
        jobs = GaugeMetricFamily("rhythmflow_jobs", "Jobs in the job table by status",
                                 labels=["status"])
        for status in STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        workers = self.store.workers_alive(within=2 * self.settings.lease)
        yield GaugeMetricFamily("rhythmflow_workers_alive", "Workers that heartbeated within "
                                "two leases", value=len(workers))
        depth = GaugeMetricFamily("rhythmflow_queue_depth", "Messages waiting per queue",
                                  labels=["queue"])
        classes = sorted({w["runtime_class"] for w in workers if w["runtime_class"]})
        try:
            for name, n in self.queue.depth(classes).items():
                depth.add_metric([name], n)
        except Exception:  # an unreachable queue: no depth this scrape (health says why)
            pass
        yield depth
        values = self.store.counters()
        for name, help_text in (("rhythmflow_job_seconds", "Seconds of a completed attempt"),
                                ("rhythmflow_step_seconds", "Seconds of one solver step")):
            yield HistogramMetricFamily(name, help_text, buckets=_buckets(values, name),
                                        sum_value=values.get((name, "_sum"), 0.0))
        for name, label, known, help_text in (
                ("rhythmflow_webhook_deliveries", "status", ("delivered", "failed"),
                 "Webhook deliveries ended"),
                ("rhythmflow_webhook_attempts", "result", ("ok", "error"),
                 "Webhook posts")):
            c = CounterMetricFamily(name, help_text, labels=[label])
            for value in known:
                c.add_metric([value], values.get((f"{name}_total", value), 0.0))
            yield c
        yield CounterMetricFamily("rhythmflow_previews", "Previews decoded",
                                  value=values.get(("rhythmflow_previews_total", ""), 0.0))


def _buckets(values: dict[tuple[str, str], float], name: str) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs from the stored per-bucket counts."""
    out: list[tuple[str, Any]] = []
    total = 0.0
    for bound in (*BUCKETS[name], math.inf):
        total += values.get((name, repr(float(bound))), 0.0)
        out.append(("+Inf" if bound == math.inf else repr(float(bound)), total))
    return out


def exposition(store, queue, settings) -> tuple[bytes, str]:
    """(the text, its content type)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(store, queue, settings))
    return generate_latest(registry), CONTENT_TYPE_LATEST
