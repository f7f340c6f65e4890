"""The HTTP API (JSON; FastAPI documents it at /docs). Every route but /api/health needs the API
key when one is set (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``)."""

from __future__ import annotations

import asyncio
import hmac
import json
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse

from rhythmflow.errors import RhythmflowError
from rhythmflow.serve import core
from rhythmflow.serve.app import ApiError
from rhythmflow.serve.store import TERMINAL, Conflict

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
SSE_MAX_SECONDS = 6 * 3600.0  # one stream never outlives this; the client reconnects
SSE_POLL = 0.1


def require_key(request: Request) -> None:
    key = request.app.state.settings.api_key
    if not key:
        return
    auth = request.headers.get("authorization", "")
    given = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
    if not given or not hmac.compare_digest(given.encode(), key.encode()):
        raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>' or "
                       "'X-API-Key: <key>'")


router = APIRouter(prefix="/api")
authed = [Depends(require_key)]


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    """The public JSON of a job row."""
    jid = job["id"]
    request = dict(job["request"])
    if request.get("style_audio"):
        request["style_audio"] = Path(request["style_audio"]).name  # no server paths out
    return {
        "id": jid, "status": job["status"],
        "progress": {"step": job["step"], "total_steps": job["total_steps"],
                     "elapsed": job["elapsed"], "eta": job["eta"], "stage": job["stage"]},
        "plan": job["plan"], "request": request, "timings": job["timings"],
        "error": job["error"], "attempts": job["attempts"],
        "cancel_requested": bool(job["cancel_requested"]), "resumable": bool(job["has_state"]),
        "created_at": _iso(job["created_at"]), "updated_at": _iso(job["updated_at"]),
        "outputs": [{"index": o["index"], "format": o["format"], "seed": o["seed"],
                     "url": f"/api/jobs/{jid}/audio?index={o['index']}",
                     "metadata_url": f"/api/jobs/{jid}/metadata?index={o['index']}"}
                    for o in job["outputs"] or []],
    }


def _job(request: Request, job_id: str) -> dict[str, Any]:
    job = request.app.state.store.get(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id}")
    return job


def _known(request: Request) -> dict[str, Any] | None:
    s = request.app.state.settings
    return core.facts(s, request.app.state.store.workers_alive(within=2 * s.lease))


# ---- reading a request -------------------------------------------------------------------

TEXT_FIELDS = ("lrc", "lyrics", "style_prompt", "solver", "schedule", "format",
               "sample_format")


def _form_value(name: str, text: str) -> Any:
    """A multipart text field as its JSON value (numbers, booleans, lists); text fields and
    anything that is not JSON stay text; an empty field is left out (None)."""
    if name in TEXT_FIELDS:
        return text
    if text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


async def _save_upload(upload, folder: Path, limits) -> Path:
    """Stream an uploaded style audio file into ``folder``; 413 when too big, 422 when not
    readable audio or too long."""
    suffix = Path(upload.filename or "").suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        raise ApiError(422, f"style_audio must be one of {', '.join(AUDIO_SUFFIXES)} (got "
                       f"{upload.filename!r})", field="style_audio")
    folder.mkdir(parents=True, exist_ok=True)
    path, size = folder / f"style_audio{suffix}", 0
    with open(path, "wb") as fh:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > limits.audio_bytes:
                raise ApiError(413, f"style_audio is larger than {limits.audio_bytes} bytes",
                               field="style_audio")
            fh.write(chunk)
    try:
        import soundfile

        seconds = soundfile.info(str(path)).duration
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise ApiError(422, f"style_audio is not readable audio: {exc}",
                       field="style_audio") from None
    if seconds > limits.audio_seconds:
        raise ApiError(422, f"style_audio is {seconds:.0f} s long; at most "
                       f"{limits.audio_seconds:.0f} s", field="style_audio")
    return path


