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
from rhythmflow.perf import forward_flops

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


def test_time_estimate_scales_with_steps_and_guidance():
    t8 = estimate_time(BASE, 2048, 8, gflops=60, cfg=True)
    t16 = estimate_time(BASE, 2048, 16, gflops=60, cfg=True)
    assert t16.sampling == pytest.approx(2 * t8.sampling, rel=0.01)
    plain = estimate_time(BASE, 2048, 8, gflops=60, cfg=False)
    assert plain.sampling < 0.55 * t8.sampling
    assert t8.seconds_per_eval == pytest.approx(forward_flops(BASE, 2048, 2)["total"] / 60e9)
    assert estimate_time(BASE, 2048, 8, gflops=60, cfg=True, solver="heun").sampling > 1.9 * t8.sampling


def test_steps_for_budget_is_largest_that_fits():
    per = estimate_time(BASE, 2048, 1, gflops=60, cfg=True).sampling
    steps = steps_for_budget(BASE, 2048, 10.5 * per, gflops=60, cfg=True, solver="euler",
                             batch=1, overhead=0)
    assert steps == 10
    assert steps_for_budget(BASE, 2048, 1e9, gflops=60, cfg=True, solver="euler", batch=1,
                            overhead=0) == 32
    with pytest.raises(ResourceError, match="--time-budget 1s is too short"):
        steps_for_budget(BASE, 2048, 1, gflops=60, cfg=True, solver="euler", batch=1, overhead=0)
