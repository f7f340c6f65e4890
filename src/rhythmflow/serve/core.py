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

import dataclasses
import io
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rhythmflow.errors import UsageError
from rhythmflow.serve.settings import Limits, Settings

FORMATS = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg"}
# chosen by the service (they name files or the machine's resources), never by a request
SERVER_SIDE = ("model", "checkpoint", "model_config", "vae", "device", "dtype", "vae_dtype",
               "threads", "quantize", "chunked", "estimate", "negative_style",
               "style_embedding_file", "ref_song", "style_audio", "asr_command", "asr_model")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: the ``field`` at fault (None: the request as a whole),
    the ``message`` (it names the field or the LRC line), the 1-based LRC ``line`` when there
    is one, and ``too_large`` for a size limit (HTTP 413)."""

    field: str | None
    message: str
    line: int | None = None
    too_large: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message, "line": self.line}


class RequestError(UsageError):
    """A request the service refuses: HTTP 422, or 413 when ``too_large``. ``problems``: every
    problem found (the first is the one ``message``/``field``/``line`` name); a single
    problem when built from a message."""

    def __init__(self, message: str, field: str | None = None, line: int | None = None,
                 too_large: bool = False, problems: tuple[Problem, ...] = ()) -> None:
        super().__init__(message, field=field, line=line)
        self.too_large = too_large
        self.problems = problems or (Problem(field, message, line, too_large),)

    @classmethod
    def of(cls, problems: list[Problem]) -> RequestError:
        """One error for several problems: the size limits first (the answer is a 413 when
        any is one), then in the order they were found."""
        ordered = sorted(problems, key=lambda p: not p.too_large)
        first = ordered[0]
        return cls(first.message, first.field, first.line, first.too_large, tuple(ordered))

    @property
    def errors(self) -> list[dict[str, Any]]:
        """``[{"field", "message", "line"}, ...]``: what a 422/413 answer lists."""
        return [p.to_dict() for p in self.problems]


def weights(settings: Settings) -> dict[str, Any]:
    """The request fields the service decides (:meth:`Settings.weights`)."""
    return settings.weights()



def facts(settings: Settings, workers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What a live worker with its model loaded published (config, runtime, machine), or
    None."""
    for w in workers:
        if w.get("model_loaded") and w.get("model"):
            return w["model"]
    return None


@dataclass(frozen=True)
class ServerAttachments:
    """What the server attached to a job (never read from a request body): the file names of
    the uploaded style audio and of the edit reference (``ref_song``: the song of the job
    ``ref_job`` names, copied in) inside the job's own folder. Stored apart from the client's
    fields (the job row's ``attachments``), so no client field can become a server path."""

    style_audio: str | None = None  # a plain file name in jobs/<id>/
    ref_song: str | None = None  # a plain file name in jobs/<id>/
    ref_job: str | None = None  # the job whose song ref_song is

    def __post_init__(self) -> None:
        for name in (self.style_audio, self.ref_song):
            if name is not None:
                safe_child(Path("."), name)  # a plain name, never a path

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("style_audio", self.style_audio), ("ref_song", self.ref_song),
                                  ("ref_job", self.ref_job)) if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ServerAttachments:
        d = d or {}
        return cls(style_audio=d.get("style_audio"), ref_song=d.get("ref_song"),
                   ref_job=d.get("ref_job"))

    def paths(self, job_dir: Path) -> dict[str, str]:
        """The request fields of the attached files: ``style_audio`` / ``ref_song`` paths."""
        return {k: str(safe_child(job_dir, v)) for k, v in (("style_audio", self.style_audio),
                                                           ("ref_song", self.ref_song)) if v}

    def style_audio_path(self, job_dir: Path) -> Path | None:
        return None if self.style_audio is None else safe_child(job_dir, self.style_audio)


def _fold(name: str) -> str:
    """A field name as compared: NFKC (look-alikes such as full-width letters become plain)
    and casefolded."""
    return unicodedata.normalize("NFKC", name).casefold()


def client_fields() -> tuple[str, ...]:
    """The request fields a client may send."""
    from rhythmflow.request import GenerationRequest

    return tuple(f.name for f in dataclasses.fields(GenerationRequest)
                 if f.name not in SERVER_SIDE)


