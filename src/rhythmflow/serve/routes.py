"""The HTTP API (JSON; FastAPI documents it at /docs). Every route but /api/health needs an API
key when one is set (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``): a key sees and
controls its own jobs (an admin key all of them); /api/health answers status and counts to
anyone, /metrics to an admin key (or anyone with ``--metrics-public``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse

from rhythmflow.errors import RhythmflowError
from rhythmflow.serve import core, options
from rhythmflow.serve.apierror import ApiError
from rhythmflow.serve.keys import ANONYMOUS, ApiKey, identify
from rhythmflow.serve.store import (
    TERMINAL,
    Conflict,
    IdempotencyConflict,
    OverLimit,
    disk_full,
)
from rhythmflow.serve.views import job_view, positions, preview_data

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
SSE_MAX_SECONDS = 6 * 3600.0  # one stream never outlives this; the client reconnects
SSE_POLL = 0.1
SSE_POSITION_EVERY = 1.0  # seconds between two looks at a queued job's place
PREVIEW_NAME = re.compile(r"step-\d{4,6}\.ogg")


class RetryLater(ApiError):
    """An ApiError answered with ``Retry-After`` (429: a key's limit)."""

    def __init__(self, status: int, message: str, retry_after: int) -> None:
        super().__init__(status, message)
        self.retry_after = retry_after


def caller(request: Request) -> ApiKey | None:
    """The key the request carries (:data:`ANONYMOUS` when the server has none), or None."""
    keys = request.app.state.settings.all_keys
    if not keys:
        return ANONYMOUS
    auth = request.headers.get("authorization", "")
    given = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
    return identify(keys, given)


def has_key(request: Request) -> bool:
    """Whether the request carries a valid API key (True when the server has none)."""
    return caller(request) is not None


def require_key(request: Request) -> ApiKey:
    key = caller(request)
    if key is None:
        raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>' or "
                       "'X-API-Key: <key>'")
    request.state.key = key
    return key


router = APIRouter(prefix="/api")
top = APIRouter()  # outside /api: /metrics
authed = [Depends(require_key)]


def _owner(key: ApiKey) -> str | None:
    """The ``owner`` a key's jobs carry (None: a server without keys)."""
    return None if key is ANONYMOUS else key.name


def _job(request: Request, job_id: str) -> dict[str, Any]:
    """The job row; 404 when there is none or it belongs to another key (not an admin)."""
    job = request.app.state.store.get(job_id) if len(job_id) <= 64 else None
    key = getattr(request.state, "key", None) or require_key(request)
    if job is None or not (key.admin or job.get("owner") == _owner(key)):
        raise ApiError(404, f"no job {job_id}")
    return job


def _positions(request: Request) -> dict[str, dict[str, Any]]:
    s = request.app.state.settings
    store = request.app.state.store
    workers = [w for w in store.workers_alive(within=2 * s.lease) if w["model_loaded"]]
    return positions(store.queue_snapshot(), len(workers))


def _view(request: Request, job: dict[str, Any]) -> dict[str, Any]:
    """A job as GET answers it: with its queue place, its webhook deliveries and its
    ``result`` (the lines as sung, their check, the repair, the takes)."""
    from rhythmflow.serve.review import decorate

    store = request.app.state.store
    pos = _positions(request).get(job["id"]) if job["status"] == "queued" else None
    hooks = store.deliveries(job["id"]) if (job.get("options") or {}).get("webhook_url") \
        else None
    return decorate(job_view(job, request.app.state.settings, pos, hooks), job)


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
        why = str(exc).replace(str(path), path.name)  # no server path in the answer
        raise ApiError(422, f"style_audio is not readable audio: {why}",
                       field="style_audio") from None
    if seconds > limits.audio_seconds:
        raise ApiError(422, f"style_audio is {seconds:.0f} s long; at most "
                       f"{limits.audio_seconds:.0f} s", field="style_audio")
    return path


