"""Device / dtype / threads policy, resolved once per run with the reasons written down.

Nothing here runs at import. :func:`resolve_runtime` inspects the machine when called;
:func:`apply_threads` is the only function with a process-wide effect, and the caller decides
when to use it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from rhythmflow.errors import UsageError

log = logging.getLogger(__name__)

DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}
#: Default solver steps per device kind (the seed document's advice: few steps on a CPU).
DEFAULT_STEPS = {"cpu": 8, "mps": 16, "cuda": 32}


@dataclass(frozen=True)
class Runtime:
    """Resolved execution settings; ``reasons`` says why each was chosen (printed by the CLI)."""

    device: str  # "cpu", "cuda", "cuda:1", "mps"
    dtype: str  # "float32" | "float16" | "bfloat16"
    threads: int
    vae_device: str
    default_steps: int
    reasons: tuple[str, ...] = field(default=())

    @property
    def kind(self) -> str:
        return self.device.split(":")[0]

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def describe(self) -> str:
        return (f"device={self.device} dtype={self.dtype} threads={self.threads} "
                f"vae_device={self.vae_device} default_steps={self.default_steps}")


def physical_cores() -> int:
    """Physical cores available to this process (affinity respected), at least 1."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or available
        logical = psutil.cpu_count(logical=True) or available
    except ImportError:
        physical = logical = available
    # With SMT, the affinity set counts logical CPUs; scale it down to physical cores.
    per_core = max(1, logical // max(1, physical))
    return max(1, min(physical, available // per_core if available >= per_core else available))


def _detect_device() -> tuple[str, str]:
    import torch

    if torch.cuda.is_available():
        return "cuda", f"CUDA device found: {torch.cuda.get_device_name(0)}"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps", "Apple MPS device found"
    return "cpu", "no CUDA or MPS device found"


def _auto_dtype(kind: str, device: str, probe=None) -> tuple[str, str]:
    from rhythmflow.probe import choose_cpu_dtype, choose_gpu_dtype

    if kind == "cpu":
        if probe is not None:  # measured on this machine (int8 stays a --quantize choice)
            return choose_cpu_dtype(probe, dtypes=("float32", "bfloat16", "float16"))
        return "float32", "float32 on CPU (float16 is emulated on CPUs and ~40x slower)"
    if kind == "cuda":
        import torch

        return choose_gpu_dtype("cuda", torch.cuda.is_bf16_supported())
    return choose_gpu_dtype("mps", False)


def resolve_runtime(device: str = "auto", dtype: str = "auto",
                    threads: int | None = None, *, probe=None) -> Runtime:
    """Choose device (cuda > mps > cpu), dtype, thread count and default steps.

    ``probe`` (a :class:`rhythmflow.probe.Probe` of this CPU, e.g. from
    :func:`rhythmflow.probe.load_or_measure`) makes ``dtype="auto"`` on the CPU the fastest
    acceptable measured arithmetic (:func:`rhythmflow.probe.choose_cpu_dtype`); without one the
    CPU runs float32.
    """
    reasons: list[str] = []
    if device == "auto":
        device, why = _detect_device()
        reasons.append(f"device {device}: {why}")
    else:
        device = _check_device(device)
        reasons.append(f"device {device}: requested")
    kind = device.split(":")[0]
    if dtype == "auto":
        dtype, why = _auto_dtype(kind, device, probe)
        reasons.append(f"dtype {dtype}: {why}")
    else:
        if dtype not in DTYPES:
            raise UsageError(f"unknown dtype {dtype!r}; choose auto, {', '.join(sorted(set(DTYPES.values())))}")
        dtype = DTYPES[dtype]
        reasons.append(f"dtype {dtype}: requested")
        if kind == "cpu" and dtype == "float16":
            log.warning("float16 on a CPU is emulated and about 40x slower than float32")
            reasons.append("warning: float16 on CPU is very slow; prefer --dtype float32")
    if threads is None:
        threads = physical_cores()
        reasons.append(f"threads {threads}: physical cores available to this process")
    elif threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    vae_device = "cpu" if kind == "mps" else device
    if vae_device != device:
        reasons.append("VAE on cpu: the TorchScript VAE does not run on MPS")
    steps = DEFAULT_STEPS[kind]
    reasons.append(f"default steps {steps} on {kind}")
    return Runtime(device, dtype, threads, vae_device, steps, tuple(reasons))


def _check_device(device: str) -> str:
    import torch

    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unknown device {device!r}; choose auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but CUDA is not available; use --device cpu")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps requested but MPS is not available; use --device cpu")
    return device


def available_memory(device) -> int:
    """Bytes free for a new allocation on ``device`` (str or torch.device): free CUDA memory on
    a CUDA device, else available system RAM."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def apply_threads(threads: int) -> None:
    """Set torch's intra-op thread count (process-wide; called by the CLI / API at run start)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
