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
from rhythmflow.runtime import available_memory

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
    seconds_per_eval: float  # one model evaluation (all rows: batch × [cond; uncond])
    sampling: float  # all steps
    steps: int
    evaluations: int

    def describe(self) -> str:
        from rhythmflow.sampling.progress import format_seconds

        return (f"~{format_seconds(self.sampling)} for {self.steps} steps "
                f"({self.evaluations} evaluations of {self.seconds_per_eval:.3g} s)")


def calibrate(model, frames: int, *, rows: int, calib_frames: int = 128,
              direct_below: float = 5.0, timer=None) -> float:
    """Seconds of one evaluation of ``rows`` sequences of ``frames`` frames on this machine.

    Times forwards at ``calib_frames`` and half of it, fits fixed cost + seconds per FLOP (the
    fixed part dominates tiny models, the FLOP part full-size ones) and extrapolates with the
    analytic FLOP count, attention included. When that predicts under ``direct_below`` seconds,
    the real length is cheap enough to time directly.

    ``timer(model, frames, rows, *, warmup_frames) -> seconds`` times one forward; the default is
    :func:`rhythmflow.perf.time_forward` (a test passes a deterministic one to check the fit).
    """
    from rhythmflow.perf import forward_flops, time_forward

    if timer is None:
        def timer(m, f, r, *, warmup_frames):
            return time_forward(m, f, r, repeats=1, warmup_frames=warmup_frames)

    f1 = max(1, min(frames, calib_frames))
    t1 = timer(model, f1, rows, warmup_frames=min(f1, 16))
    if f1 == frames:
        return t1
    f0 = max(1, f1 // 2)
    t0 = timer(model, f0, rows, warmup_frames=0)
    w0, w1, w = (forward_flops(model.config, f, rows)["total"] for f in (f0, f1, frames))
    per_flop = (t1 - t0) / (w1 - w0) if t1 > t0 and w1 > w0 else t1 / w1
    predicted = max(t1 - per_flop * w1, 0.0) + per_flop * w
    if predicted <= direct_below:
        return timer(model, frames, rows, warmup_frames=0)
    return predicted


def estimate_time(steps: int, seconds_per_eval: float, *, solver: str = "euler") -> TimeEstimate:
    """Sampling seconds for ``steps`` solver steps at ``seconds_per_eval`` per evaluation."""
    from rhythmflow.sampling.solvers import get_solver

    evals = steps * get_solver(solver).evals_per_step
    return TimeEstimate(seconds_per_eval, evals * seconds_per_eval, steps, evals)


def steps_for_budget(budget: float, seconds_per_eval: float, *, solver: str, overhead: float,
                     max_steps: int = 32) -> int:
    """The largest step count (≤ ``max_steps``) whose sampling plus ``overhead`` fits ``budget``."""
    fits = [s for s in range(1, max_steps + 1)
            if estimate_time(s, seconds_per_eval, solver=solver).sampling + overhead <= budget]
    if not fits:
        one = estimate_time(1, seconds_per_eval, solver=solver).sampling + overhead
        raise ResourceError(
            f"--time-budget {budget:.0f}s is too short: even 1 step takes ~{one:.0f}s here. "
            "Raise the budget, use a shorter --duration, --cfg-strength 0, or a GPU."
        )
    return fits[-1]