async def _read_request(request: Request, folder: Path
                        ) -> tuple[dict[str, Any], core.ServerAttachments]:
    """(the client's fields, what the server attached): JSON, or multipart (a ``request`` JSON
    field or one field per request field, plus an optional ``style_audio`` file saved into
    ``folder``); any other Content-Type → 415. The guard counts the bytes as they come."""
    limits = request.app.state.settings.limits
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        return _json(await request.body()), core.ServerAttachments()
    if media != "multipart/form-data":
        raise ApiError(415, "send the request as application/json (or multipart/form-data with "
                       f"a style_audio file), not {media[:60] or 'no Content-Type'}")
    form = await request.form(max_files=1, max_fields=64, max_part_size=limits.body_bytes)
    body: dict[str, Any] = {}
    attached = core.ServerAttachments()
    for name, value in form.multi_items():
        if hasattr(value, "read"):
            if name != "style_audio":
                raise ApiError(422, f"unexpected file field '{_shown(name)}'", field=_shown(name))
            path = await _save_upload(value, folder, limits)
            attached = core.ServerAttachments(style_audio=path.name)
        elif name == "request":
            body.update(_json(value))
        elif (v := _form_value(name, value)) is not None:
            body[name] = v
    return body, attached


def _shown(name: str) -> str:
    return name.encode("unicode_escape").decode("ascii")[:64]


