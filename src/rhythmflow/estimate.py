"""Time and memory estimates made before sampling, and the fits-or-refuse decision.

Memory is analytic (weights, conditioning, the largest activations, VAE). Time is calibrated:
one model evaluation is timed at a short length on this machine, converted to achieved GFLOP/s
with the analytic FLOP count and extrapolated to the song length (attention included).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rhythmflow.config import DiTConfig
from rhythmflow.errors import ResourceError

log = logging.getLogger(__name__)

GB = 1024**3
VAE_BYTES = int(1.2 * GB)  # TorchScript VAE weights (0.63 GB) + one decode chunk's activations
OVERHEAD_BYTES = int(0.5 * GB)  # interpreter, torch, lyrics front-end
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    conditioning: int
    activations: int
    vae: int
    total: int
    available: int | None

    @property
    def fits(self) -> bool:
        return self.available is None or self.total <= self.available

    def describe(self) -> str:
        avail = f" of {self.available / GB:.1f} GB available" if self.available else ""
        return (f"~{self.total / GB:.1f} GB{avail} (weights {self.weights / GB:.1f}, "
                f"conditioning {self.conditioning / GB:.2f}, activations {self.activations / GB:.2f}, "
                f"VAE {self.vae / GB:.1f})")


def available_memory(device: str) -> int | None:
    """Bytes free for a new allocation on ``device`` (None when unknown)."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


def estimate_memory(config: DiTConfig, frames: int, *, batch: int = 1, cfg: bool = True,
                    dtype: str = "float32", quantize: str = "none",
                    device: str = "cpu") -> MemoryEstimate:
    """Peak bytes of a generation: weights + conditioning + one forward's activations + VAE."""
    from rhythmflow.perf import param_count

    elt = _BYTES[dtype]
    params = param_count(config)
    big = config.depth * (4 * config.dim**2 + 3 * config.dim * config.ff_dim)
    weights = (params - big) * elt + big * (_BYTES["int8"] if quantize == "int8" else elt)
    rows = batch * (2 if cfg else 1)
    conditioning = rows * frames * config.dim * (1 + config.n_fusion) * elt
    # live at once inside a layer: residual, normed input, gate, up, product (+ attention q/k/v/o)
    activations = rows * frames * (2 * config.ff_dim + 6 * config.dim) * max(elt, 4)
    total = weights + conditioning + activations + VAE_BYTES + OVERHEAD_BYTES
    return MemoryEstimate(weights, conditioning, activations, VAE_BYTES, total,
                          available_memory(device))


def refuse_if_too_big(mem: MemoryEstimate, *, batch: int, frames: int, dtype: str,
                      device: str) -> None:
    """Raise ResourceError with the flags that would make the job fit."""
    if mem.fits:
        return
    hints = []
    if batch > 1:
        hints.append("--batch 1")
    if dtype == "float32" and device.startswith("cuda"):
        hints.append("--dtype bfloat16")
    if device == "cpu":
        hints.append("--quantize int8")
    hints.append("a shorter --duration" if frames > 2048 else "closing other programs")
    raise ResourceError(
        f"not enough memory: this job needs {mem.describe()}. Try {', '.join(hints)}."
    )


@dataclass(frozen=True)
class TimeEstimate:
    seconds_per_eval: float  # one guided (doubled-batch) evaluation at the song length
    sampling: float  # all steps
    steps: int
    gflops: float  # achieved by the calibration forward

    def describe(self) -> str:
        from rhythmflow.sampling.progress import format_seconds

        return (f"~{format_seconds(self.sampling)} for {self.steps} steps "
                f"({self.seconds_per_eval:.1f} s per evaluation, {self.gflops:.0f} GFLOP/s measured)")


def calibrate(model, frames: int, *, cfg: bool, calib_frames: int = 128) -> float:
    """Achieved GFLOP/s of one forward at ``min(frames, calib_frames)`` frames on this machine."""
    from rhythmflow.perf import forward_flops, time_forward

    f0 = max(8, min(frames, calib_frames))
    rows = 2 if cfg else 1
    seconds = time_forward(model, f0, rows, repeats=1, warmup_frames=min(f0, 16))
    return forward_flops(model.config, f0, rows)["total"] / max(seconds, 1e-9) / 1e9


def estimate_time(config: DiTConfig, frames: int, steps: int, *, gflops: float, cfg: bool,
                  solver: str = "euler", guided_fraction: float = 1.0, batch: int = 1) -> TimeEstimate:
    from rhythmflow.perf import estimate_seconds, forward_flops

    total = batch * estimate_seconds(config, frames, steps, cfg=cfg, solver=solver, gflops=gflops,
                                     guided_fraction=guided_fraction)
    per_eval = batch * forward_flops(config, frames, 2 if cfg else 1)["total"] / (gflops * 1e9)
    return TimeEstimate(per_eval, total, steps, gflops)


def steps_for_budget(config: DiTConfig, frames: int, budget: float, *, gflops: float, cfg: bool,
                     solver: str, batch: int, overhead: float, max_steps: int = 32) -> int:
    """The largest step count whose estimate fits ``budget`` seconds (minus ``overhead``)."""
    best = 0
    for steps in range(1, max_steps + 1):
        t = estimate_time(config, frames, steps, gflops=gflops, cfg=cfg, solver=solver,
                          batch=batch).sampling
        if t + overhead <= budget:
            best = steps
    if best == 0:
        one = estimate_time(config, frames, 1, gflops=gflops, cfg=cfg, solver=solver, batch=batch)
        raise ResourceError(
            f"--time-budget {budget:.0f}s is too short: even 1 step takes ~{one.sampling + overhead:.0f}s "
            f"here. Raise the budget, use a shorter --duration, --cfg-strength 0, or a GPU."
        )
    return best
