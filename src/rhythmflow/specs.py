"""The official DiffRhythm model family: the one place its facts live, each release's DiT
architecture (:class:`DiTConfig`, :data:`PRESETS`) included.

Every other module reads these numbers from here (the latent rate, the sample rate, the frame
counts, the allowed durations, the Hub repos and file names, the default steps per device).

* A latent frame is ``HOP = 2048`` audio samples at ``SAMPLE_RATE = 44100`` Hz (≈ 46.4 ms).
* *base* models (``max_frames = 2048``) make exactly 95 s songs; *full* models
  (``max_frames = 6144``) make 96–285 s songs, as the original allows.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rhythmflow.errors import UsageError

SAMPLE_RATE = 44100
HOP = 2048  # audio samples per latent frame
FRAME_RATE = SAMPLE_RATE / HOP  # latent frames per second
LATENT_CHANNELS = 64
BASE_FRAMES = 2048
FULL_FRAMES = 6144
VAE_REPO = "ASLP-lab/DiffRhythm-vae"
VAE_FILE = "vae_model.pt"
#: bytes per element of each arithmetic (weights and activations)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}
#: The original's sway-sampling coefficient (``schedule`` "sway"; Sway Sampling, F5-TTS).
SWAY_COEF = -1.0
#: Default solver steps per device kind (the seed document's advice: few steps on a CPU).
DEFAULT_STEPS = {"cpu": 8, "mps": 16, "cuda": 32}


@dataclass(frozen=True)
class ModelSpec:
    """One official model: its name, Hub repo and file, frame count and allowed durations."""

    name: str
    repo: str
    file: str
    max_frames: int
    min_seconds: float
    max_seconds: float

    @property
    def family(self) -> str:
        return "base" if self.max_frames == BASE_FRAMES else "full"

    @property
    def default_seconds(self) -> float:
        return self.max_seconds

    def check_duration(self, seconds: float, *, field: str = "duration") -> None:
        """UsageError unless ``seconds`` is a duration this model generates."""
        if self.min_seconds == self.max_seconds:
            if seconds != self.max_seconds:
                raise UsageError(
                    f"{field} {seconds:g}: base models generate exactly {self.max_seconds:g} s; "
                    f"use a full model for {FULL.min_seconds:g}-{FULL.max_seconds:g} s",
                    field=field)
        elif not self.min_seconds <= seconds <= self.max_seconds:
            raise UsageError(f"{field} {seconds:g}: full models generate "
                             f"{self.min_seconds:g}-{self.max_seconds:g} s", field=field)


BASE = ModelSpec("v1.2-base", "ASLP-lab/DiffRhythm-1_2", "cfm_model.pt", BASE_FRAMES, 95.0, 95.0)
FULL = ModelSpec("v1.2-full", "ASLP-lab/DiffRhythm-1_2-full", "cfm_model.pt", FULL_FRAMES,
                 96.0, 285.0)

#: The four official models.
MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        BASE,
        FULL,
        ModelSpec("v1.0-base", "ASLP-lab/DiffRhythm-base", "cfm_model.pt", BASE_FRAMES, 95.0, 95.0),
        ModelSpec("v1.0-full", "ASLP-lab/DiffRhythm-full", "cfm_model.pt", FULL_FRAMES, 96.0,
                  285.0),
    )
}
#: Short names accepted everywhere a model name is.
ALIASES = {"base": BASE.name, "full": FULL.name}
MODEL_NAMES = (*ALIASES, *MODELS)


def get_spec(name: str, *, field: str = "model") -> ModelSpec:
    """The spec of an official model name or alias; UsageError naming ``field`` otherwise."""
    key = ALIASES.get(name, name)
    if key not in MODELS:
        raise UsageError(f"{field}: unknown model {name!r}; choose one of "
                         f"{', '.join(MODEL_NAMES)}", field=field)
    return MODELS[key]


def spec_for_frames(max_frames: int) -> ModelSpec:
    """The family member a checkpoint with ``max_frames`` behaves like (durations, last-line
    rule); any frame count other than the base one is treated as a full model."""
    return BASE if max_frames == BASE_FRAMES else FULL


def model_for_duration(seconds: float | None) -> ModelSpec:
    """The default model for a requested duration: base for none or ≤ 95 s, else full."""
    return BASE if seconds is None or seconds <= BASE.max_seconds else FULL


def frames_for(max_frames: int, seconds: float) -> int:
    """Latent frames of a song: all of a base model's frames, else ``seconds`` at the latent
    rate, capped at ``max_frames`` (the original's rule)."""
    end = BASE_FRAMES if max_frames == BASE_FRAMES else int(seconds * FRAME_RATE)
    return min(end, max_frames)


def frame_of(seconds: float) -> int:
    """Latent frame index of a time, truncated toward zero as the original computes it."""
    return int(seconds * SAMPLE_RATE / HOP)


# --- each release's DiT architecture (the velocity network) --------------------------------

COND_DIM = 512  # hard-wired in the original: time / start / duration / style width
TIME_SINUS_DIM = 256


@dataclass(frozen=True)
class DiTConfig:
    """Architecture of the DiffRhythm velocity network (a DiT over VAE latents).

    ``heads`` is the *effective* attention head count. The original builds a ``LlamaConfig``
    without passing its ``heads`` argument, so the transformers default of 32 always applies;
    configs that say otherwise (e.g. ``heads=8``) are read through :meth:`from_official`.
    """

    dim: int = 2048
    depth: int = 16
    ff_mult: int = 4
    text_dim: int = 512
    conv_layers: int = 4
    mel_dim: int = 64
    text_num_embeds: int = 363
    max_frames: int = BASE_FRAMES
    heads: int = 32
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise UsageError(f"dim={self.dim} must split into {self.heads} heads of even size")
        if self.text_dim != COND_DIM:
            raise UsageError(f"text_dim must be {COND_DIM} (the text-fusion layers are 512 wide)")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def has_duration_embed(self) -> bool:
        """The original adds a song-duration embedding only for max_frames == 6144 exactly."""
        return self.max_frames == FULL_FRAMES

    @property
    def n_fusion(self) -> int:
        return self.depth // 2

    @property
    def ff_dim(self) -> int:
        return self.dim * self.ff_mult

    @property
    def in_features(self) -> int:
        return 2 * self.mel_dim + self.text_dim + 2 * COND_DIM

    @property
    def param_count(self) -> int:
        """Parameters of the network this config builds, counted analytically (no torch; a test
        checks it against the built model)."""
        d, t, m, ff = self.dim, self.text_dim, self.mel_dim, self.ff_dim
        time_mlp = TIME_SINUS_DIM * COND_DIM + COND_DIM + COND_DIM * COND_DIM + COND_DIM
        times = (3 if self.has_duration_embed else 2) * time_mlp
        text = (self.text_num_embeds + 1) * t + self.conv_layers * (4 * t * t + 17 * t)
        inputs = d * self.in_features + d + 2 * (d * (d // 16) * 31 + d)
        blocks = self.depth * (4 * d * d + 3 * d * ff + 2 * d)
        fusion = self.n_fusion * (t * d + d)
        out = 2 * d * COND_DIM + 2 * d + m * d + m
        return times + text + inputs + blocks + fusion + out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiTConfig:
        """Build from our own format; unknown keys raise."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UsageError(f"unknown DiTConfig keys {unknown}; known: {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_official(cls, d: dict[str, Any], *, max_frames: int | None = None) -> DiTConfig:
        """Build from an official DiffRhythm config (``{"model": {...}}``, the golden
        ``{"dit_kwargs": {...}}`` or the flat DiT kwargs). ``heads``/``dim_head`` are ignored as
        upstream ignores them; other unknown keys raise. ``max_frames`` applies when the config
        does not say (official configs leave it to the model: 2048 base, 6144 full)."""
        kw = d.get("model", d.get("dit_kwargs", d))
        if not isinstance(kw, dict):
            raise UsageError("model config: expected a JSON object with the DiT arguments")
        ignored = {
            "heads",
            "dim_head",
            "dropout",
            "qk_norm",
            "pe_attn_head",
            "long_skip_connection",
        }
        known = {
            "dim",
            "depth",
            "ff_mult",
            "text_dim",
            "conv_layers",
            "mel_dim",
            "text_num_embeds",
            "max_frames",
        }
        unknown = sorted(set(kw) - known - ignored)
        if unknown:
            raise UsageError(f"model config: unknown keys {unknown}; known: {sorted(known)}")
        args = {k: v for k, v in kw.items() if k in known}
        if max_frames is not None:
            args.setdefault("max_frames", max_frames)
        return cls(**args)


def load_config_file(path: str | Path, *, max_frames: int | None = None) -> DiTConfig:
    """Read a model config JSON file (official or our own ``DiTConfig.to_dict`` format);
    ``max_frames`` is used when the file does not give it."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"model config {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"model config {path} is not valid JSON: {exc}") from None
    if not isinstance(d, dict):
        raise UsageError(f"model config {path}: expected a JSON object")
    names = {f.name for f in dataclasses.fields(DiTConfig)}
    if set(d) <= names and "heads" not in d:
        if max_frames is not None:
            d = {"max_frames": max_frames, **d}
        return DiTConfig.from_dict(d)
    return DiTConfig.from_official(d, max_frames=max_frames)


_FULL = dict(
    dim=2048, depth=16, ff_mult=4, text_dim=512, conv_layers=4, mel_dim=64, text_num_embeds=363
)

#: The architecture of each official model (:data:`MODELS`). All share it.
PRESETS: dict[str, DiTConfig] = {
    name: DiTConfig(**_FULL, max_frames=spec.max_frames) for name, spec in MODELS.items()
}

def preset(name: str) -> DiTConfig:
    return PRESETS[get_spec(name).name]
