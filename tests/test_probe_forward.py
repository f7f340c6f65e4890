"""The forward-level probe: guidance layout per length and per-forward overhead.

Policy tests use RECORDED layout measurements: the AMX Xeon in bfloat16 (docs/PERFORMANCE.md,
full width, 4 layers: the doubled batch never slower), issue 13's float32 figure at 2048 frames
(doubled batch 2.11x one batch-1 evaluation: two forwards 1.055x faster) and one decoder layer
measured by this probe on the busy 2-core Xeon in bfloat16 (split 1.32x faster at 2048 frames).
Measurement tests run on a virtual clock; one real short measurement checks the real layer.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch

from rhythmflow.machine import forward as pf
from rhythmflow.machine import probe as pr
from rhythmflow.machine.forward import LayoutTiming, choose_guidance_layout
from rhythmflow.planner.core import Machine
from tests.test_probe import AMX

AMX_BF16 = (LayoutTiming(256, 6.5, 10.9), LayoutTiming(1024, 17.0, 22.7),
            LayoutTiming(2048, 33.1, 34.5))
ISSUE13_FP32 = (LayoutTiming(256, 2.0, 2.6), LayoutTiming(2048, 44.3, 42.0))
LAYER_BF16 = (LayoutTiming(256, 0.44, 0.58), LayoutTiming(1024, 1.16, 1.84),
              LayoutTiming(2048, 1.62, 1.23))


@pytest.mark.parametrize("frames", [256, 700, 1024, 2048, 6144])
def test_amx_bfloat16_measurement_keeps_the_doubled_batch(frames):
    layout, why = choose_guidance_layout(frames, AMX_BF16)
    assert layout == "batched" and why.startswith("batched guidance (one doubled forward): ")


def test_split_wins_at_long_lengths_and_says_by_how_much_on_this_cpu():
    layout, why = choose_guidance_layout(2048, LAYER_BF16)
    assert layout == "split"
    assert why == ("split guidance (two forwards): 1.32x faster than one doubled batch at "
                   "2048 frames on this CPU")
    assert choose_guidance_layout(6144, LAYER_BF16)[0] == "split"  # 3x the longest: in reach
    assert choose_guidance_layout(256, LAYER_BF16)[0] == "batched"


def test_a_small_win_of_two_forwards_stays_batched():
    """Issue 13's float32 figure (two forwards 1.055x faster) is inside the noise guard."""
    layout, why = choose_guidance_layout(2048, ISSUE13_FP32)
    assert layout == "batched"
    assert why == ("batched guidance (one doubled forward): two forwards only 1.05x faster at "
                   "2048 frames on this CPU, within the 15% tie margin")


def test_between_measured_lengths_the_ratio_is_interpolated():
    assert choose_guidance_layout(1024, LAYER_BF16)[0] == "batched"
    layout, why = choose_guidance_layout(1500, LAYER_BF16)  # log ratio +0.46 → −0.28: 1.06
    assert layout == "batched" and "interpolated between 1024 and 2048" in why
    layout, why = choose_guidance_layout(1900, LAYER_BF16)
    assert layout == "split" and "1.22x faster" in why and "at 1900 frames" in why
    assert choose_guidance_layout(2048, LAYER_BF16)[1].startswith(
        "split guidance (two forwards): 1.32x faster than one doubled batch at 2048 frames")


@pytest.mark.parametrize(("split", "expected", "text"), [
    (1.00, "batched", "1.00x faster than two forwards"),
    (0.99, "batched", "within the 15% tie margin"),
    (0.90, "batched", "within the 15% tie margin"),
    (0.85, "split", "1.18x faster than one doubled batch"),
])
def test_a_tie_is_batched(split, expected, text):
    layout, why = choose_guidance_layout(2048, [LayoutTiming(2048, 1.0, split)])
    assert layout == expected and text in why


def test_far_from_any_measurement_or_none_at_all_is_batched():
    only_short = [LayoutTiming(256, 1.0, 0.5)]
    assert choose_guidance_layout(700, only_short)[0] == "split"  # 2.7x away: in reach
    layout, why = choose_guidance_layout(2048, only_short)
    assert layout == "batched" and "no layout measurement near 2048 frames (measured at 256)" in why
    assert choose_guidance_layout(2048, None)[0] == "batched"
    assert choose_guidance_layout(2048, [LayoutTiming(2048, 0.0, 0.0)])[0] == "batched"


class VirtualLayer:
    """``call(layout, frames)`` on a virtual clock: ``layer_flops × 1e-12`` seconds per call of
    the doubled batch, ``split_factor[frames]`` times that for two forwards, plus spikes."""

    def __init__(self, split_factor, spikes=None):
        self.now, self.split_factor, self.spikes, self.calls = 0.0, split_factor, spikes or {}, []

    def clock(self):
        return self.now

    def __call__(self, layout, frames):
        self.calls.append((layout, frames))
        base = pf.layer_flops(frames, 2) * 1e-12
        self.now += base * (self.split_factor[frames] if layout == "split" else 1.0)
        self.now += self.spikes.get(len(self.calls), 0.0)


