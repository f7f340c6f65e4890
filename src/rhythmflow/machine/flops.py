"""Analytic FLOP counts of the DiT (no torch: the planner and the HTTP service use them).

A multiply-add is 2 FLOPs (as ``torch.utils.flop_counter``); element-wise work (norms,
activations, RoPE, residual adds) is not counted. One *evaluation* is one ``DiT.forward``;
:meth:`DiT.prepare` runs once per generation and is counted by :func:`prepare_flops`.
"""

from __future__ import annotations

from rhythmflow.specs import COND_DIM, TIME_SINUS_DIM, DiTConfig

#: Module groups of :func:`forward_flops`, in the order tables print them.
GROUPS = ("mlp", "projections", "attention", "convolutions", "embeddings", "output")

_CONV_KERNEL, _CONV_GROUPS = 31, 16  # ConvPositionEmbedding (two such convolutions)


def forward_flops(config: DiTConfig, frames: int, batch: int = 1) -> dict[str, int]:
    """FLOPs of one ``DiT.forward`` on [batch, frames] per module group, plus ``"total"``.

    mlp: gate/up/down projections; projections: q/k/v/o; attention: QKᵀ and AV of the softmax
    attention core; convolutions: the two grouped position convolutions; embeddings: the time
    MLP and the x / time columns of the input projection; output: the final AdaLN linear and
    the output projection.
    """
    b, n, d, ff, m = batch, frames, config.dim, config.ff_dim, config.mel_dim
    tok = b * n
    layers = config.depth
    per_conv = 2 * tok * d * (d // _CONV_GROUPS) * _CONV_KERNEL
    time_mlp = 2 * b * (TIME_SINUS_DIM * COND_DIM + COND_DIM * COND_DIM)
    flops = {
        "mlp": layers * 3 * 2 * tok * d * ff,
        "projections": layers * 4 * 2 * tok * d * d,
        "attention": layers * 4 * b * n * n * d,
        "convolutions": 2 * per_conv,
        "embeddings": time_mlp + 2 * tok * m * d + 2 * b * COND_DIM * d,
        "output": 2 * b * COND_DIM * 2 * d + 2 * tok * d * m,
    }
    flops["total"] = sum(flops.values())
    return flops


def prepare_flops(config: DiTConfig, frames: int, batch: int = 1) -> int:
    """FLOPs of one ``DiT.prepare`` (once per generation and conditioning row)."""
    b, n, d, t, m = batch, frames, config.dim, config.text_dim, config.mel_dim
    tok = b * n
    convnext = config.conv_layers * (2 * tok * t * 7 + 2 * 2 * tok * t * 2 * t)
    time_mlps = (
        (2 if config.has_duration_embed else 1)
        * 2
        * b
        * (TIME_SINUS_DIM * COND_DIM + COND_DIM * COND_DIM)
    )
    projection = 2 * tok * (m + t) * d + 2 * b * 2 * COND_DIM * d
    fusion = config.n_fusion * 2 * tok * t * d
    return convnext + time_mlps + projection + fusion
