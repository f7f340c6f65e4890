"""Performance model of the DiT on the CPU: analytic FLOPs, memory, measured GEMM and forward time.

Library functions shared by ``benchmarks/run.py`` and ``rhythmflow diagnose``. Nothing here runs
at import; measurements happen only when a ``measure_*`` / ``time_*`` function is called.

FLOP convention: a multiply-add is 2 FLOPs (as ``torch.utils.flop_counter``); element-wise work
(norms, activations, RoPE, residual adds) is not counted. One *evaluation* is one
``DiT.forward`` — the per-step work; :meth:`DiT.prepare` (lyrics ConvNeXt, style and cond
projections) runs once per generation and is counted separately by :func:`prepare_flops`.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import torch

from rhythmflow.config import COND_DIM, TIME_SINUS_DIM, DiTConfig
from rhythmflow.errors import UsageError

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


def param_count(config: DiTConfig) -> int:
    """Parameters of the model a config builds (counted on the meta device, no memory)."""
    from rhythmflow.model.dit import DiT

    with torch.device("meta"):
        model = DiT(config)
    return sum(p.numel() for p in model.parameters())


def param_bytes(config: DiTConfig, dtype: torch.dtype = torch.float32) -> int:
    """Bytes the weights take in ``dtype`` (int8 counts one byte per weight)."""
    return param_count(config) * torch.empty((), dtype=dtype).element_size()


def clock(kind: str = "wall") -> Callable[[], float]:
    """A seconds clock: "wall" (``perf_counter``) or "cpu" (this process's CPU time divided by
    torch's thread count — the wall time the work would take with every thread running; on a
    shared, oversubscribed machine it is far steadier than wall time)."""
    if kind == "wall":
        return time.perf_counter
    if kind == "cpu":
        return lambda: time.process_time() / torch.get_num_threads()
    raise ValueError(f"unknown clock {kind!r}; use 'wall' or 'cpu'")


def _best_seconds(fn: Callable[[], object], repeats: int, warmup: int, kind: str) -> float:
    now = clock(kind)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = now()
        fn()
        times.append(now() - t0)
    return min(times)


@torch.inference_mode()
def measure_gemm_gflops(
    m: int = 2048,
    k: int = 2048,
    n: int = 8192,
    *,
    dtype: torch.dtype = torch.float32,
    layout: str = "linear",
    repeats: int = 3,
    warmup: int = 1,
    clock_kind: str = "wall",
) -> float:
    """Measured GFLOP/s of one [m×k]·[k×n] product (best of ``repeats``, after ``warmup``,
    timed with :func:`clock` ``clock_kind``).

    layout "linear": ``F.linear(x, W)`` with W stored [n, k] (nn.Linear's layout);
    "matmul": ``x @ W`` with W stored [k, n]; "int8": dynamic int8 quantized linear
    (activations quantized per call, as :mod:`rhythmflow.model.quantize` runs it).
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=gen).to(dtype)
    if layout == "linear":
        w = torch.randn(n, k, generator=gen).to(dtype)
        fn = lambda: torch.nn.functional.linear(x, w)  # noqa: E731
    elif layout == "matmul":
        w = torch.randn(k, n, generator=gen).to(dtype)
        fn = lambda: x @ w  # noqa: E731
    elif layout == "int8":
        from rhythmflow.model.quantize import Int8DynamicLinear

        lin = torch.nn.Linear(k, n, bias=False)
        q = Int8DynamicLinear.from_linear(lin)
        x = x.float()
        fn = lambda: q(x)  # noqa: E731
    else:
        raise ValueError(f"unknown layout {layout!r}; use 'linear', 'matmul' or 'int8'")
    return 2 * m * k * n / _best_seconds(fn, repeats, warmup, clock_kind) / 1e9


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a module without parameters)."""
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def device_sync(device: torch.device | str) -> None:
    """Wait for the queued work of ``device`` (CUDA / MPS kernels run asynchronously; a clock
    read without this measures only the launch). No-op on the CPU and other devices."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


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


