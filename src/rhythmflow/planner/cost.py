"""The one cost model: time and memory of a job, before it runs. ``plan``, ``generate`` and
``diagnose`` all read their numbers from here.

Time counts what the user waits for — loading, lyrics, style, sampling, VAE decode:

* sampling = evaluations × seconds per evaluation. Seconds per evaluation come either from a
  *calibration* on the loaded model (:func:`calibrate`: two short timed forwards, fixed cost +
  seconds per FLOP, extrapolated with the analytic FLOP count) or, before anything is loaded,
  from the machine's measured matrix-multiply rate × :data:`DIT_EFFICIENCY` (the forward/GEMM
  ratio measured in ``docs/performance-log.md``) plus a measured fixed cost per forward
  (:func:`forward_overhead`: dispatch and small kernels, which dominate tiny models and are
  negligible at full size), counted once per forward (a split guided evaluation runs two).
* decode = the VAE's FLOPs (:data:`VAE_FLOP_PER_FRAME` per decoded latent frame, the fixed
  windows' overlap included) at the rate the probe measured for the decoder's convolutions in
  the job's VAE dtype (:func:`rhythmflow.machine.vae_probe.decode_seconds`); without that measurement,
  at :data:`VAE_EFFICIENCY` × the matrix-multiply rate.
* loading = weight bytes at :data:`LOAD_BYTES_PER_SECOND`; lyrics and style are small constants.

Memory is analytic (weights, conditioning, the largest activations, VAE) against the memory the
machine reports free.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

from rhythmflow.errors import ResourceError
from rhythmflow.specs import BASE_FRAMES, DTYPE_BYTES, DiTConfig
from rhythmflow.vae.geometry import WEIGHT_BYTES as VAE_WEIGHT_BYTES
from rhythmflow.vae.geometry import decode_memory, decoded_frames

log = logging.getLogger(__name__)

GB = 1024**3
OVERHEAD_BYTES = int(0.5 * GB)  # interpreter, torch, lyrics front end

#: forward FLOP rate / GEMM FLOP rate, measured at full size (docs/performance-log.md: 0.85-1.04)
DIT_EFFICIENCY = 0.9
#: Oobleck decoder FLOPs per latent frame (64 ch, strides 2·4·4·8·8, 128×(1,2,4,8,16) channels)
VAE_FLOP_PER_FRAME = 5.04e9
#: decode FLOP rate / GEMM rate when the decoder's convolutions were not measured: the
#: TorchScript decode measured 0.22-0.25 of float32 GEMMs on CPUs, the eager decoder 1.31-1.45x
#: faster (docs/performance-log.md)
VAE_EFFICIENCY = 0.33
#: reading + casting checkpoint weights (memory-mapped)
LOAD_BYTES_PER_SECOND = 1.0e9
LYRICS_SECONDS = 2.0
#: a text prompt or reference audio loads the 0.7 B-parameter MuQ-MuLan once (cache misses)
STYLE_ENCODER_SECONDS = 30.0


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

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_memory(config: DiTConfig, frames: int, *, batch: int = 1, cfg: bool = True,
                    dtype: str = "float32", quantize: str = "none", layout: str = "batched",
                    available: int | None = None) -> MemoryEstimate:
    """Peak bytes of a generation: weights + every item's conditioning + the activations of ONE
    forward (items are evaluated one at a time; a guided evaluation is one 2-row forward in the
    "batched" layout, two 1-row forwards in "split") + the VAE (weights and the decode:
    :func:`rhythmflow.vae.geometry.decode_memory`), compared with ``available`` bytes (None:
    unknown, always fits)."""
    elt = DTYPE_BYTES[dtype]
    params = config.param_count
    big = config.depth * (4 * config.dim**2 + 3 * config.dim * config.ff_dim)
    weights = (params - big) * elt + big * (DTYPE_BYTES["int8"] if quantize == "int8" else elt)
    conditioning = batch * (2 if cfg else 1) * frames * config.dim * (1 + config.n_fusion) * elt
    rows = 2 if cfg and layout == "batched" else 1  # rows of the one forward live at a time
    # live at once inside a layer: residual, normed input, gate, up, product (+ attention q/k/v/o)
    activations = rows * frames * (2 * config.ff_dim + 6 * config.dim) * max(elt, 4)
    vae = VAE_WEIGHT_BYTES + decode_memory(frames, batch)
    total = weights + conditioning + activations + vae + OVERHEAD_BYTES
    return MemoryEstimate(weights, conditioning, activations, vae, total, available)


def refuse_if_too_big(mem: MemoryEstimate, *, batch: int, frames: int, dtype: str,
                      device: str) -> None:
    """Raise ResourceError with the settings that would make the job fit."""
    if mem.fits:
        return
    hints = []
    if batch > 1:
        hints.append("batch=1")
    if dtype == "float32" and device.startswith("cuda"):
        hints.append("dtype=bfloat16")
    if device == "cpu":
        hints.append("quantize=int8")
    hints.append("a shorter duration" if frames > BASE_FRAMES else "closing other programs")
    raise ResourceError(
        f"not enough memory: this job needs {mem.describe()}. Try {', '.join(hints)}."
    )


@dataclass(frozen=True)
class JobEstimate:
    """Expected seconds of each stage of a job, and how they were obtained (``basis``)."""

    load: float
    lyrics: float
    style: float
    sampling: float
    decode: float
    steps: int
    evaluations: int
    seconds_per_eval: float
    basis: str  # e.g. "calibrated on the loaded model", "GEMM rate 272 GFLOP/s", "unknown"

    @property
    def total(self) -> float:
        return self.load + self.lyrics + self.style + self.sampling + self.decode

    @property
    def known(self) -> bool:
        return self.seconds_per_eval > 0

    def to_dict(self) -> dict:
        return dict(asdict(self), total=self.total)

    def describe(self) -> str:
        from rhythmflow.sampling.progress import format_seconds

        if not self.known:
            return f"{self.steps} steps ({self.evaluations} evaluations); time unknown"
        return (f"~{format_seconds(self.total)} in all: sampling {format_seconds(self.sampling)} "
                f"({self.steps} steps, {self.evaluations} evaluations of "
                f"{self.seconds_per_eval:.3g} s), decode {format_seconds(self.decode)}, "
                f"load {format_seconds(self.load)} ({self.basis})")


def evaluations(steps: int, evals_per_step: int, guided: bool,
                guidance_interval: tuple[float, float] | None) -> tuple[int, float]:
    """(model evaluations, share of them that run guided) for a uniform grid."""
    n = steps * evals_per_step
    if not guided:
        return n, 0.0
    if guidance_interval is None:
        return n, 1.0
    lo, hi = guidance_interval
    inside = sum(1 for k in range(steps) if lo <= k / steps <= hi)
    return n, inside / steps


def seconds_per_eval_from_rate(config: DiTConfig, frames: int, rows: int,
                               gflops: float | None) -> float:
    """One evaluation of ``rows`` sequences at ``gflops`` GEMM throughput × DIT_EFFICIENCY;
    0.0 when the rate is unknown."""
    from rhythmflow.machine.flops import forward_flops

    if not gflops:
        return 0.0
    return forward_flops(config, frames, rows)["total"] / (gflops * DIT_EFFICIENCY * 1e9)


def _decode_seconds(flop: float, gflops: float | None, vae_gflops: dict[str, float] | None,
                    vae_dtype: str) -> float:
    from rhythmflow.machine.vae_probe import decode_seconds

    measured = decode_seconds(flop, vae_dtype, vae_gflops or {})
    if measured is not None:
        return measured
    return flop / (gflops * VAE_EFFICIENCY * 1e9) if gflops else 0.0


def forward_overhead(config: DiTConfig, overhead: tuple[float, float]) -> float:
    """Seconds of one forward of ``config`` beyond its FLOPs, from the machine's measured
    ``(fixed, per decoder layer)`` overhead (:attr:`rhythmflow.machine.Machine.eval_overhead`)."""
    fixed, per_layer = overhead
    return fixed + per_layer * config.depth


def estimate_job(config: DiTConfig, frames: int, *, steps: int, evals_per_step: int,
                 batch: int = 1, guided: bool = True,
                 guidance_interval: tuple[float, float] | None = None,
                 gflops: float | None = None, seconds_per_eval: float | None = None,
                 weight_bytes: int = 0, style_encoder: bool = False,
                 basis: str | None = None,
                 overhead_per_forward: float = 0.0, split_guidance: bool = False,
                 vae_gflops: dict[str, float] | None = None,
                 vae_dtype: str = "float32") -> JobEstimate:
    """Seconds of every stage of a job. ``seconds_per_eval`` (one evaluation of all rows, e.g.
    from :func:`calibrate`) wins over the rate-based figure from ``gflops`` (the machine's
    float32 GEMM rate in the job's dtype) plus ``overhead_per_forward`` seconds for each of
    the evaluation's forwards (one per batch item, two with ``split_guidance`` where guided);
    with neither, times are 0 and ``known`` is False. The decode time is that of the DiffRhythm
    (Oobleck) VAE (``vae_gflops``: the probe's decoder convolution rates, the decode running its
    residual convolutions in ``vae_dtype``) — also for a VAE given by path, which is that VAE in
    every real use (a smaller test VAE decodes faster than estimated)."""
    evals, share = evaluations(steps, evals_per_step, guided, guidance_interval)
    if seconds_per_eval is None:
        fixed = overhead_per_forward * batch if gflops else 0.0  # items run one at a time
        full = (seconds_per_eval_from_rate(config, frames, batch * (2 if guided else 1), gflops)
                + fixed * (2 if split_guidance else 1))
        single = seconds_per_eval_from_rate(config, frames, batch, gflops) + fixed
        per = share * full + (1 - share) * single if guided else single
        basis = basis or (f"GEMM rate {gflops:.0f} GFLOP/s" if gflops else "unknown")
        if fixed:
            basis += f" + {overhead_per_forward * 1e3:.3g} ms per forward"
    else:
        per = seconds_per_eval
        basis = basis or "calibrated on the loaded model"
    decode = _decode_seconds(batch * decoded_frames(frames) * VAE_FLOP_PER_FRAME, gflops,
                             vae_gflops, vae_dtype)
    return JobEstimate(
        load=weight_bytes / LOAD_BYTES_PER_SECOND, lyrics=LYRICS_SECONDS,
        style=STYLE_ENCODER_SECONDS if style_encoder else 0.0, sampling=evals * per,
        decode=decode, steps=steps, evaluations=evals, seconds_per_eval=per, basis=basis)


def steps_for_budget(budget: float, estimate_for: Callable[[int], JobEstimate], *,
                     max_steps: int = 32) -> int:
    """The largest step count (≤ ``max_steps``) whose whole job fits ``budget`` seconds."""
    fits = [s for s in range(1, max_steps + 1) if estimate_for(s).total <= budget]
    if not fits:
        one = estimate_for(1).total
        raise ResourceError(
            f"time_budget {budget:g}s is too short: even 1 step takes ~{one:.0f}s here. "
            "Raise the budget, use a shorter duration, cfg_strength 0, or a GPU.",
            field="time_budget")
    return fits[-1]


def calibrate(model, frames: int, *, rows: int, calib_frames: int = 128,
              direct_below: float = 5.0, timer: Callable[..., float] | None = None) -> float:
    """Seconds of one evaluation of ``rows`` sequences of ``frames`` frames on this machine.

    Times forwards at ``calib_frames`` and half of it, fits fixed cost + seconds per FLOP (the
    fixed part dominates tiny models, the FLOP part full-size ones) and extrapolates with the
    analytic FLOP count, attention included. When that predicts under ``direct_below`` seconds,
    the real length is cheap enough to time directly. ``timer(model, frames, rows, **kw)``
    defaults to :func:`rhythmflow.machine.perf.time_forward` (tests pass a deterministic one).
    """
    from rhythmflow.machine.perf import forward_flops, time_forward

    timer = timer or time_forward
    f1 = max(1, min(frames, calib_frames))
    t1 = timer(model, f1, rows, repeats=1, warmup_frames=min(f1, 16))
    if f1 == frames:
        return t1
    f0 = max(1, f1 // 2)
    t0 = timer(model, f0, rows, repeats=1, warmup_frames=0)
    w0, w1, w = (forward_flops(model.config, f, rows)["total"] for f in (f0, f1, frames))
    per_flop = (t1 - t0) / (w1 - w0) if t1 > t0 and w1 > w0 else t1 / w1
    predicted = max(t1 - per_flop * w1, 0.0) + per_flop * w
    if predicted <= direct_below:
        return timer(model, frames, rows, repeats=1, warmup_frames=0)
    return predicted
