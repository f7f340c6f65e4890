"""The service on the request → plan → run core: ``validate`` (HTTP side, no torch) and
``execute`` (worker side).

The HTTP process turns a JSON body into a :class:`~rhythmflow.request.GenerationRequest` and
plans it (:func:`~rhythmflow.planner.core.plan`, torch-free) on the facts a live worker published —
its model architecture, runtime and :class:`~rhythmflow.planner.core.Machine` (free memory, measured
GEMM rate) — so the answer carries the worker's time estimate and a job that cannot fit is
refused before it is queued. The worker plans the stored request again on its own loaded model
(the same seed: the stored request pins it) and runs it with ``run``.

A request over HTTP cannot name files or devices: the weights are the service's, the style
audio is an upload the server stored.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from rhythmflow.errors import UsageError
from rhythmflow.serve.settings import Limits, Settings

FORMATS = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg"}
# chosen by the service (they name files or the machine's resources), never by a request
SERVER_SIDE = ("model", "checkpoint", "model_config", "vae", "device", "dtype", "vae_dtype",
               "threads", "quantize", "chunked", "estimate", "negative_style",
               "style_embedding_file", "ref_song", "edit_segments", "style_audio")


class RequestError(UsageError):
    """A request the service refuses: HTTP 422, or 413 when ``too_large``."""

    def __init__(self, message: str, field: str | None = None, line: int | None = None,
                 too_large: bool = False) -> None:
        super().__init__(message, field=field, line=line)
        self.too_large = too_large


def weights(settings: Settings) -> dict[str, Any]:
    """The request fields the service decides: its weights and runtime."""
    model = None if settings.checkpoint else settings.model or "base"  # what workers load
    return {"model": model, "model_config": _str(settings.model_config),
            "checkpoint": _str(settings.checkpoint), "vae": _str(settings.vae),
            "quantize": settings.quantize, "device": settings.device, "dtype": settings.dtype,
            "vae_dtype": settings.vae_dtype, "threads": settings.threads, "estimate": False}


def _str(p: Path | None) -> str | None:
    return None if p is None else str(p)


def facts(settings: Settings, workers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What a live worker with its model loaded published (config, runtime, machine), or
    None."""
    for w in workers:
        if w.get("model_loaded") and w.get("model"):
            return w["model"]
    return None


def _user_request(body: dict[str, Any], limits: Limits) -> dict[str, Any]:
    uploaded = body.pop("_style_audio", None)  # put there by the server from a multipart upload
    for name in body:
        if name in SERVER_SIDE:
            hint = ("upload the file as the multipart field 'style_audio'"
                    if name == "style_audio" else "leave it out")
            raise RequestError(f"{name}: chosen by the server (it names a file or the machine) "
                               f"and cannot be set over HTTP; {hint}", field=name)
    lrc = body.get("lrc")
    if isinstance(lrc, str) and len(lrc.encode()) > limits.lrc_bytes:
        raise RequestError(f"lrc: larger than {limits.lrc_bytes} bytes", field="lrc",
                           too_large=True)
    for name, most in (("batch", limits.batch), ("steps", limits.steps)):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > most:
            raise RequestError(f"{name}: at most {most} on this server, got {value}", field=name)
    styles = [k for k in ("style_prompt", "style_embedding") if body.get(k) is not None]
    if uploaded:
        styles.append("style_audio")
    if len(styles) != 1:
        got = f"; got {' and '.join(styles)}" if styles else ""
        raise RequestError("style_prompt: give exactly one style: style_prompt (text), "
                           f"style_embedding (512 numbers) or an uploaded style_audio file{got}",
                           field=styles[1] if len(styles) > 1 else "style_prompt")
    return {**body, **({"style_audio": uploaded} if uploaded else {})}


def _plan(fields: dict[str, Any], settings: Settings, known: dict[str, Any] | None):
    """Plan ``fields`` + the service's weights on the published worker facts."""
    from rhythmflow.lyrics.resources import LyricsAssets
    from rhythmflow.planner.core import Machine, plan
    from rhythmflow.planner.runtime import Runtime
    from rhythmflow.request import GenerationRequest
    from rhythmflow.specs import DiTConfig

    request = GenerationRequest.from_dict({**fields, **weights(settings)})
    lyrics = LyricsAssets.of(settings.assets_dir, True if settings.offline else None)
    if known is not None:
        return plan(request, Machine.from_dict(known["machine"]),
                    config=DiTConfig.from_dict(known["config"]),
                    runtime=Runtime(**known["runtime"]), check_files=False,
                    lyrics_assets=lyrics)
    if settings.checkpoint is not None:
        return None  # the architecture is read from the file by a worker (torch)
    from rhythmflow import specs

    device = "cpu" if settings.device == "auto" else settings.device
    dtype = "float32" if settings.dtype == "auto" else settings.dtype
    runtime = Runtime(device, dtype, settings.threads or 1, device,
                      specs.DEFAULT_STEPS[device.split(":")[0]],
                      ("provisional: no worker has published its runtime yet",))
    return plan(request, Machine(), runtime=runtime, check_files=False, lyrics_assets=lyrics)


