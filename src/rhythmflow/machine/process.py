"""Process-wide settings, changed only through :func:`configure_process`, which only entry
points call (the CLI, the server, a worker, or a user's own script) — library calls never change
them: torch's intra-op thread count and glibc malloc tuning.
"""

from __future__ import annotations


def apply_threads(threads: int) -> None:
    """Set torch's intra-op thread count (process-wide)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def configure_process(threads: int) -> None:
    """The process-wide settings a generation wants: torch's thread count and glibc malloc
    tuning that keeps freed activations (docs/performance-log.md). Only entry points call this (the
    CLI, the server, a worker, or a user's own script) — library calls never change them."""
    apply_threads(threads)
    keep_freed_memory()


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
