"""A Stable-Audio-style Oobleck decoder with random weights, for benchmarks and tests.

The official DiffRhythm VAE is a TorchScript file whose decoder has this architecture (Stable
Audio Open's ``oobleck`` config): 64 latent channels, strides 2·4·4·8·8 (2048 audio samples per
latent frame), channels 128 × (1, 2, 4, 8, 16), Snake-beta activations, no final tanh. Weight
normalisation is folded into plain convolutions (inference only). Random weights say nothing
about sound; they give the decoder's exact cost, memory and receptive field at any size.

Shapes: b - batch, d - latent channels, n - latent frames, c - audio channels.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class OobleckConfig:
    latent_dim: int = 64
    channels: int = 128
    c_mults: tuple[int, ...] = (1, 2, 4, 8, 16)
    strides: tuple[int, ...] = (2, 4, 4, 8, 8)
    out_channels: int = 2

    @property
    def hop(self) -> int:
        return math.prod(self.strides)


FULL = OobleckConfig()
#: A small decoder with the same structure (and the same 2048 hop), for tests.
SMALL = OobleckConfig(channels=4, c_mults=(1, 1, 2, 2, 2))


class SnakeBeta(nn.Module):
    """``x + 1/(β+ε) · sin²(α·x)`` per channel, α = exp(log α), β = exp(log β)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:  # [b, ch, t]
        alpha, beta = self.alpha.exp(), self.beta.exp()
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)


class ResidualUnit(nn.Module):
    def __init__(self, ch: int, dilation: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(ch),
            nn.Conv1d(ch, ch, 7, dilation=dilation, padding=3 * dilation),
            SnakeBeta(ch),
            nn.Conv1d(ch, ch, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(cin),
            nn.ConvTranspose1d(cin, cout, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
            ResidualUnit(cout, 1),
            ResidualUnit(cout, 3),
            ResidualUnit(cout, 9),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class OobleckDecoder(nn.Module):
    """``decode_export(z [b, d, n]) -> [b, c, n * hop]``. ``encode_export(x [b, c, s]) ->
    [b, 2d, s // hop]`` is *not* Oobleck's encoder (benchmarks only decode): a strided mean over
    each hop and a fixed linear map to mean/scale channels, so the module has the interface (and
    shapes) of the official VAE that the loader checks."""

    def __init__(self, cfg: OobleckConfig = FULL) -> None:
        super().__init__()
        m = (1, *cfg.c_mults)
        layers: list[nn.Module] = [nn.Conv1d(cfg.latent_dim, m[-1] * cfg.channels, 7, padding=3)]
        for i in range(len(m) - 1, 0, -1):
            layers.append(DecoderBlock(m[i] * cfg.channels, m[i - 1] * cfg.channels,
                                       cfg.strides[i - 1]))
        layers += [SnakeBeta(m[1] * cfg.channels),
                   nn.Conv1d(m[1] * cfg.channels, cfg.out_channels, 7, padding=3, bias=False)]
        self.layers = nn.Sequential(*layers)
        self.hop = cfg.hop
        self.encode_proj = nn.Conv1d(cfg.out_channels, 2 * cfg.latent_dim, 1)

    @torch.jit.export
    def decode_export(self, z: Tensor) -> Tensor:
        return self.layers(z)

    @torch.jit.export
    def encode_export(self, x: Tensor) -> Tensor:
        frames = x.shape[-1] // self.hop
        pooled = x[..., : frames * self.hop].reshape(x.shape[0], x.shape[1], frames, self.hop)
        return self.encode_proj(pooled.mean(-1))

    def forward(self, z: Tensor) -> Tensor:
        return self.decode_export(z)


@torch.no_grad()
def random_decoder(cfg: OobleckConfig = FULL, *, seed: int = 0) -> OobleckDecoder:
    """An Oobleck decoder with fan-in scaled random weights and damped residual branches
    (activations stay O(1) through every stage), deterministic per seed, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    model = OobleckDecoder(cfg)
    for mod in model.modules():
        if isinstance(mod, SnakeBeta):
            mod.alpha.copy_(0.1 * torch.randn(mod.alpha.shape, generator=gen))
            mod.beta.copy_(0.1 * torch.randn(mod.beta.shape, generator=gen))
        elif isinstance(mod, (nn.Conv1d, nn.ConvTranspose1d)):
            w = mod.weight  # Conv1d [out, in, k]; ConvTranspose1d [in, out, k], stride-spread
            if isinstance(mod, nn.ConvTranspose1d):
                fan_in = w.shape[0] * w.shape[2] / mod.stride[0]
            else:
                fan_in = w.shape[1] * w.shape[2]
            w.copy_(torch.randn(w.shape, generator=gen) / fan_in**0.5)
            if mod.bias is not None:
                mod.bias.copy_(0.01 * torch.randn(mod.bias.shape, generator=gen))
    for mod in model.modules():  # keep the 15 residual branches small: audio stays O(1)
        if isinstance(mod, ResidualUnit):
            mod.layers[3].weight.mul_(0.1)
    return model.eval().requires_grad_(False)


def save_scripted(model: OobleckDecoder, path: str | os.PathLike) -> Path:
    """Save ``model`` as a TorchScript file, the official VAE's container."""
    torch.jit.script(model).save(str(path))
    return Path(path)


def decode_flops(cfg: OobleckConfig = FULL) -> int:
    """FLOPs (multiply-add = 2) of the convolutions per latent frame (activations not counted)."""
    m = (1, *cfg.c_mults)
    t = 1  # audio-rate steps per latent frame at the current stage
    flops = 2 * cfg.latent_dim * m[-1] * cfg.channels * 7
    for i in range(len(m) - 1, 0, -1):
        cin, cout, s = m[i] * cfg.channels, m[i - 1] * cfg.channels, cfg.strides[i - 1]
        flops += 2 * t * cin * cout * 2 * s  # transposed conv: each input step, kernel 2s
        t *= s
        flops += 3 * 2 * t * (cout * cout * 7 + cout * cout)
    return flops + 2 * t * m[1] * cfg.channels * cfg.out_channels * 7
