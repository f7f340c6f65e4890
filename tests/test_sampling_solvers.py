"""Solvers and time grids against ODEs with exact solutions."""

from __future__ import annotations

import math

import pytest
import torch

from rhythmflow.errors import UsageError
from rhythmflow.sampling import (
    SOLVERS,
    euler,
    get_solver,
    heun,
    make_grid,
    midpoint,
    rk4,
    sway_grid,
    uniform_grid,
)

NAMES = sorted(SOLVERS)
DTYPES = [torch.float32, torch.float64]


def _counting(fn):
    calls = []

    def velocity(x, t):
        calls.append(float(t))
        return fn(x, t)

    return velocity, calls


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "grid",
    [uniform_grid(7), sway_grid(5, -1.0), sway_grid(4, 0.8)],
    ids=["uniform", "sway-neg", "sway-pos"],
)
def test_constant_velocity_is_exact(name, dtype, grid):
    c = torch.tensor([[0.5, -2.0, 3.25]], dtype=dtype)
    x0 = torch.tensor([[1.0, 0.0, -1.0]], dtype=dtype)
    out = get_solver(name)(lambda x, t: c.expand_as(x), x0, grid.to(dtype))
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(out, x0 + c, rtol=0, atol=tol)


@pytest.mark.parametrize("name", ["midpoint", "heun", "rk4"])
def test_velocity_linear_in_t_is_exact_for_second_order_and_up(name):
    # dx/dt = t  →  x(1) = x0 + 1/2; Euler is off by dt/2, the others are exact.
    x0 = torch.zeros(2, dtype=torch.float64)
    out = get_solver(name)(lambda x, t: t.expand_as(x), x0, uniform_grid(3).double())
    torch.testing.assert_close(out, x0 + 0.5, rtol=0, atol=1e-14)
    euler_out = euler(lambda x, t: t.expand_as(x), x0, uniform_grid(3).double())
    assert torch.allclose(euler_out, x0 + 0.5 - 1 / 6, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_error_shrinks_at_the_solver_order(name):
    """dx/dt = −x, x(1) = x0·e^{-1}: halving dt divides the error by ≈ 2^order."""
    solver = get_solver(name)
    x0 = torch.tensor([1.0, -3.0], dtype=torch.float64)
    exact = x0 * math.exp(-1.0)
    errors = []
    for steps in (8, 16, 32):
        grid = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        errors.append((solver(lambda x, t: -x, x0, grid) - exact).abs().max().item())
    for coarse, fine in zip(errors, errors[1:], strict=False):
        observed = math.log2(coarse / fine)
        assert abs(observed - solver.order) < 0.15, (name, errors)


@pytest.mark.parametrize("name", NAMES)
def test_callback_after_every_step_and_evaluations_per_step(name):
    solver = get_solver(name)
    grid = uniform_grid(5)
    velocity, calls = _counting(lambda x, t: -x)
    seen = []
    out = solver(
        velocity, torch.ones(3), grid, lambda i, t, x: seen.append((i, float(t), x.clone()))
    )
    assert [s[0] for s in seen] == list(range(5))
    assert [s[1] for s in seen] == grid[1:].tolist()
    assert torch.equal(seen[-1][2], out)
    assert len(calls) == 5 * solver.evals_per_step
    # every step evaluates at its start first (the engine's anytime finish relies on it)
    assert calls[:: solver.evals_per_step] == grid[:-1].tolist()


def test_euler_matches_the_original_update_bit_for_bit():
    """torchdiffeq's fixed-grid Euler: y_{k+1} = y_k + (t_{k+1} − t_k)·f(t_k, y_k) in float32."""
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 6, 4, generator=gen)
    w = torch.randn(4, 4, generator=gen)

    def velocity(x, t):
        return torch.tanh(x @ w) * (1 + t)

    grid = torch.linspace(0, 1, 9, dtype=torch.float32)
    y = x0
    for k in range(8):
        dt = grid[k + 1] - grid[k]
        y = y + dt * velocity(y, grid[k])
    assert torch.equal(euler(velocity, x0, grid), y)


def test_named_functions_equal_the_table():
    x0, grid = torch.tensor([2.0]), uniform_grid(3)
    for fn in (euler, midpoint, heun, rk4):
        assert torch.equal(
            fn(lambda x, t: -x, x0, grid), SOLVERS[fn.__name__](lambda x, t: -x, x0, grid)
        )


def test_unknown_solver_lists_the_names():
    with pytest.raises(UsageError) as err:
        get_solver("dopri5")
    assert all(n in str(err.value) for n in NAMES)


# --- time grids ---


@pytest.mark.parametrize("steps", [1, 8, 31])
def test_uniform_grid_is_the_original_linspace(steps):
    grid = uniform_grid(steps)
    assert grid.dtype == torch.float32 and grid.shape == (steps + 1,)
    assert torch.equal(grid, torch.linspace(0, 1, steps + 1, dtype=torch.float32))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_steps_must_be_a_positive_integer(bad):
    with pytest.raises(UsageError):
        uniform_grid(bad)


@pytest.mark.parametrize("coef", [-1.0, -0.5, 0.5, 1.5])
def test_sway_grid_formula_end_points_and_order(coef):
    steps = 10
    grid = sway_grid(steps, coef)
    u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    expected = u + coef * (torch.cos(math.pi / 2 * u) - 1 + u)
    torch.testing.assert_close(grid.double(), expected, rtol=0, atol=1e-6)
    assert grid[0] == 0 and grid[-1] == 1 and grid.dtype == torch.float32
    assert bool((grid[1:] > grid[:-1]).all())
    first = grid[1].item()
    assert (first < 1 / steps) if coef < 0 else (first > 1 / steps)


def test_sway_outside_the_monotone_range_is_refused():
    with pytest.raises(UsageError, match="non-increasing"):
        sway_grid(10, -1.5)
    with pytest.raises(UsageError, match="non-increasing"):
        sway_grid(10, 2.5)


def test_make_grid_dispatch_and_contradictions():
    assert torch.equal(make_grid(6), uniform_grid(6))
    assert torch.equal(make_grid(6, "sway"), sway_grid(6, -1.0))
    assert torch.equal(make_grid(6, "sway", 0.3), sway_grid(6, 0.3))
    with pytest.raises(UsageError, match="schedule='sway'"):
        make_grid(6, "uniform", -1.0)
    with pytest.raises(UsageError, match="uniform, sway"):
        make_grid(6, "cosine")
