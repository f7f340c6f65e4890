"""Frozen configuration dataclasses. Unknown keys raise; merging uses ``is not None``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rhythmflow import specs
from rhythmflow.errors import UsageError
from rhythmflow.specs import FRAME_RATE  # noqa: F401  (re-exported for older imports)

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
    max_frames: int = specs.BASE_FRAMES
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
        return self.max_frames == specs.FULL_FRAMES

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

#: The four official models (:data:`rhythmflow.specs.MODELS`). All share the architecture.
PRESETS: dict[str, DiTConfig] = {
    name: DiTConfig(**_FULL, max_frames=spec.max_frames) for name, spec in specs.MODELS.items()
}

#: Short names accepted by the command line.
MODEL_ALIASES = specs.ALIASES


def preset(name: str) -> DiTConfig:
    return PRESETS[specs.get_spec(name).name]
