"""Memory and time estimates and the fit-or-refuse decisions."""

from __future__ import annotations

import pytest

from rhythmflow.errors import ResourceError
from rhythmflow.machine.perf import forward_flops
from rhythmflow.planner.cost import (
    DIT_EFFICIENCY,
    GB,
    LYRICS_SECONDS,
    STYLE_ENCODER_SECONDS,
    VAE_EFFICIENCY,
    VAE_FLOP_PER_FRAME,
    JobEstimate,
    calibrate,
    estimate_job,
    estimate_memory,
    forward_overhead,
    refuse_if_too_big,
    steps_for_budget,
)
from rhythmflow.specs import PRESETS

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


def test_refuse_names_the_settings_that_help():
    from rhythmflow.cli.flags import in_flags

    m = estimate_memory(BASE, 2048, batch=2)
    small = type(m)(m.weights, m.conditioning, m.activations, m.vae, m.total, available=GB)
    with pytest.raises(ResourceError, match=r"batch=1.*quantize=int8") as err:
        refuse_if_too_big(small, batch=2, frames=2048, dtype="float32", device="cpu")
    assert "--" not in str(err.value)  # the library names fields; the CLI says flags
    assert "--batch 1, --quantize int8" in in_flags(str(err.value))
    big = type(m)(m.weights, m.conditioning, m.activations, m.vae, m.total, available=100 * GB)
    refuse_if_too_big(big, batch=2, frames=2048, dtype="float32", device="cpu")


def test_job_estimate_follows_the_flop_count():
    cfg, n, g = BASE, 2048, 50.0
    one, two = (forward_flops(cfg, n, rows)["total"] for rows in (1, 2))
    rate = g * DIT_EFFICIENCY * 1e9
    e = estimate_job(cfg, n, steps=16, evals_per_step=1, gflops=g, weight_bytes=4 * 10**9)
    assert (e.steps, e.evaluations) == (16, 16)
    assert e.sampling == pytest.approx(16 * two / rate)
    assert e.load == pytest.approx(4.0) and e.lyrics == LYRICS_SECONDS and e.style == 0.0
    # the fixed 256-frame windows overlapping by 32: 9 windows decode 2304 frames for 2048
    assert e.decode == pytest.approx(2304 * VAE_FLOP_PER_FRAME / (g * VAE_EFFICIENCY * 1e9))
    assert e.total == pytest.approx(e.load + e.lyrics + e.sampling + e.decode)
    heun = estimate_job(cfg, n, steps=16, evals_per_step=2, gflops=g)
    assert heun.evaluations == 32 and heun.sampling == pytest.approx(2 * e.sampling)
    single = estimate_job(cfg, n, steps=16, evals_per_step=1, guided=False, gflops=g)
    assert single.sampling == pytest.approx(16 * one / rate)
    half = estimate_job(cfg, n, steps=16, evals_per_step=1, guidance_interval=(0.0, 0.4375),
                        gflops=g)  # grid points 0/16 .. 7/16 are guided: half the steps
    assert half.sampling == pytest.approx(8 * two / rate + 8 * one / rate)
    assert estimate_job(cfg, n, steps=8, evals_per_step=1, style_encoder=True,
                        gflops=g).style == STYLE_ENCODER_SECONDS


def test_job_estimate_from_a_calibrated_evaluation_and_unknown_speed():
    e = estimate_job(BASE, 2048, steps=8, evals_per_step=2, seconds_per_eval=2.0)
    assert (e.sampling, e.evaluations, e.basis) == (32.0, 16, "calibrated on the loaded model")
    unknown = estimate_job(BASE, 2048, steps=8, evals_per_step=1)
    assert not unknown.known and unknown.sampling == 0.0 and "unknown" in unknown.describe()