async def _read_request(request: Request, folder: Path) -> dict[str, Any]:
    """The body as a dict: JSON, or multipart (a ``request`` JSON field or one field per
    request field, plus an optional ``style_audio`` file saved into ``folder``)."""
    limits = request.app.state.settings.limits
    length = int(request.headers.get("content-length") or 0)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        if length > limits.audio_bytes + limits.body_bytes:
            raise ApiError(413, f"the upload is larger than {limits.audio_bytes} bytes")
        form = await request.form(max_files=1, max_fields=64)
        body: dict[str, Any] = {}
        for name, value in form.multi_items():
            if hasattr(value, "read"):
                if name != "style_audio":
                    raise ApiError(422, f"unexpected file field '{name}'", field=name)
                path = await _save_upload(value, folder, limits)
                # relative to the data folder, which workers may mount elsewhere
                body["_style_audio"] = str(path.relative_to(request.app.state.settings.data_dir))
            elif name == "request":
                body.update(_json(value))
            elif (v := _form_value(name, value)) is not None:
                body[name] = v
        return body
    if length > limits.body_bytes:
        raise ApiError(413, f"the request body is larger than {limits.body_bytes} bytes")
    raw = await request.body()
    if len(raw) > limits.body_bytes:
        raise ApiError(413, f"the request body is larger than {limits.body_bytes} bytes")
    return _json(raw or b"{}")


