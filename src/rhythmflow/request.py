"""GenerationRequest: everything a user asks for, as one frozen, JSON-serialisable value.

A request is data only: it names no open files and holds no tensors, so it can be stored in a
job table, sent over HTTP and written into a song's sidecar. Every field is checked on
construction (type, range, contradictions); a bad value raises :class:`UsageError` whose
message starts with the *field* name (``steps: …``) and whose ``field`` attribute names it, so
each front end can point at it in its own words (the CLI as ``--steps``).

Decisions that depend on the model or the machine (duration → frames, default steps, dtype,
whether it fits) are made by :func:`rhythmflow.planner.core.plan`, not here. Importing this module is
cheap (no torch).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

from rhythmflow.errors import UsageError
from rhythmflow.specs import MODEL_NAMES

#: solver name → model evaluations per step (the sampler's table; a test keeps them equal)
SOLVER_EVALS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
SCHEDULES = ("uniform", "sway")
#: audio format → the sample formats it can hold
FORMAT_SAMPLES = {"wav": ("int16", "int24", "float32"), "flac": ("int16", "int24"),
                  "mp3": ("int16",), "ogg": ("int16",)}
FORMATS = tuple(FORMAT_SAMPLES)
SAMPLE_FORMATS = FORMAT_SAMPLES["wav"]
QUANTIZE = ("none", "int8")
#: every dtype name a request, the command line or a server setting accepts → its torch name
#: (the one vocabulary: everything else asks here)
DTYPE_ALIASES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16",
                 "bf16": "bfloat16", "float16": "float16", "fp16": "float16", "half": "float16"}
DTYPE_NAMES = ("auto", *DTYPE_ALIASES)
#: what the VAE decoder's residual convolutions may run in
VAE_DTYPES = ("float32", "bfloat16")
VAE_DTYPE_NAMES = ("auto", *(k for k, v in DTYPE_ALIASES.items() if v in VAE_DTYPES))
STYLE_FIELDS = ("style_prompt", "style_embedding", "style_embedding_file", "style_audio")
EMBEDDING_DIM = 512
MAX_SEED = 2**64 - 1  # torch.Generator seeds are 64-bit; seed + i must fit
MAX_STEPS = 1000
MAX_BATCH = 64
MAX_REPAIR_ROUNDS = 10


def _fail(field: str, message: str) -> UsageError:
    return UsageError(f"{field}: {message}", field=field)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. Defaults are the original's where it has one; ``None`` means "let the
    plan decide" (e.g. ``steps=None`` → 8 on a CPU, 32 on a GPU; ``seed=None`` → drawn and
    recorded)."""

    # lyrics: timed LRC text, or plain/sectioned lyrics timed automatically; neither = instrumental
    lrc: str = ""
    lyrics: str | None = None
    # style: exactly one of these (the plan requires one)
    style_prompt: str | None = None
    style_embedding: tuple[float, ...] | None = None  # 512 floats
    style_embedding_file: str | None = None  # a .npy file
    style_audio: str | None = None  # a reference audio file (>= 10 s)
    negative_style: str | None = None  # .npy file (default: the release's)
    negative_style_embedding: tuple[float, ...] | None = None
    # model and weights
    model: str | None = None  # official name; None = by duration (base for 95 s, else full)
    checkpoint: str | None = None  # a local checkpoint instead of an official model
    model_config: str | None = None
    vae: str | None = None
    # song and sampler
    duration: float | None = None
    steps: int | None = None
    solver: str = "euler"
    schedule: str = "uniform"
    cfg_strength: float = 4.0
    guidance_interval: tuple[float, float] | None = None
    seed: int | None = None
    batch: int = 1
    keep_last_line: bool = False
    # edit mode: regenerate these segments (seconds, end -1 = song end) of a reference song
    ref_song: str | None = None
    edit_segments: tuple[tuple[float, float], ...] | None = None
    # output
    format: str = "wav"
    sample_format: str = "int16"
    loudness: float | None = None  # LUFS; None = the original's peak normalisation
    # limits
    time_budget: float | None = None
    timeout: float | None = None
    anytime: bool = False
    estimate: bool = True  # time one evaluation on the loaded model before sampling
    # runtime wishes
    quantize: str = "none"
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    chunked: bool = True
    vae_dtype: str = "auto"  # the VAE decoder's residual convolutions (auto, float32, bfloat16)
    # after decoding (rhythmflow.review): score, repair, keep takes
    takes: int = 1  # N seeds (seed … seed+N-1), each kept and scored, best first
    check: bool = False  # transcribe every line and score it (phoneme error rate)
    repair: bool = False  # regenerate the lines whose PER is over repair_threshold
    repair_rounds: int = 2
    repair_threshold: float = 0.5
    asr_command: str | None = None  # a recogniser program: "CMD {wav} {start} {end} {line} {lang}"
    asr_model: str | None = None  # a local transformers Whisper folder (default: the pinned one)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            fixed = _CHECKS[f.name](f.name, value)
            if fixed is not value:
                object.__setattr__(self, f.name, fixed)
        self._check_combinations()

    def require_style(self) -> None:
        """UsageError naming ``style_prompt`` unless the request names a style (the plan asks
        this first: a request without one is refused before any weights are loaded)."""
        if not any(getattr(self, n) is not None for n in STYLE_FIELDS):
            raise _fail("style_prompt", "a style is required: a text prompt (style_prompt), a "
                        "reference audio file (style_audio) or a 512-number embedding "
                        "(style_embedding or style_embedding_file)")

    def _check_combinations(self) -> None:
        if self.lyrics is not None and self.lrc:
            raise _fail("lyrics", "give either timed lyrics (lrc) or plain lyrics, not both")
        styles = [n for n in STYLE_FIELDS if getattr(self, n) is not None]
        if len(styles) > 1:
            raise _fail(styles[1], f"give one style source, not {' and '.join(styles)}")
        if self.negative_style is not None and self.negative_style_embedding is not None:
            raise _fail("negative_style", "give a negative style file or embedding, not both")
        if self.model is not None and self.checkpoint is not None:
            raise _fail("checkpoint", "use either model or checkpoint, not both")
        if self.model_config is not None and self.checkpoint is None:
            raise _fail("model_config", "it describes a checkpoint; give checkpoint too")
        if (self.ref_song is None) != (self.edit_segments is None):
            missing = "edit_segments" if self.edit_segments is None else "ref_song"
            raise _fail(missing, "edit mode needs both ref_song and edit_segments")
        if self.sample_format not in FORMAT_SAMPLES[self.format]:
            can = " or ".join(FORMAT_SAMPLES[self.format])
            raise _fail("sample_format", f"{self.sample_format} cannot be stored in "
                        f"{self.format} ({self.format} holds {can}); write wav or use {can}")
        if self.takes > 1 and self.batch not in (1, self.takes):
            raise _fail("takes", f"takes {self.takes} are sampled as a batch of {self.takes}; "
                        f"drop batch {self.batch}")
        if self.asr_command is not None and self.asr_model is not None:
            raise _fail("asr_model", "give one recogniser: asr_command or asr_model, not both")
        if self.seed is not None and self.seed + max(self.batch, self.takes) - 1 > MAX_SEED:
            raise _fail("seed", f"seed + batch - 1 must be <= {MAX_SEED}")

    @property
    def style_source(self) -> str | None:
        """The style field that is set, if any."""
        return next((n for n in STYLE_FIELDS if getattr(self, n) is not None), None)

    @property
    def edit(self) -> bool:
        return self.ref_song is not None

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-able (tuples become lists); ``from_dict`` gives the request back."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerationRequest:
        """Build from a dict (JSON); unknown keys and bad values raise UsageError naming the field."""
        if not isinstance(d, dict):
            raise UsageError(f"a request must be a JSON object, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in names:
                raise UsageError(f"{key}: unknown field; known fields: {', '.join(names)}",
                                 field=str(key))
        return cls(**d)

    def replace(self, **changes: Any) -> GenerationRequest:
        return dataclasses.replace(self, **changes)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


# ---- per-field checks: (field, value) -> the value, normalised; UsageError if bad -------------


def _optional(check):
    def wrapped(field: str, v: Any) -> Any:
        return None if v is None else check(field, v)

    return wrapped


def _text(field: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _fail(field, f"must be text, got {type(v).__name__}")
    return v


def _nonempty_text(field: str, v: Any) -> str:
    v = _text(field, v)
    if not v.strip():
        raise _fail(field, "must not be empty")
    return v


def _flag(field: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise _fail(field, f"must be true or false, got {v!r}")
    return v


def _choice(options: tuple[str, ...] | dict):
    def check(field: str, v: Any) -> str:
        if not isinstance(v, str) or v not in options:
            raise _fail(field, f"unknown value {v!r}; choose one of {', '.join(options)}")
        return v

    return check


def _whole(lo: int, hi: int):
    def check(field: str, v: Any) -> int:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not _is_int(v):
            raise _fail(field, f"must be a whole number, got {v!r}")
        if not lo <= v <= hi:
            raise _fail(field, f"must be between {lo} and {hi}, got {v}")
        return v

    return check


def _real(*, positive: bool = False, lo: float | None = None, hi: float | None = None):
    def check(field: str, v: Any) -> float:
        if not _is_number(v) or not math.isfinite(v):
            raise _fail(field, f"must be a finite number, got {v!r}")
        v = float(v)
        if positive and v <= 0:
            raise _fail(field, f"must be > 0, got {v:g}")
        if lo is not None and v < lo or hi is not None and v > hi:
            raise _fail(field, f"must be between {lo:g} and {hi:g}, got {v:g}")
        return v

    return check


def _embedding(field: str, v: Any) -> tuple[float, ...]:
    if not isinstance(v, (list, tuple)) or len(v) != EMBEDDING_DIM:
        n = len(v) if isinstance(v, (list, tuple)) else type(v).__name__
        raise _fail(field, f"must be a list of {EMBEDDING_DIM} numbers, got {n}")
    if not all(_is_number(x) and math.isfinite(x) for x in v):
        raise _fail(field, "must hold finite numbers only")
    return tuple(float(x) for x in v)


def _interval(field: str, v: Any) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_is_number(x) for x in v):
        raise _fail(field, f"must be [lo, hi], got {v!r}")
    lo, hi = float(v[0]), float(v[1])
    if not 0 <= lo <= hi <= 1:
        raise _fail(field, f"must satisfy 0 <= lo <= hi <= 1, got [{lo:g}, {hi:g}]")
    return lo, hi


def parse_segments(spec: str | Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """``"[[0, 10], [40.5, -1]]"`` (JSON) or a list of pairs → ``[(start, end), ...]`` seconds.
    UsageError for anything else, an empty list, or a negative time other than -1."""
    what = f"edit segments {spec!r}"
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            raise UsageError(
                f'{what} are not valid JSON; write e.g. "[[0, 10], [40.5, -1]]"', field="edit_segments") from None
    if not isinstance(spec, (list, tuple)) or not spec:
        raise UsageError(
            f'{what}: give a non-empty list of [start, end] pairs in seconds, e.g. "[[0, 10]]"', field="edit_segments")
    out = []
    for seg in spec:
        if (
            not isinstance(seg, (list, tuple))
            or len(seg) != 2
            or not all(isinstance(t, Real) and not isinstance(t, bool) for t in seg)
        ):
            raise UsageError(f"{what}: {seg!r} is not a [start, end] pair of numbers (seconds)",
                             field="edit_segments")
        start, end = float(seg[0]), float(seg[1])
        for t in (start, end):
            if not math.isfinite(t) or (t < 0 and t != -1):
                raise UsageError(
                    f"{what}: {t:g} in {list(seg)} is not a time; use seconds ≥ 0, or -1 for start/end", field="edit_segments")
        out.append((start, end))
    return out


def _segments(field: str, v: Any) -> tuple[tuple[float, float], ...]:
    try:
        pairs = parse_segments(v)
    except UsageError as exc:
        raise _fail(field, str(exc)) from None
    return tuple((float(a), float(b)) for a, b in pairs)


def _asr_template(field: str, v: Any) -> str:
    """A recogniser command template: shell words (shlex) naming ``{wav}``, the window file."""
    import shlex

    v = _nonempty_text(field, v)
    try:
        words = shlex.split(v)
    except ValueError as exc:
        raise _fail(field, f"cannot split {v!r} into words ({exc}); check the quotes") from None
    if not any("{wav}" in w for w in words):
        raise _fail(field, f"{v!r} never names {{wav}}, the audio window to transcribe; e.g. "
                    '"whisper-cli -m model.bin -nt -f {wav}"')
    try:
        v.format(wav="", start=0.0, end=0.0, line=1, lang="en")
    except (KeyError, IndexError, ValueError) as exc:
        raise _fail(field, f"{v!r}: unknown placeholder {exc}; use {{wav}} {{start}} {{end}} "
                    "{line} {lang} (double other braces: {{ }})") from None
    return v


DEVICE_KINDS = ("cpu", "cuda", "mps")


def check_device(v: str, field: str = "device") -> str:
    """``v`` if it names a device (auto, cpu, cuda, cuda:N, mps); UsageError naming ``field``
    otherwise. The one reader of device strings (requests and server settings alike)."""
    kind, _, index = v.partition(":")
    if kind not in ("auto", *DEVICE_KINDS) or (index and not (
            kind == "cuda" and index.isdigit())):
        raise _fail(field, f"unknown device {v!r}; choose auto, cpu, cuda, cuda:N or mps")
    return v


def _device(field: str, v: Any) -> str:
    return check_device(_text(field, v), field)


_CHECKS = {
    "lrc": _text,
    "lyrics": _optional(_nonempty_text),
    "style_prompt": _optional(_nonempty_text),
    "style_embedding": _optional(_embedding),
    "style_embedding_file": _optional(_nonempty_text),
    "style_audio": _optional(_nonempty_text),
    "negative_style": _optional(_nonempty_text),
    "negative_style_embedding": _optional(_embedding),
    "model": _optional(_choice(MODEL_NAMES)),
    "checkpoint": _optional(_nonempty_text),
    "model_config": _optional(_nonempty_text),
    "vae": _optional(_nonempty_text),
    "duration": _optional(_real(positive=True)),
    "steps": _optional(_whole(1, MAX_STEPS)),
    "solver": _choice(tuple(SOLVER_EVALS)),
    "schedule": _choice(SCHEDULES),
    "cfg_strength": _real(lo=0.0, hi=1e6),
    "guidance_interval": _optional(_interval),
    "seed": _optional(_whole(0, MAX_SEED)),
    "batch": _whole(1, MAX_BATCH),
    "keep_last_line": _flag,
    "ref_song": _optional(_nonempty_text),
    "edit_segments": _optional(_segments),
    "format": _choice(FORMATS),
    "sample_format": _choice(SAMPLE_FORMATS),
    "loudness": _optional(_real(lo=-70.0, hi=0.0)),
    "time_budget": _optional(_real(positive=True)),
    "timeout": _optional(_real(positive=True)),
    "anytime": _flag,
    "estimate": _flag,
    "quantize": _choice(QUANTIZE),
    "device": _device,
    "dtype": _choice(DTYPE_NAMES),
    "threads": _optional(_whole(1, 4096)),
    "chunked": _flag,
    "vae_dtype": _choice(VAE_DTYPE_NAMES),
    "takes": _whole(1, MAX_BATCH),
    "check": _flag,
    "repair": _flag,
    "repair_rounds": _whole(1, MAX_REPAIR_ROUNDS),
    "repair_threshold": _real(lo=0.0, hi=1.0),
    "asr_command": _optional(_asr_template),
    "asr_model": _optional(_nonempty_text),
}
assert set(_CHECKS) == {f.name for f in dataclasses.fields(GenerationRequest)}