def test_layout_measurement_alternates_keeps_the_fastest_and_stays_in_budget():
    f = {256: 1.2, 1024: 1.1, 2048: 0.8}
    cost = {n: pf.layer_flops(n, 2) * 1e-12 for n in f}  # one batched call
    layer = VirtualLayer(f, spikes={1: 5.0})  # a busy spell on the very first call
    # room for both 256 pairs and the first 2048 and 1024 pairs, not for a second 2048 pair
    budget = 5.0 + sum(cost[n] * (1 + f[n]) for n in f) + cost[256] * (1 + f[256]) + 1e-9
    t = pf.measure_layouts(layer, budget=budget, clock=layer.clock)
    assert layer.calls == [("batched", 256), ("split", 256), ("split", 256), ("batched", 256),
                           ("batched", 2048), ("split", 2048), ("batched", 1024), ("split", 1024)]
    by = {m.frames: m for m in t}
    assert sorted(by) == [256, 1024, 2048]
    assert by[256].batched == pytest.approx(cost[256])  # the spell was dropped
    assert by[2048].split == pytest.approx(cost[2048] * 0.8)
    assert choose_guidance_layout(2048, t)[0] == "split"
    tight = VirtualLayer(f)  # no room after the 256 pairs for 2048, but for 1024
    t = pf.measure_layouts(tight, budget=cost[256] * 4.4 + cost[1024] * 2.2, clock=tight.clock)
    assert [m.frames for m in t] == [256, 1024] and ("batched", 2048) not in tight.calls


def test_the_first_pair_always_runs_and_the_rest_only_within_budget():
    layer = VirtualLayer({256: 1.0, 1024: 1.0, 2048: 1.0})
    t = pf.measure_layouts(layer, budget=0.0, clock=layer.clock)
    assert [m.frames for m in t] == [256] and layer.calls == [("batched", 256), ("split", 256)]


def test_a_real_layer_is_timed_in_the_chosen_dtype():
    w_dd, w_fd = torch.randn(pf.DIM, pf.DIM) / 45, torch.randn(pf.FF, pf.DIM) / 45
    for dtype in ("float32", "bfloat16"):
        t = pf.measure_layouts(pf.layer_call(dtype, w_dd, w_fd), budget=0.0, frames=(4, 8),
                               clock=time.perf_counter)
        assert [m.frames for m in t] == [4]
        assert t[0].batched > 0 and t[0].split > 0


def test_overhead_fit_recovers_fixed_and_per_layer_costs():
    assert pf.fit_overhead([1e-3 + 2e-4, 1e-3 + 6e-4]) == pytest.approx((1e-3, 2e-4))
    assert pf.fit_overhead([3e-3, 5e-3, 7e-3], depths=(1, 2, 3)) == pytest.approx((1e-3, 2e-3))
    assert pf.fit_overhead([5e-3, 4e-3]) == (pytest.approx(4.5e-3), 0.0)  # noise: no negatives
    with pytest.raises(ValueError, match="two depths"):
        pf.fit_overhead([1.0], depths=(1,))


def test_overhead_measurement_times_two_depths_and_fits(monkeypatch):
    from rhythmflow.model.dit import DiT

    now = [0.0]
    real = DiT.forward

    def forward(self, x, t, cond):  # virtual time: 1 ms + 0.25 ms per layer (+ a busy spell)
        now[0] += 1e-3 + 2.5e-4 * self.config.depth + (0.5 if now[0] == 0.0 else 0.0)
        return real(self, x, t, cond)

    monkeypatch.setattr(DiT, "forward", forward)
    fixed, per_layer = pf.measure_overhead(budget=0.0, clock=lambda: now[0])
    assert (fixed, per_layer) == (pytest.approx(1e-3), pytest.approx(2.5e-4))


RECORDED = pr.Probe(**{**AMX.__dict__, "layout_dtype": "bfloat16", "layouts": LAYER_BF16,
                       "forward_overhead": 1.0e-3, "layer_overhead": 2.5e-4})


def test_probe_with_layouts_round_trips_and_machine_detect_exposes_them(monkeypatch, tmp_path):
    assert pr.Probe.from_dict(json.loads(json.dumps(RECORDED.to_dict()))) == RECORDED
    monkeypatch.setenv("RHYTHMFLOW_CACHE_DIR", str(tmp_path))
    measured = []
    monkeypatch.setattr(pr, "measure_cpu", lambda t, **kw: measured.append(t) or RECORDED)
    m = Machine.detect(threads=2)
    again = Machine.detect(threads=2)  # read back from the cache file (free memory may move)
    assert dataclasses.replace(again, memory_available=m.memory_available) == m
    assert measured == [2]
    assert m.layout_dtype == "bfloat16" and m.cpu_dtype == "bfloat16"
    assert m.layout_timings == ((256, 0.44, 0.58), (1024, 1.16, 1.84), (2048, 1.62, 1.23))
    assert m.eval_overhead == (1.0e-3, 2.5e-4)
    assert Machine.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_a_probe_cached_by_an_older_version_is_measured_again(monkeypatch, tmp_path):
    monkeypatch.setenv("RHYTHMFLOW_CACHE_DIR", str(tmp_path))
    old = {**AMX.to_dict(), "version": 2}
    for key in ("layout_dtype", "layouts", "forward_overhead", "layer_overhead"):
        old.pop(key)
    path = pr.cache_path(2)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(old))
    monkeypatch.setattr(pr, "measure_cpu", lambda t, **kw: RECORDED)
    assert pr.load_or_measure(2) == RECORDED
    assert pr.Probe.from_dict(json.loads(path.read_text())) == RECORDED
