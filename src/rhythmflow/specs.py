"""The official DiffRhythm model family: the one place its facts live.

Every other module reads these numbers from here (the latent rate, the sample rate, the frame
counts, the allowed durations, the Hub repos and file names, the default steps per device).

* A latent frame is ``HOP = 2048`` audio samples at ``SAMPLE_RATE = 44100`` Hz (≈ 46.4 ms).
* *base* models (``max_frames = 2048``) make exactly 95 s songs; *full* models
  (``max_frames = 6144``) make 96–285 s songs, as the original allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from rhythmflow.errors import UsageError

SAMPLE_RATE = 44100
HOP = 2048  # audio samples per latent frame
FRAME_RATE = SAMPLE_RATE / HOP  # latent frames per second
LATENT_CHANNELS = 64
BASE_FRAMES = 2048
FULL_FRAMES = 6144
VAE_REPO = "ASLP-lab/DiffRhythm-vae"
VAE_FILE = "vae_model.pt"
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
