"""Adapter between the service and the generation core: ``validate`` (HTTP side, no torch) and
``execute`` (worker side).

Until ``GenerationRequest`` / ``plan`` / ``run`` (request.py, plan.py) land, this module checks
a JSON request itself, with the CLI's messages, and runs it through
:meth:`~rhythmflow.api.SongGenerator.generate`. Model facts the HTTP process cannot compute
without torch (a checkpoint's frame limit, the device's memory, seconds per step) come from the
``workers`` table, where every worker publishes them once its model is loaded (:func:`facts`).
"""

from __future__ import annotations

import math
import os
import re
import secrets
from pathlib import Path
from typing import Any

from rhythmflow.errors import UsageError
from rhythmflow.serve.settings import Limits, Settings

BASE_SECONDS, FULL_SECONDS = 95.0, (96.0, 285.0)  # as rhythmflow.api (which imports torch)
SOLVERS = ("euler", "midpoint", "heun", "rk4")
SCHEDULES = ("uniform", "sway")
FORMATS = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}
SAMPLE_FORMATS = ("int16", "int24", "float32")
STYLE_DIM = 512

# field → (type(s), default); bool is never accepted for a number
FIELDS: dict[str, tuple[tuple[type, ...], Any]] = {
    "lrc": ((str,), ""),
    "style_prompt": ((str,), None),
    "style_embedding": ((list,), None),
    "duration": ((int, float), None),
    "steps": ((int,), None),
    "solver": ((str,), "euler"),
    "schedule": ((str,), "uniform"),
    "cfg_strength": ((int, float), 4.0),
    "guidance_interval": ((list,), None),
    "seed": ((int,), None),
    "batch": ((int,), 1),
    "format": ((str,), "wav"),
    "sample_format": ((str,), "int16"),
    "loudness": ((int, float), None),
    "keep_last_line": ((bool,), False),
    "timeout": ((int, float), None),
    "anytime": ((bool,), False),
}
# the server chooses these: they name files on the server or the machine's resources
SERVER_SIDE = ("model", "checkpoint", "model_config", "vae", "device", "dtype", "threads",
               "quantize", "negative_style", "style_embedding_file", "ref_song", "edit_segments",
               "resume", "save_state", "output", "style_audio", "time_budget")


class RequestError(UsageError):
    """A request the service refuses (HTTP 422, or 413 when ``too_large``); ``field`` and
    ``line`` (LRC line number) say where."""

    def __init__(self, message: str, field: str | None = None, line: int | None = None,
                 too_large: bool = False) -> None:
        super().__init__(message)
        self.field, self.line, self.too_large = field, line, too_large


def _check_types(body: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in body.items():
        if name in SERVER_SIDE:
            hint = (" upload the file as the multipart field 'style_audio'"
                    if name == "style_audio" else "")
            raise RequestError(f"'{name}' is chosen by the server (it names a file or the "
                               f"machine) and cannot be set over HTTP;{hint or ' leave it out'}",
                               field=name)
        if name not in FIELDS:
            raise RequestError(f"unknown field '{name}'; known fields: {', '.join(FIELDS)}",
                               field=name)
        types, _ = FIELDS[name]
        if value is not None and (isinstance(value, bool) and bool not in types
                                  or not isinstance(value, types)):
            want = " or ".join(t.__name__ for t in types)
            raise RequestError(f"'{name}' must be {want}, got {type(value).__name__}", field=name)
        if isinstance(value, float) and not math.isfinite(value):
            raise RequestError(f"'{name}' must be a finite number", field=name)
        out[name] = value
    return {name: out.get(name, default) for name, (_, default) in FIELDS.items()}


def _check_values(r: dict[str, Any], limits: Limits) -> None:
    def bad(name: str, message: str) -> RequestError:
        return RequestError(f"'{name}' {message}", field=name)

    if len(r["lrc"].encode()) > limits.lrc_bytes:
        raise RequestError(f"'lrc' is larger than {limits.lrc_bytes} bytes", field="lrc",
                           too_large=True)
    emb = r["style_embedding"]
    if emb is not None and (len(emb) != STYLE_DIM or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in emb)):
        raise bad("style_embedding", f"must be {STYLE_DIM} finite numbers")
    if r["steps"] is not None and not 1 <= r["steps"] <= limits.steps:
        raise bad("steps", f"must be 1..{limits.steps}, got {r['steps']}")
    if not 1 <= r["batch"] <= limits.batch:
        raise bad("batch", f"must be 1..{limits.batch}, got {r['batch']}")
    if r["seed"] is not None and not 0 <= r["seed"] < 2**63:
        raise bad("seed", f"must be a whole number >= 0, got {r['seed']}")
    if r["cfg_strength"] < 0:
        raise bad("cfg_strength", "must be >= 0 (0 = no guidance)")
    for name, choices in (("solver", SOLVERS), ("schedule", SCHEDULES), ("format", FORMATS),
                          ("sample_format", SAMPLE_FORMATS)):
        if r[name] not in choices:
            raise bad(name, f"must be one of {', '.join(choices)}, got {r[name]!r}")
    gi = r["guidance_interval"]
    if gi is not None and (len(gi) != 2 or not all(isinstance(v, int | float) for v in gi)
                           or not 0 <= gi[0] <= gi[1] <= 1):
        raise bad("guidance_interval", "must be [lo, hi] with 0 <= lo <= hi <= 1")
    if r["timeout"] is not None and r["timeout"] <= 0:
        raise bad("timeout", "must be a positive number of seconds")