def field_name_problems(body: dict[str, Any]) -> list[Problem]:
    """Every field a client may not send: a private name (leading underscore, after NFKC +
    casefold), a server-only field (in any case or look-alike), a look-alike or odd-case
    spelling of a client field, or an unknown one."""
    allowed = client_fields()
    server = {_fold(n): n for n in SERVER_SIDE}
    out = []
    for name in body:
        if not isinstance(name, str):
            out.append(Problem(str(name), "field names must be text"))
            continue
        folded = _fold(name)
        shown = name.encode("unicode_escape").decode("ascii")[:64]
        if folded.startswith("_") or folded.lstrip().startswith("_"):
            out.append(Problem(shown, f"{shown}: a private field; the server sets it, a "
                               "request cannot"))
        elif folded in server or folded.strip() in server:
            real = server.get(folded, server.get(folded.strip()))
            hint = ("upload the file as the multipart field 'style_audio'"
                    if real == "style_audio" else "leave it out")
            out.append(Problem(shown, f"{shown}: chosen by the server (it names a file or the "
                               f"machine) and cannot be set over HTTP; {hint}"))
        elif name not in allowed:
            near = [a for a in allowed if _fold(a) == folded.strip()]
            what = f"did you mean {near[0]}?" if near else "known fields: " + ", ".join(allowed)
            out.append(Problem(shown, f"{shown}: unknown field; {what}"))
    return out


def check_field_names(body: dict[str, Any]) -> None:
    """RequestError naming every field a client may not send (:func:`field_name_problems`)."""
    if problems := field_name_problems(body):
        raise RequestError.of(problems)


def value_problems(body: dict[str, Any], limits: Limits) -> list[Problem]:
    """Nesting deeper than ``limits.json_depth`` and text that is not valid Unicode (a lone
    surrogate): one problem per field at fault."""
    out = []
    for name, value in body.items():
        stack = [(value, 1)]
        while stack:
            v, depth = stack.pop()
            if depth > limits.json_depth:
                out.append(Problem(name, f"{name}: nested deeper than {limits.json_depth} "
                                   "levels"))
                break
            if isinstance(v, str):
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    out.append(Problem(name, f"{name}: not valid Unicode text (a lone "
                                       "surrogate?)"))
                    break
            elif isinstance(v, dict):
                stack.extend((x, depth + 1) for x in [*v.keys(), *v.values()])
            elif isinstance(v, list):
                stack.extend((x, depth + 1) for x in v)
    return out


def check_values(body: dict[str, Any], limits: Limits) -> None:
    """RequestError naming every field :func:`value_problems` finds."""
    if problems := value_problems(body, limits):
        raise RequestError.of(problems)


#: at most this many problems of one LRC text are listed (each costs a parse of the text)
MAX_LRC_PROBLEMS = 50


def lrc_problems(text: str) -> list[Problem]:
    """Every malformed line of an LRC text (the reader stops at the first: each bad line is
    blanked and the text read again), with the reader's message and 1-based line."""
    from rhythmflow.errors import LrcError
    from rhythmflow.lyrics.lrc import parse_lrc, split_lines

    lines = split_lines(text)
    out: list[Problem] = []
    while len(out) < MAX_LRC_PROBLEMS:
        try:
            parse_lrc("\n".join(lines))
            break
        except LrcError as exc:
            out.append(Problem("lrc", str(exc), exc.line))
            if exc.line is None or not 1 <= exc.line <= len(lines) or not lines[exc.line - 1]:
                break  # not a line that can be blanked: the rest is unknown
            lines[exc.line - 1] = ""
    return out