def _json(raw: str | bytes) -> dict[str, Any]:
    if not raw:
        raise ApiError(422, "the body is empty: send the request as a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(422, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(422, "the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(422, "the request must be a JSON object")
    return body


def _reference(request: Request, body: dict[str, Any], attached: core.ServerAttachments,
               folder: Path) -> tuple[dict, core.ServerAttachments]:
    """``ref_job`` (a finished job this key can see) attached as the edit reference; 422
    naming ``ref_job`` otherwise (:func:`core.attach_reference`)."""
    def find(job_id: str) -> dict[str, Any] | None:
        try:
            return _job(request, job_id)
        except ApiError:
            return None

    try:
        return core.attach_reference(body, attached, folder, find,
                                     request.app.state.settings.jobs_dir)
    except core.RequestError as exc:
        raise ApiError(422, str(exc), exc.field, None, exc.errors) from None


def _validate(request: Request, body: dict[str, Any], attached: core.ServerAttachments,
              folder: Path) -> tuple[dict, dict]:
    settings = request.app.state.settings
    try:
        return core.validate(body, settings, _known(request), attached, folder)
    except core.RequestError as exc:  # every problem found: "errors" lists them
        raise ApiError(413 if exc.too_large else 422, core.public(str(exc), settings),
                       exc.field, exc.line, core.public(exc.errors, settings)) from None
    except RhythmflowError as exc:  # a plan's refusal (ResourceError: cannot fit …): one
        message = core.public(str(exc), settings)
        raise ApiError(422, message, exc.field, exc.line, [
            {"field": exc.field, "message": message, "line": exc.line}]) from None
    except RecursionError:
        raise ApiError(422, "the request is nested too deeply") from None


# ---- routes ------------------------------------------------------------------------------

@router.post("/jobs", status_code=201, dependencies=authed, summary="Submit a job")
async def submit(request: Request, response: Response) -> dict[str, Any]:
    """Body: a generation request as JSON (``lrc``, ``style_prompt`` | ``style_embedding``,
    ``steps``, ``cfg_strength``, ``seed``, ``duration``, ``batch``, ``format`` …), or multipart
    with a ``style_audio`` file. Validated and planned before anything is queued:
    422/413 ``{"error": {"message", "field", "line", "errors"}}`` (``errors``: every problem
    found, each ``{"field", "message", "line"}``), nothing queued. Service options beside the
    request: ``webhook_url``, ``webhook_events``, ``preview_every``. ``Idempotency-Key``: the
    first submit answers 201, a repeat with the same body 200 with the same job, another body
    409. 429 with ``Retry-After`` when the key has ``max_queued`` jobs waiting."""
    app = request.app
    key: ApiKey = request.state.key
    idem = _idempotency_key(request)
    job_id = uuid.uuid4().hex
    folder = app.state.settings.jobs_dir / job_id
    try:
        body, attached = await _read_request(request, folder)
        fingerprint = _fingerprint(body, attached.style_audio_path(folder)) if idem else ""
        if idem is not None:
            seen = await run_in_threadpool(app.state.store.find_idempotent, _owner(key), idem)
            if seen is not None:
                shutil.rmtree(folder, ignore_errors=True)
                return _repeat(seen, fingerprint, response)
        body, opts = _options(request, body)
        body, attached = await run_in_threadpool(_reference, request, body, attached, folder)
        req, plan = await run_in_threadpool(_validate, request, body, attached, folder)
        job, created = await run_in_threadpool(_insert, app, key, job_id, req, plan, attached,
                                               opts, (idem, fingerprint) if idem else None)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if not created:  # a concurrent submit with the same key was first
        shutil.rmtree(folder, ignore_errors=True)
        return _repeat(job, fingerprint, response)
    try:
        await run_in_threadpool(app.state.queue.enqueue, job_id, None)
    except Exception as exc:
        await run_in_threadpool(_withdraw, app, job_id, exc)
    return {"id": job_id, "status": "queued", "plan": plan}


def _options(request: Request, body: dict[str, Any]) -> tuple[dict, options.JobOptions]:
    """(the body without the service options, the options) or 422 naming the field."""
    try:
        return options.split(body, request.app.state.settings)
    except options.OptionError as exc:
        raise ApiError(422, str(exc), exc.field, None, [
            {"field": exc.field, "message": str(exc), "line": None}]) from None


def _idempotency_key(request: Request) -> str | None:
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    value = value.strip()
    if not (1 <= len(value) <= 255 and value.isascii() and value.isprintable()):
        raise ApiError(422, "Idempotency-Key: 1 to 255 printable ASCII characters",
                       field="Idempotency-Key")
    return value


def _fingerprint(body: dict[str, Any], upload: Path | None) -> str:
    """The body as parsed JSON (key order and spacing do not matter) + the upload's bytes."""
    h = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=True).encode())
    if upload is not None and upload.is_file():
        with open(upload, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _repeat(job: dict[str, Any], fingerprint: str, response: Response) -> dict[str, Any]:
    """The answer to a repeated Idempotency-Key: 200 with the job, or 409 for another body."""
    if job.get("idem_hash") != fingerprint:
        raise ApiError(409, "Idempotency-Key: this key was used with another body (job "
                       f"{job['id']}); use a new key for a new job", field="Idempotency-Key")
    response.status_code = 200
    return {"id": job["id"], "status": job["status"], "plan": job["plan"]}


def _insert(app, key: ApiKey, job_id: str, req: dict, plan: dict,
            attached: core.ServerAttachments, opts: options.JobOptions,
            idem: tuple[str, str] | None) -> tuple[dict[str, Any], bool]:
    try:
        return app.state.store.insert(
            job_id, req, plan, attached.to_dict(), owner=_owner(key), priority=key.priority,
            max_queued=key.max_queued, max_running=key.max_running, options=opts.to_dict(),
            idem=idem)
    except IdempotencyConflict as exc:
        raise ApiError(409, "Idempotency-Key: this key was used with another body (job "
                       f"{exc.args[0]}); use a new key for a new job",
                       field="Idempotency-Key") from None
    except OverLimit:
        wait = _retry_after(app, key)
        raise RetryLater(429, f"the key {key.name} has {key.max_queued} job(s) waiting, its "
                         f"max_queued; try again in about {wait} s", wait) from None


def _retry_after(app, key: ApiKey) -> int:
    """Seconds until the key's first waiting job is expected to start (1 … 3600; 10 when
    nothing is known)."""
    store, s = app.state.store, app.state.settings
    snap = store.queue_snapshot()
    workers = [w for w in store.workers_alive(within=2 * s.lease) if w["model_loaded"]]
    pos = positions(snap, len(workers))
    mine = [pos[j["id"]]["estimated_start"] for j in snap["queued"]
            if j["owner"] == _owner(key) and pos[j["id"]]["estimated_start"] is not None]
    return int(min(3600, max(1, math.ceil(min(mine))))) if mine else 10


def _withdraw(app, job_id: str, exc: Exception) -> None:
    """The queue refused the job: remove its row (the client gets no id, nothing is left). If
    even that fails, the job stays queued and the reconciliation enqueues it: the id is
    answered, and the job will run."""
    log.warning("job %s: the queue refused it (%s: %s)", job_id, type(exc).__name__, exc)
    try:
        app.state.store.delete(job_id)
    except Exception:
        log.warning("job %s stays queued; the reconciliation will enqueue it", job_id)
        return
    shutil.rmtree(app.state.settings.jobs_dir / job_id, ignore_errors=True)
    if disk_full(exc):
        raise ApiError(507, "the data folder is full: nothing was stored; try again once "
                       "space is freed")
    raise ApiError(503, "the job queue is unreachable: nothing was stored; try again later")


@router.post("/validate", dependencies=authed, summary="Validate and plan without queueing")
async def validate(request: Request) -> dict[str, Any]:
    """The same body as ``POST /api/jobs``; 200 ``{"plan": …}`` (with the time estimate when a
    worker has measured one) or the same 422 answer. Nothing is stored."""
    folder = request.app.state.settings.data_dir / "tmp" / uuid.uuid4().hex
    try:
        body, attached = await _read_request(request, folder)
        body, _ = _options(request, body)
        body, attached = await run_in_threadpool(_reference, request, body, attached, folder)
        _, plan = await run_in_threadpool(_validate, request, body, attached, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"plan": plan}


@router.get("/jobs", dependencies=authed, summary="History, newest first")
def history(request: Request, limit: int = Query(20, ge=1, le=100),
            before: str | None = None) -> dict[str, Any]:
    key: ApiKey = request.state.key
    jobs = request.app.state.store.history(limit, before, owner=_owner(key),
                                           everyone=key.admin)
    pos = _positions(request) if any(j["status"] == "queued" for j in jobs) else {}
    return {"jobs": [job_view(j, request.app.state.settings, pos.get(j["id"])) for j in jobs],
            "next": jobs[-1]["id"] if len(jobs) == limit else None}


@router.get("/jobs/{job_id}", dependencies=authed, summary="Status, progress, plan, outputs")
def get_job(request: Request, job_id: str) -> dict[str, Any]:
    """The job; a queued one with ``queue_position`` (1 = next) and ``estimated_start``
    (seconds from now); with a webhook, ``webhooks`` [{event, delivery, attempts, status}]."""
    return _view(request, _job(request, job_id))


def _current(request: Request, job_id: str) -> dict[str, Any]:
    """The job as it is now (404 when it was deleted meanwhile)."""
    return _view(request, _job(request, job_id))


@router.post("/jobs/{job_id}/cancel", dependencies=authed, summary="Cancel (state kept)")
def cancel(request: Request, job_id: str) -> dict[str, Any]:
    _job(request, job_id)
    try:
        request.app.state.store.cancel(job_id)
    except Conflict as exc:
        raise ApiError(409, str(exc)) from None
    return _current(request, job_id)


@router.post("/jobs/{job_id}/resume", dependencies=authed, summary="Continue a cancelled job")
def resume(request: Request, job_id: str) -> dict[str, Any]:
    _job(request, job_id)
    try:
        job = request.app.state.store.resume(job_id)
    except Conflict as exc:
        raise ApiError(409, str(exc)) from None
    if job is not None:  # (None: deleted meanwhile)
        try:
            request.app.state.queue.enqueue(job_id, job["runtime_class"] if job["has_state"]
                                            else None)
        except Exception as exc:  # the reconciliation enqueues it once the queue is back
            log.warning("job %s: not enqueued now (%s); the reconciliation will", job_id, exc)
    return _current(request, job_id)


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
    given = request.headers.get("last-event-id", "").strip()
    if given and not (given.isascii() and given.isdigit() and len(given) <= 18):
        raise ApiError(400, "Last-Event-ID must be the id of an event (a whole number)",
                       field="Last-Event-ID")
    last = int(given or 0)

    async def stream():
        nonlocal last
        deadline = time.monotonic() + SSE_MAX_SECONDS
        yield ": rhythmflow events\n\n"
        final, shown, next_look = False, None, 0.0
        while time.monotonic() < deadline and not await request.is_disconnected():
            batch = await run_in_threadpool(store.events_after, job_id, last)
            for ev in batch:
                last = ev["seq"]
                data = (preview_data(job_id, ev["data"]) if ev["type"] == "preview"
                        else ev["data"])
                yield f"id: {ev['seq']}\nevent: {ev['type']}\ndata: {json.dumps(data)}\n\n"
            if final:  # the events written before the job turned final have been sent
                return
            if time.monotonic() >= next_look:  # a queued job's place, sent when it changes
                next_look = time.monotonic() + SSE_POSITION_EVERY
                update = await run_in_threadpool(_position_update, request, job_id)
                if update is not None and update["queue_position"] != shown:
                    shown = update["queue_position"]
                    yield f"event: status\ndata: {json.dumps(update)}\n\n"
            if not batch:
                job = await run_in_threadpool(store.get, job_id)
                if job is None or job["status"] in TERMINAL:
                    final = True  # read once more: its last events may have landed meanwhile
                    continue
                await asyncio.sleep(SSE_POLL)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _position_update(request: Request, job_id: str) -> dict[str, Any] | None:
    """A ``status`` event with the place of a queued job (None when it is not queued)."""
    job = request.app.state.store.get(job_id)
    if job is None or job["status"] != "queued":
        return None
    pos = _positions(request).get(job_id)
    return None if pos is None else {"event": "status", "id": job_id, "status": "queued", **pos}


@router.get("/jobs/{job_id}/previews/{name}", dependencies=authed,
            summary="A preview (Ogg Vorbis) that an SSE `preview` event announced")
def preview(request: Request, job_id: str, name: str) -> FileResponse:
    _job(request, job_id)
    path = request.app.state.settings.jobs_dir / job_id / "previews" / name
    if not PREVIEW_NAME.fullmatch(name) or not path.is_file():
        raise ApiError(404, f"job {job_id} has no preview {name[:40]!r}")
    return FileResponse(path, media_type="audio/ogg")


@top.get("/metrics", summary="Prometheus metrics (an admin key, unless the server made them public)")
def metrics(request: Request) -> Response:
    from rhythmflow.serve.metrics import exposition

    s = request.app.state.settings
    if not s.metrics_public and not require_key(request).admin:
        raise ApiError(403, "/metrics needs an admin key (unless the server's operator made "
                       "the metrics public)")
    text, media = exposition(request.app.state.store, request.app.state.queue, s)
    return Response(text, media_type=media)


@router.get("/health", summary="Status and counts (no key needed); 503 when degraded")
def health(request: Request, response: Response) -> dict[str, Any]:
    """``status`` ok, or ``degraded`` (HTTP 503) with the ``reasons``: no worker heartbeated
    within the lease, the data folder is full, the queue or the job store is unreachable.
    Counts only: worker and job ids are at ``/api/workers`` (behind the key)."""
    app = request.app
    s = app.state.settings
    reasons: list[str] = []
    out: dict[str, Any] = {"status": "ok"}
    try:
        workers = app.state.store.workers_alive(within=s.lease)
        out["jobs"] = app.state.store.counts()
    except Exception as exc:
        workers = []
        reasons.append("data folder full" if disk_full(exc) else "job store unavailable")
    classes = sorted({w["runtime_class"] for w in workers if w["runtime_class"]})
    try:
        app.state.queue.ping()
        out["queue"] = app.state.queue.depth(classes)
    except Exception as exc:
        reasons.append("data folder full" if disk_full(exc) else "queue unreachable")
    if not workers:
        reasons.append(f"no worker alive: none heartbeated in the last {s.lease:g} s")
    if "data folder full" not in reasons and _disk_full_now(s.data_dir):
        reasons.append("data folder full")
    out.update(workers_alive=len(workers),
               model_loaded=any(w["model_loaded"] for w in workers))
    if reasons:
        out.update(status="degraded", reasons=reasons, reason="; ".join(reasons))
        response.status_code = 503
    return out


def _disk_full_now(folder: Path, need: int = 1 << 20) -> bool:
    """Whether the data folder has less than ``need`` bytes free."""
    try:
        return shutil.disk_usage(folder).free < need
    except OSError:
        return False


@router.get("/workers", dependencies=authed, summary="Workers alive: ids, classes, jobs")
def workers(request: Request) -> dict[str, Any]:
    s = request.app.state.settings
    key: ApiKey = request.state.key
    alive = request.app.state.store.workers_alive(within=2 * s.lease)
    mine = set() if key.admin else {j["id"] for j in request.app.state.store.history(
        100, owner=_owner(key), everyone=False) if j["status"] == "running"}
    return {"workers": [{"id": w["id"], "runtime_class": w["runtime_class"],
                         "model_loaded": bool(w["model_loaded"]),
                         "current_job": w["current_job"] if key.admin
                         or w["current_job"] in mine else None,
                         "heartbeat_age": round(time.time() - w["heartbeat_at"], 3)}
                        for w in alive]}