def facts(settings: Settings, workers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The model facts a live worker of this service published (config, runtime, memory,
    seconds per step), or None when no worker has loaded the model yet."""
    for w in workers:
        if w.get("model_loaded") and w.get("model"):
            return w["model"]
    return None


def _max_frames(settings: Settings, known: dict[str, Any] | None) -> int | None:
    if known is not None:
        return int(known["config"]["max_frames"])
    if settings.checkpoint is not None:
        return None  # the architecture is read from the file by the worker
    from rhythmflow.config import preset

    return preset(settings.model or "base").max_frames


def _duration(max_frames: int | None, duration: float | None) -> float | None:
    """The CLI's rule (rhythmflow.api.check_duration), messages naming the request field."""
    if max_frames is None:
        return duration
    if duration is None:
        return BASE_SECONDS if max_frames == 2048 else FULL_SECONDS[1]
    if max_frames == 2048 and duration != BASE_SECONDS:
        raise RequestError(f"duration {duration:g}: base models generate exactly 95 s; the "
                           "server's model is a base model", field="duration")
    lo, hi = FULL_SECONDS
    if max_frames != 2048 and not lo <= duration <= hi:
        raise RequestError(f"duration {duration:g}: full models generate {lo:.0f}-{hi:.0f} s",
                           field="duration")
    return float(duration)


def _memory(known: dict[str, Any], frames: int, rows: int, batch: int) -> None:
    """Refuse (ResourceError, the CLI's message) a job the worker's memory cannot hold; the
    estimate is linear in rows × frames, published by the worker at two points."""
    from rhythmflow.estimate import MemoryEstimate, refuse_if_too_big

    m = known.get("memory")
    if not m:
        return
    per, base = m["per_row_frame"], m["base"]
    parts = {k: int(base[k] + per[k] * rows * frames) for k in base}
    mem = MemoryEstimate(**parts, available=m["available"])
    rt = known["runtime"]
    refuse_if_too_big(mem, batch=batch, frames=frames, dtype=rt["dtype"], device=rt["device"])


def validate(body: dict[str, Any], settings: Settings,
             known: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request, plan) for a JSON request body, or RequestError / ResourceError with the CLI's
    message. Draws the seed when none is given, so every attempt of the job makes the same song.
    ``known``: :func:`facts` of a live worker (None: checks that need the model are left to
    the worker)."""
    from rhythmflow.errors import LrcError
    from rhythmflow.lyrics import parse_lrc

    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    uploaded = body.pop("_style_audio", None)  # set by the server from a multipart upload
    r = _check_types(body)
    _check_values(r, settings.limits)
    styles = [k for k in ("style_prompt", "style_embedding") if r[k] is not None]
    styles += ["style_audio"] if uploaded else []
    if len(styles) != 1:
        raise RequestError("give exactly one style: 'style_prompt' (text), 'style_embedding' "
                           f"({STYLE_DIM} numbers) or an uploaded 'style_audio' file"
                           + (f"; got {', '.join(styles)}" if styles else ""), field="style_prompt")
    try:
        lines = parse_lrc(r["lrc"])
    except LrcError as exc:
        m = re.match(r"LRC line (\d+)", str(exc))
        raise RequestError(str(exc), field="lrc", line=int(m.group(1)) if m else None) from None
    if uploaded:
        r["style_audio"] = uploaded
    if r["seed"] is None:
        r["seed"] = secrets.randbelow(2**31)
    max_frames = _max_frames(settings, known)
    duration = _duration(max_frames, r["duration"])
    frames = None
    if max_frames is not None and duration is not None:
        from rhythmflow.lyrics.tokens import end_frame_for

        frames = end_frame_for(max_frames, duration)
    rows = r["batch"] * (2 if r["cfg_strength"] > 0 else 1)
    steps = r["steps"] or (known["runtime"]["default_steps"] if known else None)
    if known is not None and frames is not None:
        _memory(known, frames, rows, r["batch"])
    plan = {
        "model": settings.model_name, "max_frames": max_frames, "duration": duration,
        "frames": frames, "steps": steps, "seed": r["seed"], "batch": r["batch"],
        "cfg_strength": r["cfg_strength"], "solver": r["solver"], "format": r["format"],
        "lyric_lines": len(lines),
        "runtime_class": known["runtime_class"] if known else None,
        "estimate": _estimate(known, frames, rows, steps, r["solver"]),
    }
    return r, plan


def _estimate(known, frames, rows, steps, solver) -> dict[str, Any]:
    """Seconds to sample from the worker's measured seconds per (row × frame) evaluation."""
    evals = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}[solver]
    per = (known or {}).get("sec_per_row_frame_eval")
    if not per or not frames or not steps:
        return {"seconds": None, "basis": "no measurement yet (a worker publishes one after "
                "its first job)"}
    seconds = per * rows * frames * evals * steps
    return {"seconds": round(seconds, 2), "sample": round(seconds, 2),
            "basis": "seconds per evaluation measured by a worker on its last job"}