def _user_request(body: dict[str, Any], limits: Limits, attachments: ServerAttachments,
                  more: list[Problem] | tuple = ()) -> dict[str, Any]:
    """The client's fields, or RequestError listing every problem found in one pass: field
    names, nesting and Unicode, size limits, the server's batch/steps limits, the style
    requirement, ``more`` (what the server cannot do), each field's value, their combinations
    and each malformed LRC line. A field is blamed once (its first problem)."""
    from rhythmflow.request import _CHECKS, GenerationRequest

    problems = field_name_problems(body) + value_problems(body, limits)
    problems += [p for p in [*more, *edit_problems(body, attachments)]
                 if p.field not in {q.field for q in problems}]
    blamed = {p.field for p in problems}
    for name, most in (("lrc", limits.lrc_bytes), ("lyrics", limits.lyrics_bytes)):
        text = body.get(name)
        if name not in blamed and isinstance(text, str) and len(text.encode()) > most:
            problems.append(Problem(name, f"{name}: larger than {most} bytes", too_large=True))
            blamed.add(name)
    for name, most in (("batch", limits.batch), ("steps", limits.steps)):
        value = body.get(name)
        if (name not in blamed and isinstance(value, int) and not isinstance(value, bool)
                and value > most):
            problems.append(Problem(name, f"{name}: at most {most} on this server, got {value}"))
            blamed.add(name)
    styles = [k for k in ("style_prompt", "style_embedding") if body.get(k) is not None]
    if attachments.style_audio is not None:
        styles.append("style_audio")
    if len(styles) != 1:
        got = f"; got {' and '.join(styles)}" if styles else ""
        field = styles[1] if len(styles) > 1 else "style_prompt"
        problems.append(Problem(field, "style_prompt: give exactly one style: style_prompt "
                                "(text), style_embedding (512 numbers) or an uploaded "
                                f"style_audio file{got}"))
        blamed.update(("style_prompt", "style_embedding", "style_audio"))
    good = {}
    for name in _CHECKS:  # the request's field order, as its constructor checks them
        if name in blamed or name not in body:
            continue
        value = body[name]
        try:
            _CHECKS[name](name, value)
        except UsageError as exc:
            problems.append(Problem(exc.field or name, str(exc), exc.line))
            blamed.add(name)
        else:
            good[name] = value
    try:  # the combinations of the fields that are fine on their own (+ the attached files)
        GenerationRequest.from_dict({**good, **attachments.paths(Path("."))})
    except UsageError as exc:
        if exc.field not in blamed:
            problems.append(Problem(exc.field, str(exc), exc.line))
    if "lrc" in good and isinstance(good["lrc"], str):
        problems += lrc_problems(good["lrc"])
    if problems:
        raise RequestError.of(problems)
    return dict(body)


def _plan(fields: dict[str, Any], settings: Settings, known: dict[str, Any] | None):
    """Plan ``fields`` (the client's, plus the server's ``style_audio`` path when one was
    uploaded) + the service's weights on the published worker facts."""
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