def test_per_forward_overhead_is_added_once_per_forward():
    cfg, n, g, o = BASE, 2048, 50.0, 0.25
    one, two = (forward_flops(cfg, n, rows)["total"] / (g * DIT_EFFICIENCY * 1e9)
                for rows in (1, 2))
    e = estimate_job(cfg, n, steps=4, evals_per_step=1, gflops=g, overhead_per_forward=o)
    assert e.sampling == pytest.approx(4 * (two + o)) and "+ 250 ms per forward" in e.basis
    split = estimate_job(cfg, n, steps=4, evals_per_step=1, gflops=g, overhead_per_forward=o,
                         split_guidance=True)  # two forwards per guided evaluation
    assert split.sampling == pytest.approx(4 * (two + 2 * o))
    batch = estimate_job(cfg, n, steps=4, evals_per_step=1, gflops=g, overhead_per_forward=o,
                         batch=3)  # the items of a batch run one after another
    assert batch.sampling == pytest.approx(4 * (3 * two + 3 * o))
    half = estimate_job(cfg, n, steps=4, evals_per_step=1, gflops=g, overhead_per_forward=o,
                        split_guidance=True, guidance_interval=(0.0, 0.3))  # steps 0, 1 guided
    assert half.sampling == pytest.approx(2 * (two + 2 * o) + 2 * (one + o))
    calibrated = estimate_job(cfg, n, steps=4, evals_per_step=1, seconds_per_eval=2.0,
                              overhead_per_forward=o)  # the calibration timed it already
    assert calibrated.sampling == 8.0
    assert not estimate_job(cfg, n, steps=4, evals_per_step=1, overhead_per_forward=o).known
    assert forward_overhead(cfg, (1e-3, 2e-4)) == pytest.approx(1e-3 + 16 * 2e-4)


def test_steps_for_budget_is_largest_that_fits():
    def est(per_step: float, fixed: float):
        return lambda s: JobEstimate(fixed, 0.0, 0.0, s * per_step, 0.0, s, s, per_step, "test")

    assert steps_for_budget(10.5, est(1.0, 0.0)) == 10
    assert steps_for_budget(10.5, est(2.0, 0.5)) == 5
    assert steps_for_budget(1e9, est(1.0, 0.0)) == 32
    with pytest.raises(ResourceError, match="time_budget 1s is too short") as info:
        steps_for_budget(1, est(1.0, 0.5))
    assert info.value.field == "time_budget"


def test_calibration_fits_fixed_plus_per_flop_cost_and_extrapolates():
    """The fit is exact for a timer linear in the FLOP count, and the real length is timed
    directly only when the prediction is cheap."""
    from rhythmflow.testing import TINY

    model = type("M", (), {"config": TINY})()
    f0, f1, n = 64, 128, 1024
    w = {f: forward_flops(TINY, f, 2)["total"] for f in (f0, f1, n)}
    calls: list[int] = []
    per_flop, fixed = 2e-9, 0.5

    def flop_timer(model, frames, rows, **kw):
        calls.append(frames)
        return fixed + per_flop * forward_flops(TINY, frames, rows)["total"]

    predicted = calibrate(model, n, rows=2, calib_frames=f1, direct_below=0.0, timer=flop_timer)
    assert predicted == pytest.approx(fixed + per_flop * w[n])
    assert calls == [f1, f0]  # two short forwards, never the long one
    calls.clear()
    direct = calibrate(model, n, rows=2, calib_frames=f1, direct_below=1e9, timer=flop_timer)
    assert calls == [f1, f0, n] and direct == pytest.approx(fixed + per_flop * w[n])
    calls.clear()
    assert calibrate(model, 100, rows=2, calib_frames=f1, timer=flop_timer) == pytest.approx(
        fixed + per_flop * forward_flops(TINY, 100, 2)["total"])
    assert calls == [100]  # shorter than the calibration length: timed as is
    # a timer that does not grow with length (noise) falls back to a proportional estimate
    flat = calibrate(model, n, rows=2, calib_frames=f1, direct_below=0.0,
                     timer=lambda *a, **k: 1.0)
    assert flat == pytest.approx(w[n] / w[f1])


def test_items_are_evaluated_one_at_a_time():
    """A batch keeps every item's conditioning, but only one forward's activations are live."""
    one = estimate_memory(BASE, 6144, batch=1)
    many = estimate_memory(BASE, 6144, batch=64)
    assert many.activations == one.activations
    assert many.conditioning == 64 * one.conditioning
    split = estimate_memory(BASE, 6144, layout="split")
    assert split.activations * 2 == one.activations