@torch.inference_mode()
def time_forward(
    model: torch.nn.Module,
    frames: int,
    batch: int = 1,
    repeats: int = 1,
    *,
    warmup_frames: int = 64,
    clock_kind: str = "wall",
) -> float:
    """Seconds of one ``model.forward`` at [batch, frames] (median of ``repeats``, timed with
    :func:`clock` ``clock_kind``), inputs on the model's device, the device synchronised before
    each clock read.

    The conditioning is prepared once, outside the timing. A warm-up forward at
    ``min(frames, warmup_frames)`` frames first initialises the kernels cheaply (0 disables it).
    """
    now = clock(clock_kind)
    device = model_device(model)
    if warmup_frames:
        w = model_inputs(model, min(frames, warmup_frames), batch)
        x, t = w.pop("x"), w.pop("t")
        model(x, t, model.prepare(**w))
    a = model_inputs(model, frames, batch)
    x, t = a.pop("x"), a.pop("t")
    c = model.prepare(**a)
    times = []
    for _ in range(max(1, repeats)):
        device_sync(device)
        t0 = now()
        model(x, t, c)
        device_sync(device)
        times.append(now() - t0)
    return statistics.median(times)


def estimate_seconds(
    config: DiTConfig,
    frames: int,
    steps: int,
    cfg: bool = True,
    solver: str = "euler",
    *,
    gflops: float,
    efficiency: float = 1.0,
    guided_fraction: float = 1.0,
) -> float:
    """Expected sampling seconds (DiT only: no VAE, no lyrics front-end).

    ``steps`` solver steps of ``solver`` (its evaluations per step from the sampler's table);
    with ``cfg`` a guided evaluation runs batch 2, and ``guided_fraction`` of the evaluations are
    guided (a guidance interval lowers it). ``gflops`` is the throughput the model reaches; pass
    the machine's measured GEMM limit with ``efficiency`` = the measured forward/GEMM ratio.
    """
    from rhythmflow.sampling.solvers import get_solver

    if not (gflops > 0 and efficiency > 0 and 0 <= guided_fraction <= 1):
        raise UsageError(
            f"estimate_seconds needs gflops > 0, efficiency > 0 and 0 <= guided_fraction <= 1 "
            f"(got {gflops}, {efficiency}, {guided_fraction})"
        )
    evals = steps * get_solver(solver).evals_per_step
    single = forward_flops(config, frames, 1)["total"]
    double = forward_flops(config, frames, 2)["total"]
    share = guided_fraction if cfg else 0.0
    work = evals * (share * double + (1 - share) * single)
    work += prepare_flops(config, frames, 2 if cfg else 1)
    return work / (gflops * efficiency * 1e9)


class PeakMemory:
    """Context manager sampling this process's resident memory every ``interval`` seconds.

    After the block: ``peak_rss`` (bytes, resident incl. mapped file pages), ``peak_anon``
    (bytes, resident minus file-backed/shared pages, i.e. memory the process allocated) and
    ``start_rss``. Sampling can miss spikes shorter than ``interval``.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_rss = self.peak_anon = self.start_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        info = self._proc.memory_info()
        self.peak_rss = max(self.peak_rss, info.rss)
        self.peak_anon = max(self.peak_anon, info.rss - getattr(info, "shared", 0))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        import psutil

        self._proc = psutil.Process()
        self.start_rss = self._proc.memory_info().rss
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._sample()


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Make glibc malloc keep freed blocks up to ``limit_bytes`` for reuse (process-wide).

    By default glibc serves blocks over 32 MB with fresh ``mmap`` pages and unmaps them on free,
    so every large activation of every layer is page-faulted and zeroed again; on small CPUs
    that costs more than the element-wise work itself. Raising the mmap and trim thresholds lets
    freed activations be reused. Peak RSS is unchanged (the memory was live anyway), but it is
    not returned to the OS until exit. Call once at start-up (the CLI does); returns False where
    glibc is not available (nothing changed).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_trim_threshold, limit_bytes)) and bool(
        mallopt(m_mmap_threshold, limit_bytes)
    )


def release_freed_memory() -> bool:
    """Return freed heap pages to the OS (glibc ``malloc_trim``); useful after a step that
    drops big tensors (e.g. int8 quantization replacing fp32 weights) while
    :func:`keep_freed_memory` is in effect. Returns False where glibc is not available."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False
