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

from rhythmflow.machine.flops import GROUPS, forward_flops, prepare_flops  # noqa: F401 (re-exported)
from rhythmflow.model.inputs import model_device, model_inputs  # noqa: F401 (re-exported)
from rhythmflow.specs import DiTConfig


def param_count(config: DiTConfig) -> int:
    """Parameters of the model a config builds (:attr:`DiTConfig.param_count`)."""
    return config.param_count


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


def device_sync(device: torch.device | str) -> None:
    """Wait for the queued work of ``device`` (CUDA / MPS kernels run asynchronously; a clock
    read without this measures only the launch). No-op on the CPU and other devices."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


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
