"""Tiny TorchScript VAEs for tests (the VAE itself lives in :mod:`rhythmflow.tiny`, shared with
``rhythmflow diagnose --smoke``), plus a module that is not a DiffRhythm VAE."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rhythmflow.tiny import (  # noqa: F401 - re-exported for the tests
    CHANNELS,
    DECODER_REACH,
    ENCODER_REACH,
    HOP,
    LATENT_DIM,
    TinyVAE,
    _script,
    build_tiny_vae,
)


class DecodeOnly(nn.Module):
    """A TorchScript module lacking ``encode_export`` (not a DiffRhythm VAE)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Conv1d(LATENT_DIM, CHANNELS, 1)

    @torch.jit.export
    def decode_export(self, z: torch.Tensor) -> torch.Tensor:
        return self.lin(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_export(z)


def build_decode_only(path: str | Path) -> Path:
    """Save a TorchScript module that has ``decode_export`` but no ``encode_export``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DecodeOnly().eval()
    _script(model).save(str(path))
    return Path(path)