# ---- worker side (imports torch through rhythmflow.api) ------------------------------------

def execute(job: dict[str, Any], generator, on_event, cancel, checkpoint: Path,
            out_dir: Path, still_owned=lambda: True) -> tuple[list[dict[str, Any]], dict]:
    """Run one job with a loaded ``generator``: resume from ``checkpoint`` when it exists, save
    the state there after every step, write the audio files, sidecars and ``latents.npy`` to
    ``out_dir`` (each atomically) — only while ``still_owned()`` — and return (outputs, timings).
    Raises what ``generate`` raises (SamplingCancelled when ``cancel`` fired)."""
    import numpy as np
    import torch

    from rhythmflow.audio import atomic_write_bytes, write_audio, write_sidecar
    from rhythmflow.commands import output_paths
    from rhythmflow.console import StageEvent

    r, plan = job["request"], job["plan"]
    style: Any = r["style_prompt"]
    if r["style_embedding"] is not None:
        style = torch.tensor(r["style_embedding"], dtype=torch.float32).reshape(1, STYLE_DIM)
    resume = checkpoint if checkpoint.is_file() else None
    song = generator.generate(
        r["lrc"], style=style, style_audio=r.get("style_audio"), duration=plan["duration"],
        steps=plan["steps"], solver=r["solver"], schedule=r["schedule"],
        cfg_strength=r["cfg_strength"],
        guidance_interval=tuple(r["guidance_interval"]) if r["guidance_interval"] else None,
        seed=plan["seed"], batch=r["batch"], timeout=r["timeout"], anytime=r["anytime"],
        estimate=False, on_progress=on_event, cancel=cancel, resume=resume,
        save_state=checkpoint, checkpoint=checkpoint, keep_last_line=r["keep_last_line"])
    if not still_owned():
        raise LostLease("the lease was taken over before the files were written")
    on_event(StageEvent("write", f"writing {len(song)} file(s)"))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(out_dir / "song", r["format"], r["batch"])
    outputs = []
    for i, path in enumerate(paths):
        write_audio(path, song.audio[i], song.sample_rate, sample_format=r["sample_format"],
                    normalize="peak" if r["loudness"] is None else "loudness",
                    target_lufs=r["loudness"] if r["loudness"] is not None else -14.0)
        write_sidecar(path, dict(song.metadata, output=path.name, index=i, seed=song.seeds[i],
                                 request={k: v for k, v in r.items() if k != "style_embedding"}))
        outputs.append({"index": i, "file": path.name, "format": r["format"],
                        "seed": song.seeds[i]})
    buf = _npy_bytes(np, song.latents.float().numpy())
    atomic_write_bytes(out_dir / "latents.npy", buf)
    on_event(StageEvent("write", f"{len(paths)} file(s) written", done=True))
    return outputs, dict(song.metadata.get("timings", {}))


def _npy_bytes(np, array) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


class LostLease(Exception):
    """Another worker owns the job now; this one must not write anything more."""


def safe_child(root: Path, name: str) -> Path:
    """``root/name`` for a plain file name only (no separators, no '..'); else RequestError."""
    if not name or name != os.path.basename(name) or name in (".", "..") or "\x00" in name:
        raise RequestError(f"bad file name {name!r}")
    return root / name