def validate(body: dict[str, Any], settings: Settings, known: dict[str, Any] | None = None,
             attachments: ServerAttachments | None = None,
             job_dir: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request to store, plan) for a JSON body, or UsageError / ResourceError carrying the
    CLI's message, ``field`` and ``line``. ``attachments``: what the server attached (an
    uploaded style audio, a file in ``job_dir``). The stored request holds only the user's fields,
    with the plan's seed pinned, so every attempt (on any worker) makes the same song.
    ``known``: :func:`facts` of a live worker; without one the plan is provisional (and for a
    ``--checkpoint`` service only the request and its LRC are checked)."""
    from rhythmflow.lyrics import parse_lrc
    from rhythmflow.request import GenerationRequest

    if not isinstance(body, dict):
        raise RequestError("the request must be a JSON object")
    attachments = attachments or ServerAttachments()
    client = _user_request(dict(body), settings.limits, attachments,
                           recognizer_problems(body, settings))
    fields = {**client, **attachments.paths(job_dir or Path("."))}
    p = _plan(fields, settings, known)
    if p is None:
        request = GenerationRequest.from_dict(fields)
        parse_lrc(request.lrc)
        from rhythmflow.lyrics.resources import LyricsAssets
        from rhythmflow.planner.core import draw_seed
        from rhythmflow.planner.review import lint_findings

        seed = draw_seed(request)
        # the LRC lint without the model (its song length is unknown until a worker reads
        # the checkpoint): the request's duration, else the family's longest song
        lyrics = LyricsAssets.of(settings.assets_dir, True if settings.offline else None)
        lint = lint_findings(request, request.duration, None, lyrics)
        plan_dict = {"provisional": True, "model": public_model_name(settings), "seed": seed,
                     "steps": request.steps, "runtime_class": None,
                     "estimate": {"known": False}, "lint": list(lint)}
    else:
        seed, plan_dict = p.seed, p.to_dict()
        plan_dict.pop("request")
        plan_dict["provisional"] = known is None
    stored = dict(GenerationRequest.from_dict(fields).to_dict(), seed=seed)
    return ({k: v for k, v in stored.items() if k not in SERVER_SIDE},
            public(plan_dict, settings))


def recognizer_problems(body: dict[str, Any], settings: Settings) -> list[Problem]:
    """``check`` / ``repair`` asked of a server without a speech recogniser."""
    if settings.has_recognizer:
        return []
    return [Problem(name, f"{name}: this server has no speech recogniser to check the sung "
                    "lines with (the operator sets one: the service's asr_command or "
                    "asr_model setting); "
                    f"leave {name} out (takes are still ranked by style)")
            for name in ("check", "repair") if body.get(name) is True]


def edit_problems(body: dict[str, Any], attachments: ServerAttachments) -> list[Problem]:
    """``edit_segments`` comes with ``ref_job`` (the song it edits), and the other way round."""
    if "edit_segments" in body and attachments.ref_song is None:
        return [Problem("edit_segments", "edit_segments: give ref_job too, the finished job "
                        "whose song is edited")]
    if attachments.ref_song is not None and body.get("edit_segments") is None:
        return [Problem("edit_segments", "edit_segments: ref_job edits a song; give the "
                        "[start, end] seconds to sample again, e.g. [[10.5, 14.2]]")]
    return []


def attach_reference(body: dict[str, Any], attached: ServerAttachments, folder: Path,
                     find, jobs_dir: Path) -> tuple[dict[str, Any], ServerAttachments]:
    """(the body without ``ref_job``, the attachments with the referenced song) or
    RequestError naming ``ref_job``. ``find(id)``: the job row when the caller may see it
    (None otherwise). The job's best take (output 0) is copied into ``folder`` as the edit
    reference; an edit job without a style of its own also gets the job's uploaded style
    audio."""
    import shutil

    if "ref_job" not in body:
        return body, attached
    body = dict(body)
    ref = body.pop("ref_job")
    if not isinstance(ref, str) or not ref.isascii() or not ref.isalnum() or len(ref) > 64:
        raise RequestError("ref_job: the id of a finished job whose song is edited", "ref_job")
    job = find(ref)
    if job is None:  # unknown or another key's: the same answer
        raise RequestError(f"ref_job: no job {ref} among the jobs this key can see", "ref_job")
    if job["status"] != "completed" or not job.get("outputs"):
        raise RequestError(f"ref_job: job {ref} is {job['status']}; its song can be edited "
                           "once it has completed", "ref_job")
    source = safe_child(jobs_dir / ref, job["outputs"][0]["file"])
    if not source.is_file():
        raise RequestError(f"ref_job: the song of job {ref} is gone from the data folder",
                           "ref_job")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"ref_song{source.suffix}"
    shutil.copyfile(source, folder / name)
    style = attached.style_audio
    prior = ServerAttachments.from_dict(job.get("attachments")).style_audio
    if (style is None and prior is not None
            and all(body.get(k) is None for k in ("style_prompt", "style_embedding"))):
        shutil.copyfile(safe_child(jobs_dir / ref, prior), folder / prior)
        style = prior
    return body, ServerAttachments(style_audio=style, ref_song=name, ref_job=ref)


def public_model_name(settings: Settings) -> str:
    """The model's name as clients see it: a checkpoint's file name, never its path."""
    return settings.checkpoint.name if settings.checkpoint else (settings.model or "base")


def public(value: Any, settings: Settings) -> Any:
    """``value`` (JSON) with every server path in its text replaced: the weights' files by
    their names, the data folder by ``<data>``. Plans, errors and messages go out through it."""
    swaps = [(str(p), p.name) for p in (settings.checkpoint, settings.vae,
                                         settings.model_config) if p is not None]
    swaps += [(str(p), "<assets>") for p in (settings.assets_dir,) if p is not None]
    swaps += [(str(p), "<asr>") for p in (settings.asr_command, settings.asr_model)
              if p is not None]
    swaps += [(str(settings.data_dir.resolve()), "<data>"), (str(settings.data_dir), "<data>")]
    swaps.sort(key=lambda s: -len(s[0]))

    def scrub(v: Any) -> Any:
        if isinstance(v, str):
            for old, new in swaps:
                if old and old in v:
                    v = v.replace(old, new)
            return v
        if isinstance(v, dict):
            return {k: scrub(x) for k, x in v.items()}
        if isinstance(v, list):
            return [scrub(x) for x in v]
        return v

    return scrub(value)


# ---- worker side (imports torch through rhythmflow.pipeline) ------------------------------------

def worker_plan(job: dict[str, Any], settings: Settings, generator):
    """The stored request planned again on this worker's loaded model and machine."""
    from rhythmflow.planner.core import Machine, plan
    from rhythmflow.request import GenerationRequest

    # the client's fields (never a path) + the server's attachments (a file in the job folder)
    fields = {k: v for k, v in job["request"].items() if k not in SERVER_SIDE}
    attached = ServerAttachments.from_dict(job.get("attachments"))
    if attached.to_dict():
        fields.update(attached.paths(settings.jobs_dir / job["id"]))
    request = GenerationRequest.from_dict({**fields, **weights(settings)})
    # the measured machine (the probe the worker cached when it loaded): the same guidance
    # layout and estimates as the plan the HTTP side made from the facts it published
    return plan(request, Machine.detect(threads=generator.runtime.threads),
                config=generator.config, runtime=generator.runtime,
                lyrics_assets=generator.lyrics_assets)


