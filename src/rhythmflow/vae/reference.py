"""The reference song of an edit, encoded by the VAE (upstream ``get_reference_latent``).

Shapes: s - audio samples, n_ref - latent frames of the reference song, d - latent channels (64).
"""

from __future__ import annotations

import os

import torch

from rhythmflow.audio import io as audio
from rhythmflow.errors import UsageError
from rhythmflow.specs import SAMPLE_RATE
from rhythmflow.vae.codec import VAE

REFERENCE_PEAK_DBFS = -6.0  # upstream normalises the reference song to -6 dBFS before encoding


def load_reference_song(path: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A reference song as the VAE wants it (upstream ``prepare_audio`` + ``normalize_audio``):
    float32 ``[1, 2, s]`` at ``sample_rate``, stereo, peak at -6 dBFS."""
    x, sr = audio.read_audio(path)
    x = audio.set_channels(audio.resample(x, sr, sample_rate), 2)
    if not float(abs(x).max()) > 0:
        raise UsageError(f"reference song {path} is silent; nothing to edit", field="ref_song")
    return torch.from_numpy(audio.peak_normalize(x, REFERENCE_PEAK_DBFS)).unsqueeze(0)


def reference_latents(
    path: str | os.PathLike, vae: VAE, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Encode a reference song: float32 latents ``[1, n_ref, d]`` (sampler layout), sampled from
    the VAE posterior with ``generator`` as upstream."""
    song = load_reference_song(path, sample_rate=vae.sample_rate)
    return vae.encode(song, generator=generator).transpose(1, 2).contiguous()
