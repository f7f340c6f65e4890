"""Facts of this host, read once per call and never cached: the CPU's model name and ISA flags
(the one ``/proc/cpuinfo`` parser), physical cores, and the memory free for a new allocation.

Nothing here runs at import.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

ISA_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
             "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "asimd", "sve", "bf16")


def cpu_facts() -> tuple[str, tuple[str, ...]]:
    """CPU model name and the :data:`ISA_FLAGS` it has (``/proc/cpuinfo``; ``platform`` else)."""
    name, flags = platform.processor() or platform.machine() or "unknown", set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "model name" and value.strip():
            name = value.strip()
    return name, tuple(f for f in ISA_FLAGS if f in flags)


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


def available_memory(device) -> int:
    """Bytes free for a new allocation on ``device`` (str or torch.device): free CUDA memory on
    a CUDA device, else available system RAM."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)
