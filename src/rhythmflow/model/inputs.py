"""Random, well-formed DiT inputs (for timing, calibration and tests): random weights and inputs
say nothing about music, but they exercise every code path at any size."""

from __future__ import annotations

import torch

from rhythmflow.specs import COND_DIM


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a module without parameters)."""
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def model_inputs(model: torch.nn.Module, frames: int, batch: int = 1, seed: int = 0) -> dict:
    """Random, well-formed DiT inputs on the model's device: ``x``, ``t`` and the ``prepare``
    keyword arguments (drawn on the CPU from ``seed``, so equal on every device)."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    a = dict(
        x=torch.randn(batch, frames, cfg.mel_dim, generator=g),
        t=torch.full((batch,), 0.37),
        cond=torch.zeros(batch, frames, cfg.mel_dim),
        text=torch.randint(0, cfg.text_num_embeds + 1, (batch, frames), generator=g),
        style=torch.nn.functional.normalize(torch.randn(batch, COND_DIM, generator=g), dim=-1),
        start_time=torch.zeros(batch),
        song_duration=torch.full((batch,), frames / cfg.max_frames),
    )
    device = model_device(model)
    return {k: v.to(device) for k, v in a.items()}
