"""Time grids for the flow ODE: 1-D float32 tensors from t = 0 (noise) to t = 1 (data).

A grid with ``steps + 1`` points defines ``steps`` solver steps (intervals). The original
DiffRhythm passes ``steps`` as the number of *grid points* (``torch.linspace(0, 1, steps)``), so
its ``steps=32`` is our ``steps=31`` and its ``steps=9`` (the golden set) is our ``steps=8``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rhythmflow.errors import UsageError
from rhythmflow.specs import SWAY_COEF

#: Default sway coefficient when ``schedule="sway"`` is asked for without one (as F5-TTS).
DEFAULT_SWAY_COEF = SWAY_COEF  # the original's (rhythmflow.specs owns it)

SCHEDULES = ("uniform", "sway")


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UsageError(f"steps must be a whole number >= 1 (solver steps), got {steps!r}")


def uniform_grid(steps: int) -> Tensor:
    """``steps + 1`` evenly spaced points, exactly ``torch.linspace(0, 1, steps + 1)`` in float32
    (the original's grid, so results match it bit for bit)."""
    _check_steps(steps)
    return torch.linspace(0, 1, steps + 1, dtype=torch.float32)


def sway_grid(steps: int, coef: float = DEFAULT_SWAY_COEF) -> Tensor:
    """Sway sampling: ``t + coef·(cos(π/2·t) − 1 + t)`` over the uniform grid.

    Negative ``coef`` puts more steps near t = 0 (noise), positive near t = 1. The grid must stay
    strictly increasing, which holds for ``-1 <= coef <= 1/(π/2 − 1) ≈ 1.75``; outside that a
    UsageError says so. The end points are exactly 0 and 1.
    """
    if not isinstance(coef, (int, float)) or not math.isfinite(coef):
        raise UsageError(f"sway_coef must be a finite number, got {coef!r}")
    t = uniform_grid(steps)
    grid = t + coef * (torch.cos(torch.pi / 2 * t) - 1 + t)
    grid[0], grid[-1] = 0.0, 1.0
    if not bool((grid[1:] > grid[:-1]).all()):
        raise UsageError(
            f"sway_coef={coef} makes the time grid non-increasing for steps={steps}; "
            "use a value in [-1, 1.75] (DiffRhythm/F5-TTS use -1)"
        )
    return grid


def make_grid(steps: int, schedule: str = "uniform", sway_coef: float | None = None) -> Tensor:
    """The time grid for ``steps`` solver steps under a named schedule.

    ``schedule="uniform"`` (default, the original's) or ``"sway"`` (``sway_coef`` defaults to -1).
    A ``sway_coef`` together with ``schedule="uniform"`` is contradictory and raises UsageError.
    """
    if schedule == "uniform":
        if sway_coef is not None:
            raise UsageError(
                f"sway_coef={sway_coef} was given with schedule='uniform'; "
                "pass schedule='sway' to use sway sampling, or drop sway_coef"
            )
        return uniform_grid(steps)
    if schedule == "sway":
        return sway_grid(steps, DEFAULT_SWAY_COEF if sway_coef is None else sway_coef)
    raise UsageError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
