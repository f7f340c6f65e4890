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


class FakeTimer:
    """Deterministic forward timing: ``fixed + per_flop * FLOPs``, recording every call."""

    def __init__(self, fixed: float, per_flop: float) -> None:
        self.fixed, self.per_flop, self.calls = fixed, per_flop, []

    def __call__(self, model, frames, rows, *, warmup_frames):
        from rhythmflow.perf import forward_flops

        self.calls.append((frames, rows, warmup_frames))
        return self.fixed + self.per_flop * forward_flops(model.config, frames, rows)["total"]


@pytest.mark.parametrize(("fixed", "per_flop"), [(0.02, 1e-10), (0.0, 3e-11), (1.5, 1e-12)])
def test_calibration_fit_extrapolates_exactly(fixed, per_flop):
    """A timing that is exactly affine in the FLOP count is recovered exactly at any length."""
    from rhythmflow.estimate import calibrate
    from rhythmflow.model.testing import TINY, random_dit
    from rhythmflow.perf import forward_flops

    model = random_dit(TINY)
    timer = FakeTimer(fixed, per_flop)
    predicted = calibrate(model, 2048, rows=2, calib_frames=128, direct_below=0.0, timer=timer)
    expect = fixed + per_flop * forward_flops(TINY, 2048, 2)["total"]
    assert predicted == pytest.approx(expect, rel=1e-9)
    # the fit timed 128 frames (with a warm-up) then 64 (without), both at the rows asked for
    assert timer.calls == [(128, 2, 16), (64, 2, 0)]


def test_calibration_times_directly_when_cheap_and_uses_short_lengths_as_is():
    from rhythmflow.estimate import calibrate
    from rhythmflow.model.testing import TINY, random_dit

    model = random_dit(TINY)
    timer = FakeTimer(0.01, 1e-10)
    direct = calibrate(model, 512, rows=1, calib_frames=128, direct_below=1e9, timer=timer)
    assert timer.calls[-1] == (512, 1, 0) and len(timer.calls) == 3
    assert direct == timer(model, 512, 1, warmup_frames=0)
    short = FakeTimer(0.01, 1e-10)
    assert calibrate(model, 40, rows=2, calib_frames=128, timer=short) == short(model, 40, 2,
                                                                                 warmup_frames=0)
    assert short.calls[0] == (40, 2, 16)


def test_calibration_without_a_slope_scales_the_long_timing():
    """Timings that do not grow (noise) fall back to seconds-per-FLOP of the longer one."""
    from rhythmflow.estimate import calibrate
    from rhythmflow.model.testing import TINY, random_dit
    from rhythmflow.perf import forward_flops

    model = random_dit(TINY)

    def flat(m, f, r, *, warmup_frames):
        return 0.5

    predicted = calibrate(model, 1024, rows=1, calib_frames=128, direct_below=0.0, timer=flat)
    w1, w = (forward_flops(TINY, f, 1)["total"] for f in (128, 1024))
    assert predicted == pytest.approx(0.5 * w / w1, rel=1e-12)
