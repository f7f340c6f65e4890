"""Device / dtype / threads policy, resolved once per run with the reasons written down.

Nothing here runs at import. :func:`resolve_runtime` inspects the machine when called;
:func:`configure_process` is the only function with a process-wide effect, and only entry points
call it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from rhythmflow import specs

log = logging.getLogger(__name__)

DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}
DEFAULT_STEPS = specs.DEFAULT_STEPS


@dataclass(frozen=True)
class Runtime:
    """Resolved execution settings; ``reasons`` says why each was chosen (printed by the CLI)."""

    device: str  # "cpu", "cuda", "cuda:1", "mps"
    dtype: str  # "float32" | "float16" | "bfloat16"
    threads: int
    vae_device: str
    default_steps: int
    reasons: tuple[str, ...] = field(default=())
    #: the VAE decoder's residual convolutions: "float32" or "bfloat16" (the eager CPU decoder;
    #: kept only where accurate on the loaded weights, see ``rhythmflow.vae.load_vae``)
    vae_dtype: str = "float32"

    @property
    def kind(self) -> str:
        return self.device.split(":")[0]

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def describe(self) -> str:
        return (f"device={self.device} dtype={self.dtype} threads={self.threads} "
                f"vae_device={self.vae_device} vae_dtype={self.vae_dtype} "
                f"default_steps={self.default_steps}")


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


def resolve_runtime(device: str = "auto", dtype: str = "auto",
                    threads: int | None = None) -> Runtime:
    """Choose device (cuda > mps > cpu), dtype, thread count and default steps for this machine
    (:func:`rhythmflow.planner.core.runtime_for` on :meth:`Machine.detect`, without measuring)."""
    from rhythmflow.planner.core import Machine, runtime_for

    return runtime_for(Machine.detect(measure=False), device, dtype, threads)


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
    """Set torch's intra-op thread count (process-wide)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def configure_process(threads: int) -> None:
    """The process-wide settings a generation wants: torch's thread count and glibc malloc
    tuning that keeps freed activations (docs/PERFORMANCE.md). Only entry points call this (the
    CLI, the server, a worker, or a user's own script) — library calls never change them."""
    from rhythmflow.machine.perf import keep_freed_memory

    apply_threads(threads)
    keep_freed_memory()
