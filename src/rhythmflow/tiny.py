"""A tiny TorchScript VAE with the official method names and rates, for smoke runs and tests.

decode_export: latents [b, 64, n] → audio [b, 2, n·2048]; encode_export: audio [b, 2, s] →
[b, 128, s // 2048] (mean and scale halves, as the official encoder). Convolution-only with
stride = kernel = hop, so chunked and whole-song decoding agree exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

HOP = 2048


class _TinyVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose1d(64, 2, kernel_size=HOP, stride=HOP)
        self.down = nn.Conv1d(2, 128, kernel_size=HOP, stride=HOP)

    @torch.jit.export
    def decode_export(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.up(z))

    @torch.jit.export
    def encode_export(self, audio: torch.Tensor) -> torch.Tensor:
        return self.down(audio)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_export(z)


def build_tiny_vae(path: str | os.PathLike, *, seed: int = 0) -> Path:
    """Write a random tiny TorchScript VAE to ``path`` and return the path."""
    module = _TinyVAE()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    path = Path(path)
    torch.jit.script(module).save(str(path))
    return path
