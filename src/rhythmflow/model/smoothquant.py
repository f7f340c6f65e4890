"""SmoothQuant-style input-channel scaling of the DiT's transformer projections (before int8).

A linear layer ``y = x·Wᵀ`` is unchanged when input channel j of x is divided by ``s_j`` and
column j of W multiplied by it. SmoothQuant (Xiao et al., 2023) picks
``s_j = max|x_j|^α / max|W[:, j]|^(1−α)`` so that a per-tensor activation scale no longer has to
cover a few outlier channels, moving part of their range into the (per-channel quantized)
weights. The division of x is folded into the op that produces x, so nothing is added per call:

* q/k/v and gate/up read a norm's output: the RMSNorm weight is divided by s (one s shared by
  the layers reading the same norm, from their joint column maxima);
* o_proj reads the attention output, a convex mix of v's rows per channel: v_proj's output rows
  are divided by s;
* down_proj reads ``silu(gate)·up``: up_proj's output rows are divided by s.

Every fold is exact in real arithmetic (float32 rounding only). The activation ranges are
calibrated on a few forwards of random inputs (:func:`calibrate`): the paper's per-channel
maximum, or the per-channel RMS, a steadier estimate from few tokens (``--quantize int8``
uses RMS with alpha 0.25, :data:`rhythmflow.model.quantize.SMOOTH_ALPHA`). Trained weights have
the outlier channels SmoothQuant addresses, random weights do not (docs/performance-log.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

#: Calibration: random-input forwards at these (seed, time) pairs, CALIBRATION_FRAMES frames.
CALIBRATION = ((1, 0.2), (2, 0.8))
CALIBRATION_FRAMES = 128


@torch.inference_mode()
def calibrate(model: nn.Module, inputs: Iterable[dict] | None = None, *,
              statistic: str = "max") -> dict[str, Tensor]:
    """Per-input-channel activation range of every ``nn.Linear`` in ``model.transformer_blocks``,
    keyed by the module's name, over forwards of ``inputs`` (dicts of ``x``, ``t`` and the
    ``prepare`` keyword arguments; default: random inputs, :data:`CALIBRATION`).

    ``statistic`` "max": ``max|x_j|`` (SmoothQuant's); "rms": the root mean square of x_j over
    all tokens — a steadier estimate from few tokens (a constant factor between the two does
    not change the quantized model: it scales every s alike).
    """
    from rhythmflow.model.inputs import model_inputs

    if statistic not in ("max", "rms"):
        raise ValueError(f"unknown calibration statistic {statistic!r}; use 'max' or 'rms'")
    if inputs is None:
        inputs = []
        for seed, t in CALIBRATION:
            a = model_inputs(model, CALIBRATION_FRAMES, 1, seed=seed)
            a["t"] = torch.full_like(a["t"], t)
            inputs.append(a)
    stats: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []

    def hook(name):
        def record(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            if statistic == "max":
                m = x.abs().amax(0)
                stats[name] = m if name not in stats else torch.maximum(stats[name], m)
            else:
                stats[name] = x.pow(2).sum(0) + stats.get(name, 0)
                counts[name] = counts.get(name, 0) + x.shape[0]
        return record

    for name, mod in model.transformer_blocks.named_modules():
        if type(mod) is nn.Linear:
            hooks.append(mod.register_forward_pre_hook(hook(name)))
    try:
        for a in inputs:
            a = dict(a)
            x, t = a.pop("x"), a.pop("t")
            model(x, t, model.prepare(**a))
    finally:
        for h in hooks:
            h.remove()
    if statistic == "rms":
        stats = {k: (v / counts[k]).sqrt() for k, v in stats.items()}
    return stats


def smooth_scales(act_max: Tensor, weights: list[Tensor], alpha: float) -> Tensor:
    """``s_j = max|x_j|^α / max_j|W|^(1−α)`` over the columns of all ``weights`` (that read the
    same input), clamped to [1e-5, 1e5]; 1 where a channel never saw a non-zero value."""
    w_max = torch.stack([w.detach().abs().amax(0) for w in weights]).amax(0).float()
    s = act_max.clamp(min=1e-5).pow(alpha) / w_max.clamp(min=1e-5).pow(1 - alpha)
    s = torch.where(act_max > 0, s, torch.ones_like(s))
    return s.clamp(1e-5, 1e5)


@torch.no_grad()
def smooth_dit(model: nn.Module, alpha: float = 0.5, inputs: Iterable[dict] | None = None, *,
               statistic: str = "max") -> None:
    """Calibrate and fold SmoothQuant scales into ``model``'s transformer blocks, in place.

    The model's float output is unchanged up to float32 rounding. ``statistic``: see
    :func:`calibrate`. ``alpha`` in [0, 1]
    (0: nothing moves to the weights; 1: activations fully equalised); ValueError otherwise.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"SmoothQuant alpha must be in [0, 1], got {alpha}")
    start = time.perf_counter()
    maxima = calibrate(model, inputs, statistic=statistic)
    for i, blk in enumerate(model.transformer_blocks):
        at, mlp = blk.self_attn, blk.mlp
        p = f"{i}."
        s = smooth_scales(maxima[p + "self_attn.q_proj"],
                          [at.q_proj.weight, at.k_proj.weight, at.v_proj.weight], alpha)
        blk.input_layernorm.weight.div_(s)
        for lin in (at.q_proj, at.k_proj, at.v_proj):
            lin.weight.mul_(s)
        s = smooth_scales(maxima[p + "self_attn.o_proj"], [at.o_proj.weight], alpha)
        at.v_proj.weight.div_(s[:, None])
        at.o_proj.weight.mul_(s)
        s = smooth_scales(maxima[p + "mlp.gate_proj"], [mlp.gate_proj.weight,
                                                          mlp.up_proj.weight], alpha)
        blk.post_attention_layernorm.weight.div_(s)
        mlp.gate_proj.weight.mul_(s)
        mlp.up_proj.weight.mul_(s)
        s = smooth_scales(maxima[p + "mlp.down_proj"], [mlp.down_proj.weight], alpha)
        mlp.up_proj.weight.div_(s[:, None])
        mlp.down_proj.weight.mul_(s)
    log.info("SmoothQuant scales (alpha %.2f) calibrated and folded into %d blocks in %.1f s",
             alpha, len(model.transformer_blocks), time.perf_counter() - start)
