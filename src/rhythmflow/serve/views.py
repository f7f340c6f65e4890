"""What clients see of a job (``GET /api/jobs/{id}``, the history, a webhook's ``job``) and
where a queued job stands: ``queue_position`` (1 = next) and ``estimated_start`` (seconds from
now), from the plans of the jobs ahead and the speed the workers measured. No server path ever
leaves through here (:func:`~rhythmflow.serve.core.public`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rhythmflow.serve import core


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


def job_view(job: dict[str, Any], settings, position: dict[str, Any] | None = None,
             webhooks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The public JSON of a job row. ``position``: its entry of :func:`positions` (queued
    jobs); ``webhooks``: its deliveries (:meth:`Store.deliveries`)."""
    jid = job["id"]
    request = {k: v for k, v in job["request"].items() if k not in core.SERVER_SIDE}
    attached = core.ServerAttachments.from_dict(job.get("attachments"))
    if attached.style_audio:
        request["style_audio"] = attached.style_audio  # a file name in the job's folder
    opts = job.get("options") or {}
    for name in ("webhook_url", "preview_every"):
        if opts.get(name) is not None:
            request[name] = opts[name]
    if opts.get("webhook_url"):
        request["webhook_events"] = opts.get("webhook_events")
    position = position or {}
    return core.public({
        "id": jid, "status": job["status"],
        "progress": {"step": job["step"], "total_steps": job["total_steps"],
                     "elapsed": job["elapsed"], "eta": job["eta"], "stage": job["stage"]},
        "queue_position": position.get("queue_position"),
        "estimated_start": position.get("estimated_start"),
        "plan": job["plan"], "request": request, "timings": job["timings"],
        "error": job["error"], "attempts": job["attempts"],
        "cancel_requested": bool(job["cancel_requested"]), "resumable": bool(job["has_state"]),
        "owner": job.get("owner"), "priority": job.get("priority", 0),
        "created_at": _iso(job["created_at"]), "updated_at": _iso(job["updated_at"]),
        "started_at": _iso(job.get("started_at")), "finished_at": _iso(job.get("finished_at")),
        "outputs": [{"index": o["index"], "format": o["format"], "seed": o["seed"],
                     "url": f"/api/jobs/{jid}/audio?index={o['index']}",
                     "metadata_url": f"/api/jobs/{jid}/metadata?index={o['index']}"}
                    for o in job["outputs"] or []],
        "webhooks": [{"event": d["event"], "delivery": d["id"], "attempts": d["attempts"],
                      "status": d["status"]} for d in webhooks or []],
    }, settings)


def preview_data(job_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """A stored ``preview`` event as the SSE stream sends it: ``{"step", "url", "seconds"}``
    (and ``"event": "preview"``, as every event's data names its type)."""
    return {"event": "preview", "step": data.get("step"), "url": f"/api/jobs/{job_id}/previews/{data.get('file')}",
            "seconds": data.get("seconds")}


def _planned(plan: dict[str, Any] | None) -> float | None:
    """The seconds a plan expects its job to take once its worker runs it (no model load)."""
    est = (plan or {}).get("estimate") or {}
    if not est.get("seconds_per_eval"):
        return None
    return max(0.0, float(est.get("total", 0.0)) - float(est.get("load", 0.0)))


def _speed(completed: list[dict[str, Any]]) -> tuple[float, float | None]:
    """(measured seconds / planned seconds over the last completed jobs (1 when none), the
    mean measured seconds of a job (None when none))."""
    actual, planned, seen = 0.0, 0.0, []
    for job in completed:
        t = job.get("timings") or {}
        if "total" not in t:
            continue
        took = max(0.0, float(t["total"]) - float(t.get("load", 0.0)))
        seen.append(took)
        p = _planned(job.get("plan"))
        if p:
            actual, planned = actual + took, planned + p
    return (actual / planned if planned > 0 else 1.0), (sum(seen) / len(seen) if seen else None)


def positions(snapshot: dict[str, Any], workers: int) -> dict[str, dict[str, Any]]:
    """``{job id: {"queue_position", "estimated_start"}}`` for every queued job of a
    :meth:`Store.queue_snapshot`, ``workers`` sharing the work. ``estimated_start`` is None
    when nothing is known of any job's duration."""
    factor, mean = _speed(snapshot["completed"])

    def seconds(plan) -> float | None:
        p = _planned(plan)
        return p * factor if p is not None else mean

    busy, known = 0.0, True
    for job in snapshot["running"]:
        left = seconds(job["plan"])
        est = (job["plan"] or {}).get("estimate") or {}
        if job.get("eta") is not None:  # measured by its worker; the decode is still ahead
            left = float(job["eta"]) + float(est.get("decode", 0.0)) * factor
        elif left is not None and job.get("total_steps"):
            left *= 1 - (job.get("step") or 0) / job["total_steps"]
        known &= left is not None
        busy += left or 0.0
    out, ahead = {}, busy
    for i, job in enumerate(snapshot["queued"]):
        out[job["id"]] = {"queue_position": i + 1,
                          "estimated_start": round(ahead / max(1, workers), 1) if known
                          else None}
        took = seconds(job["plan"])
        known &= took is not None
        ahead += took or 0.0
    return out