def validate(body: dict[str, Any], settings: Settings,
             known: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request to store, plan) for a JSON body, or UsageError / ResourceError carrying the
    CLI's message, ``field`` and ``line``. The stored request holds only the user's fields,
    with the plan's seed pinned, so every attempt (on any worker) makes the same song.
    ``known``: :func:`facts` of a live worker; without one the plan is provisional (and for a
    ``--checkpoint`` service only the request and its LRC are checked)."""
    from rhythmflow.lyrics import parse_lrc
    from rhythmflow.request import GenerationRequest

    if not isinstance(body, dict):
        raise RequestError("the request must be a JSON object")
    fields = _user_request(dict(body), settings.limits)
    p = _plan(fields, settings, known)
    if p is None:
        request = GenerationRequest.from_dict(fields)
        parse_lrc(request.lrc)
        import secrets

        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        plan_dict = {"provisional": True, "model": settings.model_name, "seed": seed,
                     "steps": request.steps, "runtime_class": None,
                     "estimate": {"known": False}}
    else:
        seed, plan_dict = p.seed, p.to_dict()
        plan_dict.pop("request")
        plan_dict["provisional"] = known is None
    stored = dict(GenerationRequest.from_dict(fields).to_dict(), seed=seed)
    return {k: v for k, v in stored.items() if k not in weights(settings)}, plan_dict


# ---- worker side (imports torch through rhythmflow.pipeline) ------------------------------------

def worker_plan(job: dict[str, Any], settings: Settings, generator):
    """The stored request planned again on this worker's loaded model and machine."""
    from rhythmflow.planner.core import Machine, plan
    from rhythmflow.request import GenerationRequest

    fields = dict(job["request"])
    if fields.get("style_audio"):  # stored relative to the (shared) data folder
        fields["style_audio"] = str(settings.data_dir / fields["style_audio"])
    request = GenerationRequest.from_dict({**fields, **weights(settings)})
    # the measured machine (the probe the worker cached when it loaded): the same guidance
    # layout and estimates as the plan the HTTP side made from the facts it published
    return plan(request, Machine.detect(threads=generator.runtime.threads),
                config=generator.config, runtime=generator.runtime,
                lyrics_assets=generator.lyrics_assets)


def execute(job: dict[str, Any], settings: Settings, generator, on_event, cancel,
            checkpoint: Path, out_dir: Path, still_owned=lambda: True):
    """Run one job with a loaded ``generator``: resume from ``checkpoint`` when it exists, save
    the state there after every step, then — only while ``still_owned()`` — write the audio
    files, sidecars and ``latents.npy`` into ``out_dir`` (each atomically). Returns (plan,
    outputs, timings). Raises what ``run`` raises (SamplingCancelled when ``cancel`` fired)."""
    import numpy as np

    from rhythmflow import events
    from rhythmflow.audio.io import atomic_write_bytes, write_audio, write_sidecar
    from rhythmflow.pipeline import run
    from rhythmflow.planner.outputs import resolve_outputs
    from rhythmflow.sampling import SamplerState

    p = worker_plan(job, settings, generator)
    state = SamplerState.load(checkpoint) if checkpoint.is_file() else None
    # no save_state: the checkpoint already holds the last completed step, and a worker that
    # lost its lease must not write the state on its way out
    song = run(p, generator, on_event, cancel=cancel, resume_state=state, checkpoint=checkpoint)
    if not still_owned():
        raise LostLease("the lease was taken over before the files were written")
    r = p.request
    paths = resolve_outputs(out_dir / "song", r.format, r.sample_format, r.batch)
    on_event(events.StageStarted("write", f"writing {len(paths)} file(s)"))
    outputs = []
    for i, path in enumerate(paths):
        write_audio(path, song.audio[i], song.sample_rate, sample_format=r.sample_format,
                    normalize="peak" if r.loudness is None else "loudness",
                    target_lufs=r.loudness if r.loudness is not None else -14.0)
        write_sidecar(path, dict(song.metadata, output=path.name, index=i, seed=song.seeds[i],
                                 job=job["id"]))
        outputs.append({"index": i, "file": path.name, "format": r.format,
                        "seed": song.seeds[i]})
    buf = io.BytesIO()
    np.save(buf, song.latents.float().numpy())
    atomic_write_bytes(out_dir / "latents.npy", buf.getvalue())
    on_event(events.Result("completed", outputs=tuple(o["file"] for o in outputs),
                           seeds=tuple(song.seeds)))
    return p, outputs, dict(song.metadata.get("timings", {}))


class LostLease(Exception):
    """Another worker owns the job now; this one must not write anything more."""


def safe_child(root: Path, name: str) -> Path:
    """``root/name`` for a plain file name only (no separators, no '..'); else RequestError."""
    if not name or name != os.path.basename(name) or name in (".", "..") or "\x00" in name:
        raise RequestError(f"bad file name {name!r}")
    return root / name
