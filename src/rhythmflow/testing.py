"""A tiny TorchScript VAE with the official method names and rates, for smoke runs and tests.

``decode_export``: latents [b, 64, n] → audio [b, 2, n·2048]; ``encode_export``: audio [b, 2, s]
→ [b, 128, s // 2048] (mean and scale halves, as the official encoder). Both directions are
convolution-only, so each output frame depends on a few neighbouring frames only
(``DECODER_REACH`` / ``ENCODER_REACH``): chunked processing with ``overlap // 2`` larger than that
reach reproduces whole-song processing up to float round-off.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from rhythmflow.specs import HOP, LATENT_CHANNELS

LATENT_DIM = LATENT_CHANNELS
CHANNELS = 2
DECODER_REACH = 2  # frames each side a decoded frame depends on (kernel 5)
ENCODER_REACH = 1  # frames each side an encoded frame depends on (kernel 3)


class TinyVAE(nn.Module):
    def __init__(self, hop: int = HOP, latent_dim: int = LATENT_DIM, hidden: int = 8) -> None:
        super().__init__()
        self.dec_mix = nn.Conv1d(
            latent_dim, hidden, kernel_size=2 * DECODER_REACH + 1, padding=DECODER_REACH
        )
        self.dec_up = nn.ConvTranspose1d(hidden, CHANNELS, kernel_size=hop, stride=hop)
        self.enc_down = nn.Conv1d(CHANNELS, hidden, kernel_size=hop, stride=hop)
        self.enc_mix = nn.Conv1d(
            hidden, 2 * latent_dim, kernel_size=2 * ENCODER_REACH + 1, padding=ENCODER_REACH
        )

    @torch.jit.export
    def decode_export(self, z: torch.Tensor) -> torch.Tensor:  # [b, 64, n] -> [b, 2, n*hop]
        return self.dec_up(torch.tanh(self.dec_mix(z)))

    @torch.jit.export
    def encode_export(self, x: torch.Tensor) -> torch.Tensor:  # [b, 2, s] -> [b, 128, s//hop]
        return self.enc_mix(torch.tanh(self.enc_down(x)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_export(z)


def _script(model: nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # the format under test is TorchScript, deprecated or not
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return torch.jit.script(model)


def build_tiny_vae(path: str | Path, *, seed: int = 0, hop: int = HOP) -> Path:
    """Build a random-weight :class:`TinyVAE` (deterministic for ``seed``), script it and save it
    to ``path``; the global RNG state is left untouched. Returns the path."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyVAE(hop=hop).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _script(model).save(str(path))
    return path