def execute(job: dict[str, Any], settings: Settings, generator, on_event, cancel,
            checkpoint: Path, out_dir: Path, still_owned=lambda: True, previews=None):
    """Run one job with a loaded ``generator``: resume from ``checkpoint`` when it exists, save
    the state there after every step, then — only while ``still_owned()`` — write the audio
    files, sidecars, ``.lrc`` files and ``latents.npy`` into ``out_dir`` (each atomically).
    A job with ``check``/``repair``/``takes`` is reviewed first (:mod:`rhythmflow.serve.review`)
    and its takes written best first. Returns (plan, outputs, timings). Raises what ``run``
    raises (SamplingCancelled when ``cancel`` fired). ``previews(plan)``: the ``on_sample``
    hook for this plan (None: no previews)."""
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
    song = run(p, generator, on_event, cancel=cancel, resume_state=state, checkpoint=checkpoint,
               on_sample=previews(p) if previews is not None else None)
    order, extra, takes = list(range(len(song))), [{} for _ in range(len(song))], None
    if p.review.active:  # check / repair / takes: the takes come back best first
        from rhythmflow.review import review_metadata
        from rhythmflow.serve.review import run_review

        song, items, order = run_review(p, settings, generator, song, on_event, cancel)
        names = resolve_outputs(out_dir / "song", p.request.format, p.request.sample_format,
                                len(order))
        extra, takes = review_metadata(items, order, [n.name for n in names], song.seeds)
        if p.review.takes <= 1:
            takes = None
    if not still_owned():
        raise LostLease("the lease was taken over before the files were written")
    from rhythmflow.review import write_sung_lrc
    from rhythmflow.serve.review import output_entry

    r = p.request
    paths = resolve_outputs(out_dir / "song", r.format, r.sample_format, r.batch)
    on_event(events.StageStarted("write", f"writing {len(paths)} file(s)"))
    outputs = []
    for k, path in enumerate(paths):
        i = order[k]
        write_audio(path, song.audio[i], song.sample_rate, **p.write.audio_kwargs())
        meta = dict(song.metadata, output=path.name, index=k, seed=song.seeds[i],
                    job=job["id"], **extra[k], **({"takes": takes} if takes else {}))
        if meta.get("lines"):  # the lines as sung, beside the song (an instrumental has none)
            meta["lrc_file"] = write_sung_lrc(path, meta["lines"]).name
        write_sidecar(path, meta)
        outputs.append({"index": k, "file": path.name, "format": r.format,
                        "seed": song.seeds[i], **output_entry(meta, p.frames)})
    buf = io.BytesIO()
    np.save(buf, song.latents[order].float().numpy())  # in the outputs' order
    atomic_write_bytes(out_dir / "latents.npy", buf.getvalue())
    on_event(events.Result("completed", outputs=tuple(o["file"] for o in outputs),
                           seeds=tuple(o["seed"] for o in outputs)))
    return p, outputs, dict(song.metadata.get("timings", {}))


class LostLease(Exception):
    """Another worker owns the job now; this one must not write anything more."""


def safe_child(root: Path, name: str) -> Path:
    """``root/name`` for a plain file name only (no separators, no '..'); else RequestError."""
    if not name or name != os.path.basename(name) or name in (".", "..") or "\x00" in name:
        raise RequestError(f"bad file name {name!r}")
    return root / name
