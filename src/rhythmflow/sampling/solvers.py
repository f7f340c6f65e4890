"""Fixed-grid ODE solvers for dx/dt = v(x, t), as plain functions.

Each solver takes a velocity callable ``velocity(x, t) -> v`` (``t`` a 0-d tensor), the initial
state and an explicit time grid, runs one step per grid interval and returns only the final state.
``callback(i, t, x)`` fires after every step with the index ``i`` of the step just completed
(0-based, within the grid given), the time reached ``t = grid[i + 1]`` and the new state.

A solver is a step function ``step(velocity, x, t0, t1) -> x1`` plus its order; :func:`integrate`
owns the loop. Every step function evaluates ``velocity(x0, t0)`` first (the engine relies on that
to reuse the evaluation for an "anytime" finish).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from rhythmflow.errors import UsageError

VelocityFn = Callable[[Tensor, Tensor], Tensor]
StepFn = Callable[[VelocityFn, Tensor, Tensor, Tensor], Tensor]
StepCallback = Callable[[int, Tensor, Tensor], None]


def euler_step(velocity: VelocityFn, x: Tensor, t0: Tensor, t1: Tensor) -> Tensor:
    """Explicit Euler: x + dt·v(x, t0). Same operations as torchdiffeq's 'euler' (bit-identical)."""
    return x + (t1 - t0) * velocity(x, t0)


def midpoint_step(velocity: VelocityFn, x: Tensor, t0: Tensor, t1: Tensor) -> Tensor:
    """Explicit midpoint (RK2): the slope at the half step predicted by Euler."""
    dt = t1 - t0
    half = dt / 2
    k1 = velocity(x, t0)
    return x + dt * velocity(x + half * k1, t0 + half)


def heun_step(velocity: VelocityFn, x: Tensor, t0: Tensor, t1: Tensor) -> Tensor:
    """Heun (explicit trapezoid, RK2): mean of the slopes at both ends of an Euler predictor."""
    dt = t1 - t0
    k1 = velocity(x, t0)
    k2 = velocity(x + dt * k1, t1)
    return x + (dt / 2) * (k1 + k2)


def rk4_step(velocity: VelocityFn, x: Tensor, t0: Tensor, t1: Tensor) -> Tensor:
    """Classical fourth-order Runge–Kutta."""
    dt = t1 - t0
    half = dt / 2
    tm = t0 + half
    k1 = velocity(x, t0)
    k2 = velocity(x + half * k1, tm)
    k3 = velocity(x + half * k2, tm)
    k4 = velocity(x + dt * k3, t1)
    return x + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


def integrate(
    step: StepFn,
    velocity: VelocityFn,
    x: Tensor,
    grid: Tensor,
    callback: StepCallback | None = None,
) -> Tensor:
    """Run ``step`` over every interval of ``grid`` (1-D, increasing) and return the final state."""
    if grid.ndim != 1 or grid.numel() < 1:
        raise UsageError(
            f"the time grid must be a 1-D tensor of points, got shape {list(grid.shape)}"
        )
    for i in range(grid.numel() - 1):
        t0, t1 = grid[i], grid[i + 1]
        x = step(velocity, x, t0, t1)
        if callback is not None:
            callback(i, t1, x)
    return x


def euler(
    velocity: VelocityFn, x: Tensor, grid: Tensor, callback: StepCallback | None = None
) -> Tensor:
    """Explicit Euler over ``grid`` (order 1, one velocity evaluation per step)."""
    return integrate(euler_step, velocity, x, grid, callback)


def midpoint(
    velocity: VelocityFn, x: Tensor, grid: Tensor, callback: StepCallback | None = None
) -> Tensor:
    """Explicit midpoint over ``grid`` (order 2, two evaluations per step)."""
    return integrate(midpoint_step, velocity, x, grid, callback)


def heun(
    velocity: VelocityFn, x: Tensor, grid: Tensor, callback: StepCallback | None = None
) -> Tensor:
    """Heun over ``grid`` (order 2, two evaluations per step; evaluates at t = 1 on the last)."""
    return integrate(heun_step, velocity, x, grid, callback)


def rk4(
    velocity: VelocityFn, x: Tensor, grid: Tensor, callback: StepCallback | None = None
) -> Tensor:
    """Classical RK4 over ``grid`` (order 4, four evaluations per step)."""
    return integrate(rk4_step, velocity, x, grid, callback)


@dataclass(frozen=True)
class Solver:
    """A named solver: the step function, its order and its velocity evaluations per step."""

    name: str
    step: StepFn
    order: int
    evals_per_step: int

    def __call__(
        self, velocity: VelocityFn, x: Tensor, grid: Tensor, callback: StepCallback | None = None
    ) -> Tensor:
        return integrate(self.step, velocity, x, grid, callback)


SOLVERS: dict[str, Solver] = {
    "euler": Solver("euler", euler_step, order=1, evals_per_step=1),
    "midpoint": Solver("midpoint", midpoint_step, order=2, evals_per_step=2),
    "heun": Solver("heun", heun_step, order=2, evals_per_step=2),
    "rk4": Solver("rk4", rk4_step, order=4, evals_per_step=4),
}


def get_solver(name: str) -> Solver:
    """The solver called ``name``; an unknown name raises UsageError listing the known ones."""
    try:
        return SOLVERS[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}") from None
