"""Tiny random-weight models and checkpoint writers in the official container formats.

Used by the test-suite, ``rhythmflow diagnose --smoke`` and the benchmarks (random weights say
nothing about music; they exercise every code path at any size).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from rhythmflow.config import DiTConfig
from rhythmflow.model.blocks import text_position_table
from rhythmflow.model.checkpoint import PREFIX
from rhythmflow.model.dit import DiT
from rhythmflow.specs import BASE_FRAMES

TINY = DiTConfig(
    dim=64,
    depth=2,
    ff_mult=2,
    text_dim=512,
    conv_layers=1,
    mel_dim=64,
    text_num_embeds=363,
    max_frames=BASE_FRAMES,
)


@torch.no_grad()
def random_dit(
    config: DiTConfig = TINY,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> DiT:
    """A DiT with every parameter drawn at random (fan-in scaled), deterministic per seed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):  # no default initialisation: every value is drawn below
        model = DiT(config)
    model = model.to_empty(device="cpu")
    model.text_embed.freqs_cis = text_position_table(config.max_frames, config.text_dim)
    for name, p in model.named_parameters():
        if name.endswith(("norm.weight", "layernorm.weight")):
            values = 1 + 0.1 * torch.randn(p.shape, generator=gen)
        elif p.ndim >= 2 and "text_embed.text_embed" not in name:
            fan_in = p[0].numel()
            values = torch.randn(p.shape, generator=gen) / fan_in**0.5
        elif p.ndim >= 2:
            values = torch.randn(p.shape, generator=gen)
        else:
            values = 0.05 * torch.randn(p.shape, generator=gen)
        p.copy_(values)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def save_checkpoint(
    model: DiT, path: str | os.PathLike, *, form: str = "pt", dtype: torch.dtype = torch.float16
) -> Path:
    """Write ``model`` as an official container: "pt" (model_state_dict), "ema"
    (ema_model_state_dict with initted/step) or "safetensors" (flat)."""
    path = Path(path)
    sd = {
        PREFIX + k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()
    }
    if form == "pt":
        torch.save({"model_state_dict": sd}, path)
    elif form == "ema":
        ema = {"initted": torch.tensor(True), "step": torch.tensor(1000)}
        ema.update({"ema_model." + k: v for k, v in sd.items()})
        torch.save({"ema_model_state_dict": ema}, path)
    elif form == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        raise ValueError(f"unknown checkpoint form {form!r}")
    return path
