"""What a plan may know about the machine it runs on, and :meth:`Machine.detect` measuring it.

Everything machine-dependent that a plan uses lives here, so :func:`rhythmflow.planner.core.plan` stays
pure given a :class:`Machine` (tests pass recorded machines; the service plans against the
machines its workers publish).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_free: int
    bf16: bool


@dataclass(frozen=True)
class Machine:
    """What a plan may know about the machine it will run on; :meth:`detect` measures it.

    ``gflops`` maps ``"<kind>-<dtype>"`` (``cpu-float32``, ``cuda-bfloat16`` …) to measured
    matrix-multiply GFLOP/s; ``cpu_dtype`` is the automatic CPU dtype chosen by measurement,
    with ``cpu_dtype_reason`` saying why. ``layout_timings`` are the guided-evaluation timings
    per length measured on the CPU in ``layout_dtype``; ``eval_overhead`` the (fixed, per
    decoder layer) seconds of one CPU forward beyond its FLOPs; ``vae_gflops`` the VAE
    decoder's convolution GFLOP/s per dtype on the CPU (:mod:`rhythmflow.machine.vae_probe`).
    """

    cpu: str = "unknown CPU"
    cores: int = 1
    memory_available: int | None = None
    gpus: tuple[Gpu, ...] = ()
    mps: bool = False
    gflops: dict[str, float] = field(default_factory=dict)
    #: measured guided-evaluation timings per length: (frames, batched s, split s)
    layout_timings: tuple[tuple[int, float, float], ...] = ()
    layout_dtype: str = "float32"
    eval_overhead: tuple[float, float] = (0.0, 0.0)
    cpu_dtype: str = "float32"
    cpu_dtype_reason: str = "float32 on CPU (no measurement of this CPU's low-precision speed)"
    vae_gflops: dict[str, float] = field(default_factory=dict)
    #: the CPU's ISA flags that decide the arithmetic (:data:`rhythmflow.machine.host.ISA_FLAGS`)
    cpu_flags: tuple[str, ...] = ()
    #: the int8 kernel for this CPU (:func:`rhythmflow.model.quantize.default_kernel`)
    int8_kernel: str = "fbgemm"

    @classmethod
    def detect(cls, *, measure: bool = True, threads: int | None = None) -> Machine:
        """This machine: CPU, cores, free memory, GPUs; with ``measure``, the machine probe
        (:mod:`rhythmflow.machine.probe`: GEMM rates per dtype, the automatic CPU dtype chosen from
        them, the guidance layout per length in that dtype and the per-forward overhead; ~3 s
        once per machine and thread count, then read from the cache)."""
        return _detect(measure, threads)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Machine:
        d = dict(d)
        d["gpus"] = tuple(Gpu(**g) for g in d.get("gpus", ()))
        d["layout_timings"] = tuple(tuple(t) for t in d.get("layout_timings", ()))
        d["cpu_flags"] = tuple(d.get("cpu_flags", ()))
        if "eval_overhead" in d:
            d["eval_overhead"] = tuple(d["eval_overhead"])
        return cls(**d)

    def rate(self, kind: str, dtype: str) -> float | None:
        """Measured GEMM GFLOP/s for ``kind``/``dtype`` (low precision falls back to float32)."""
        return self.gflops.get(f"{kind}-{dtype}") or self.gflops.get(f"{kind}-float32")


def _detect(measure: bool, threads: int | None) -> Machine:
    import psutil
    import torch

    from rhythmflow.machine.host import cpu_facts, physical_cores
    from rhythmflow.model.quantize import default_kernel

    cpu, flags = cpu_facts()
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, _ = torch.cuda.mem_get_info(i)
            gpus.append(Gpu(torch.cuda.get_device_name(i), int(free),
                            bool(torch.cuda.is_bf16_supported())))
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    gflops: dict[str, float] = {}
    cores = physical_cores()
    measured: dict[str, Any] = {}
    if measure:  # the machine probe: measured once per machine and thread count, cached on disk
        from rhythmflow.machine.probe import (
            AUTO_DTYPES,
            choose_cpu_dtype,
            load_or_measure,
            probe_gflops,
        )

        probe = load_or_measure(threads or cores)
        gflops.update({f"cpu-{d}": g for d, g in probe_gflops(probe).items()})
        dtype, why = choose_cpu_dtype(probe, dtypes=AUTO_DTYPES)
        measured = {"cpu_dtype": dtype, "cpu_dtype_reason": why,
                    "layout_timings": tuple((t.frames, t.batched, t.split)
                                            for t in probe.layouts),
                    "layout_dtype": probe.layout_dtype or dtype,
                    "eval_overhead": (probe.forward_overhead, probe.layer_overhead),
                    "vae_gflops": dict(probe.vae_gflops)}
    return Machine(cpu=cpu, cores=cores, gpus=tuple(gpus), mps=mps, cpu_flags=flags,
                   int8_kernel=default_kernel(flags),
                   memory_available=int(psutil.virtual_memory().available), gflops=gflops,
                   **measured)