def _json(raw: str | bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(422, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(422, "the request must be a JSON object")
    return body


def _validate(request: Request, body: dict[str, Any]) -> tuple[dict, dict]:
    try:
        return core.validate(body, request.app.state.settings, _known(request))
    except core.RequestError as exc:
        raise ApiError(413 if exc.too_large else 422, str(exc), exc.field, exc.line) from None
    except RhythmflowError as exc:  # a bad field or LRC line, ResourceError (cannot fit) …
        raise ApiError(422, str(exc), exc.field, exc.line) from None


# ---- routes ------------------------------------------------------------------------------

@router.post("/jobs", status_code=201, dependencies=authed, summary="Submit a job")
async def submit(request: Request) -> dict[str, Any]:
    """Body: a generation request as JSON (``lrc``, ``style_prompt`` | ``style_embedding``,
    ``steps``, ``cfg_strength``, ``seed``, ``duration``, ``batch``, ``format`` …), or multipart
    with a ``style_audio`` file. Validated and planned before anything is queued:
    422/413 ``{"error": {"message", "field", "line"}}``, nothing queued."""
    app = request.app
    job_id = uuid.uuid4().hex
    folder = app.state.settings.jobs_dir / job_id
    try:
        body = await _read_request(request, folder)
        req, plan = await run_in_threadpool(_validate, request, body)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    await run_in_threadpool(app.state.store.create, job_id, req, plan)
    await run_in_threadpool(app.state.queue.enqueue, job_id, None)
    return {"id": job_id, "status": "queued", "plan": plan}


@router.post("/validate", dependencies=authed, summary="Validate and plan without queueing")
async def validate(request: Request) -> dict[str, Any]:
    """The same body as ``POST /api/jobs``; 200 ``{"plan": …}`` (with the time estimate when a
    worker has measured one) or the same 422 answer. Nothing is stored."""
    folder = request.app.state.settings.data_dir / "tmp" / uuid.uuid4().hex
    try:
        body = await _read_request(request, folder)
        _, plan = await run_in_threadpool(_validate, request, body)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"plan": plan}


@router.get("/jobs", dependencies=authed, summary="History, newest first")
def history(request: Request, limit: int = Query(20, ge=1, le=100),
            before: str | None = None) -> dict[str, Any]:
    jobs = request.app.state.store.history(limit, before)
    return {"jobs": [job_view(j) for j in jobs],
            "next": jobs[-1]["id"] if len(jobs) == limit else None}


@router.get("/jobs/{job_id}", dependencies=authed, summary="Status, progress, plan, outputs")
def get_job(request: Request, job_id: str) -> dict[str, Any]:
    return job_view(_job(request, job_id))


@router.post("/jobs/{job_id}/cancel", dependencies=authed, summary="Cancel (state kept)")
def cancel(request: Request, job_id: str) -> dict[str, Any]:
    _job(request, job_id)
    try:
        return job_view(request.app.state.store.cancel(job_id))
    except Conflict as exc:
        raise ApiError(409, str(exc)) from None


@router.post("/jobs/{job_id}/resume", dependencies=authed, summary="Continue a cancelled job")
def resume(request: Request, job_id: str) -> dict[str, Any]:
    _job(request, job_id)
    try:
        job = request.app.state.store.resume(job_id)
    except Conflict as exc:
        raise ApiError(409, str(exc)) from None
    request.app.state.queue.enqueue(job_id, job["runtime_class"] if job["has_state"] else None)
    return job_view(request.app.state.store.get(job_id))


@router.delete("/jobs/{job_id}", status_code=204, dependencies=authed, summary="Delete a job")
def delete(request: Request, job_id: str) -> Response:
    _job(request, job_id)
    request.app.state.store.delete(job_id)
    shutil.rmtree(request.app.state.settings.jobs_dir / job_id, ignore_errors=True)
    return Response(status_code=204)


def _output_file(request: Request, job_id: str, index: int) -> tuple[Path, dict]:
    job = _job(request, job_id)
    if job["status"] != "completed":
        raise ApiError(409, f"job {job_id} is {job['status']}; its audio exists once completed")
    outputs = {o["index"]: o for o in job["outputs"] or []}
    if index not in outputs:
        raise ApiError(404, f"job {job_id} has outputs {sorted(outputs)}, not index {index}",
                       field="index")
    path = core.safe_child(request.app.state.settings.jobs_dir / job_id, outputs[index]["file"])
    if not path.is_file():
        raise ApiError(404, f"the audio of job {job_id} is gone from the data folder")
    return path, outputs[index]


@router.get("/jobs/{job_id}/audio", dependencies=authed, summary="The song (wav/flac/mp3)")
def audio(request: Request, job_id: str, index: int = Query(0, ge=0)) -> FileResponse:
    path, out = _output_file(request, job_id, index)
    return FileResponse(path, media_type=core.FORMATS[out["format"]],
                        filename=f"{job_id}_{index}.{out['format']}")


@router.get("/jobs/{job_id}/metadata", dependencies=authed, summary="The sidecar JSON")
def metadata(request: Request, job_id: str, index: int = Query(0, ge=0)) -> FileResponse:
    path, _ = _output_file(request, job_id, index)
    return FileResponse(path.with_suffix(".json"), media_type="application/json")


@router.get("/jobs/{job_id}/events", dependencies=authed, summary="Server-Sent Events")
async def events(request: Request, job_id: str) -> StreamingResponse:
    """The job's events (the ``--progress json`` vocabulary of :mod:`rhythmflow.events`:
    stage_started, stage_finished, sampling_step, decode_chunk, warning, result; plus
    ``status`` for the job's lifecycle), replayed from the start (or after ``Last-Event-ID``) then live; the stream
    ends after a final status (completed, failed, cancelled)."""
    store = request.app.state.store
    _job(request, job_id)
    last = int(request.headers.get("last-event-id") or 0)

    async def stream():
        nonlocal last
        deadline = time.monotonic() + SSE_MAX_SECONDS
        yield ": rhythmflow events\n\n"
        final = False
        while time.monotonic() < deadline and not await request.is_disconnected():
            batch = await run_in_threadpool(store.events_after, job_id, last)
            for ev in batch:
                last = ev["seq"]
                yield f"id: {ev['seq']}\nevent: {ev['type']}\ndata: {json.dumps(ev['data'])}\n\n"
            if final:  # the events written before the job turned final have been sent
                return
            if not batch:
                job = await run_in_threadpool(store.get, job_id)
                if job is None or job["status"] in TERMINAL:
                    final = True  # read once more: its last events may have landed meanwhile
                    continue
                await asyncio.sleep(SSE_POLL)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/health", summary="Queue depth, workers alive, model loaded (no key needed)")
def health(request: Request) -> dict[str, Any]:
    app = request.app
    workers = app.state.store.workers_alive(within=2 * app.state.settings.lease)
    classes = sorted({w["runtime_class"] for w in workers if w["runtime_class"]})
    return {"status": "ok", "jobs": app.state.store.counts(),
            "queue": app.state.queue.depth(classes),
            "workers_alive": len(workers),
            "model_loaded": any(w["model_loaded"] for w in workers),
            "workers": [{"id": w["id"], "runtime_class": w["runtime_class"],
                         "model_loaded": bool(w["model_loaded"]),
                         "current_job": w["current_job"]} for w in workers]}
