"""Memory and time estimates and the fit-or-refuse decisions."""

from __future__ import annotations

import pytest

from rhythmflow.config import PRESETS
from rhythmflow.errors import ResourceError
from rhythmflow.estimate import (
    GB,
    estimate_memory,
    estimate_time,
    refuse_if_too_big,
    steps_for_budget,
)

BASE = PRESETS["v1.2-base"]


def test_memory_estimate_components():
    m = estimate_memory(BASE, 2048, batch=1, cfg=True, dtype="float32")
    assert 4.0 * GB < m.weights < 4.3 * GB  # 1.11 B parameters in float32
    assert m.conditioning == 2 * 2048 * 2048 * 9 * 4  # [cond; uncond] rows × (static + 8 fusion)
    assert m.total > m.weights + m.conditioning + m.activations
    half = estimate_memory(BASE, 2048, dtype="bfloat16")
    assert half.weights == pytest.approx(m.weights / 2, rel=1e-6)
    q = estimate_memory(BASE, 2048, quantize="int8")
    assert q.weights < 0.3 * m.weights + 0.3 * GB
    assert estimate_memory(BASE, 2048, batch=2).total > m.total
    assert estimate_memory(BASE, 2048, cfg=False).conditioning == m.conditioning // 2


def test_refuse_names_flags_that_help():
    m = estimate_memory(BASE, 2048, batch=2)
    small = type(m)(m.weights, m.conditioning, m.activations, m.vae, m.total, available=GB)
    with pytest.raises(ResourceError, match=r"--batch 1.*--quantize int8"):
        refuse_if_too_big(small, batch=2, frames=2048, dtype="float32", device="cpu")
    big = type(m)(m.weights, m.conditioning, m.activations, m.vae, m.total, available=100 * GB)
    refuse_if_too_big(big, batch=2, frames=2048, dtype="float32", device="cpu")


def test_time_estimate_counts_solver_evaluations():
    t8 = estimate_time(8, 2.0)
    assert (t8.sampling, t8.evaluations) == (16.0, 8)
    assert estimate_time(8, 2.0, solver="heun").evaluations == 16
    assert estimate_time(8, 2.0, solver="rk4").sampling == 64.0


def test_steps_for_budget_is_largest_that_fits():
    assert steps_for_budget(10.5, 1.0, solver="euler", overhead=0) == 10
    assert steps_for_budget(10.5, 1.0, solver="midpoint", overhead=0.5) == 5
    assert steps_for_budget(1e9, 1.0, solver="euler", overhead=0) == 32
    with pytest.raises(ResourceError, match="--time-budget 1s is too short"):
        steps_for_budget(1, 1.0, solver="euler", overhead=0.5)


def test_calibration_predicts_a_real_forward():
    """The short-length fit must predict a longer forward within a generous factor."""
    import dataclasses

    from rhythmflow.estimate import calibrate
    from rhythmflow.model.testing import TINY, random_dit
    from rhythmflow.perf import time_forward

    model = random_dit(dataclasses.replace(TINY, dim=128, depth=2))
    predicted = calibrate(model, 512, rows=2, calib_frames=128, direct_below=0.0)
    measured = time_forward(model, 512, 2, repeats=3)
    assert measured / 4 < predicted < measured * 4
    direct = calibrate(model, 512, rows=2, calib_frames=128, direct_below=1e9)
    assert measured / 2 < direct < measured * 2
