"""Cheap checks of the numbers a user passes, before anything is loaded (issue 14).

Each returns nothing or raises UsageError naming the flag, the value and the accepted range. They
take plain values so the command line, a GenerationRequest / plan, or the HTTP API can share them.
"""

from __future__ import annotations

import math

from rhythmflow.errors import UsageError

SEED_LIMIT = 2**64  # torch.Generator seeds are unsigned 64-bit; item i uses seed + i


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_generation_numbers(
    *,
    seed: int | None = None,
    batch: int = 1,
    steps: int | None = None,
    timeout: float | None = None,
    time_budget: float | None = None,
    loudness: float | None = None,
    cfg_strength: float = 4.0,
    guidance_interval: tuple[float, float] | None = None,
    duration: float | None = None,
    threads: int | None = None,
) -> None:
    """UsageError for any out-of-range number (see the module docstring)."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise UsageError(f"--batch must be a whole number >= 1, got {batch!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)
                             or not 0 <= seed <= SEED_LIMIT - batch):
        raise UsageError(f"--seed must be a whole number from 0 to {SEED_LIMIT - batch} "
                         f"(2**64 - batch), got {seed!r}")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise UsageError(f"--steps must be >= 1, got {steps!r}")
    for flag, value in (("--timeout", timeout), ("--time-budget", time_budget)):
        if value is not None and (not _number(value) or not math.isfinite(value) or value <= 0):
            raise UsageError(f"{flag} must be a positive, finite number of seconds, got {value!r}")
    if loudness is not None and (not _number(loudness) or not -70.0 <= loudness <= 0.0):
        raise UsageError(f"--loudness must be a target in LUFS from -70 to 0 (e.g. -14), got "
                         f"{loudness!r}")
    if not _number(cfg_strength) or not 0 <= cfg_strength < math.inf:
        raise UsageError(f"--cfg-strength must be a finite number >= 0, got {cfg_strength!r}")
    if guidance_interval is not None:
        lo, hi = guidance_interval
        if not (_number(lo) and _number(hi) and 0 <= lo <= hi <= 1):
            raise UsageError(f"--guidance-interval LO HI needs 0 <= LO <= HI <= 1, got "
                             f"{lo!r} {hi!r}")
    if duration is not None and (not _number(duration) or not math.isfinite(duration)
                                 or duration <= 0):
        raise UsageError(f"--duration must be a positive number of seconds, got {duration!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UsageError(f"--threads must be >= 1, got {threads!r}")
