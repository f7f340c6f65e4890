"""The machine probe and the dtype / guidance-layout policies.

Policy tests use RECORDED probes: the AMX one measured on the 2-core Xeon (amx_bf16, amx_int8,
avx512_fp16) this module was written on; the AVX2 one built from the AVX2 EPYC numbers of
docs/PERFORMANCE.md (float16 4.6x and bfloat16 11x slower than float32 per layer, int8 1.7x
faster; product errors are properties of the arithmetic, as measured here).
"""

from __future__ import annotations

import json

import pytest
import torch

from rhythmflow.machine import probe as pr
from rhythmflow.machine.probe import Candidate, LayoutTiming, Probe
from rhythmflow.planner.core import Machine, runtime_for

ERR = {"float32": 0.0, "bfloat16": 2.88e-3, "float16": 3.59e-4, "int8": 2.25e-2}
AMX_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
             "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def recorded(flags, speedups, errors=ERR, finite=None, name="recorded CPU") -> Probe:
    cands = tuple(
        Candidate(d, 0.15 / s, s, errors[d], pr.error_class(errors[d]),
                  True if finite is None else finite.get(d, True))
        for d, s in speedups.items()
    )
    return Probe("cpu", name, tuple(flags), "2.13.0+cpu", 2, "amx_bf16" in flags, cands)


# measured on this machine (busy, 2 threads): bf16 2.80-2.92x, fp16 1.10-1.18x, int8 2.98-3.33x
AMX = recorded(AMX_FLAGS, {"float32": 1.0, "bfloat16": 2.80, "float16": 1.10, "int8": 2.98},
               name="Intel(R) Xeon(R) Processor")
AVX2 = recorded(("avx2", "fma", "f16c"),
                {"float32": 1.0, "bfloat16": 1 / 11, "float16": 1 / 4.6, "int8": 1.7},
                name="AMD EPYC")


def test_amx_picks_bfloat16_and_says_why():
    dtype, why = pr.choose_cpu_dtype(AMX)
    assert dtype == "bfloat16"
    assert why.startswith("bfloat16: 2.8x faster than float32 on this CPU (AMX)")


def test_avx2_keeps_float32_and_int8_stays_opt_in():
    dtype, why = pr.choose_cpu_dtype(AVX2)
    assert dtype == "float32" and "no faster acceptable" in why and "int8 1.70x" in why
    assert pr.choose_cpu_dtype(AVX2, allow_int8=True)[0] == "int8"


def test_int8_is_chosen_when_its_measured_error_comes_down():
    better = dict(ERR, int8=4e-3)  # e.g. per-channel / smooth-quant scaling in the low class
    p = recorded(AMX_FLAGS, {"float32": 1.0, "bfloat16": 2.8, "int8": 3.5}, errors=better)
    assert pr.choose_cpu_dtype(p)[0] == "int8"
    # the runtime's dtype never becomes int8 (that is --quantize): bfloat16 there
    assert pr.choose_cpu_dtype(p, dtypes=("float32", "bfloat16", "float16"))[0] == "bfloat16"


@pytest.mark.parametrize(("fp16", "finite", "expected"), [
    (3.2, True, "bfloat16"),   # fastest, but not by the margin over bfloat16
    (3.6, True, "float16"),    # fastest by > 10 %: chosen
    (3.6, False, "bfloat16"),  # overflowed in the probe: never
])
def test_float16_only_when_fastest_and_safe(fp16, finite, expected):
    p = recorded(AMX_FLAGS, {"float32": 1.0, "bfloat16": 3.0, "float16": fp16},
                 finite={"float16": finite})
    assert pr.choose_cpu_dtype(p)[0] == expected


def test_a_gain_within_noise_keeps_float32_and_no_probe_means_float32():
    p = recorded(AMX_FLAGS, {"float32": 1.0, "bfloat16": 1.1})
    assert pr.choose_cpu_dtype(p)[0] == "float32"
    assert pr.choose_cpu_dtype(None) == ("float32", pr.choose_cpu_dtype(None)[1])
    assert "no machine probe" in pr.choose_cpu_dtype(None)[1]


@pytest.mark.parametrize(("probe", "expected"), [
    (Probe("cuda", "NVIDIA H100", bf16_supported=True), "bfloat16"),
    (Probe("cuda", "Tesla T4", bf16_supported=False), "float16"),
    (Probe("mps", "Apple M2"), "float32"),
    (AMX, "bfloat16"),
    (AVX2, "float32"),
])
def test_choose_dtype_per_device_kind(probe, expected):
    assert pr.choose_dtype(probe)[0] == expected


def test_gpu_policy_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown GPU kind"):
        pr.choose_gpu_dtype("tpu", True)


def _machine(probe) -> Machine:
    dtype, why = pr.choose_cpu_dtype(probe, dtypes=("float32", "bfloat16", "float16"))
    return Machine(cores=2, cpu_dtype=dtype, cpu_dtype_reason=why)


def test_the_plan_runtime_uses_the_probe_only_for_auto_on_the_cpu():
    rt = runtime_for(_machine(AMX), "cpu", "auto")
    assert rt.dtype == "bfloat16"
    assert any("2.8x faster than float32 on this CPU (AMX)" in r for r in rt.reasons)
    assert runtime_for(Machine(cores=2), "cpu", "auto").dtype == "float32"  # no probe
    assert runtime_for(_machine(AVX2), "cpu", "auto").dtype == "float32"
    assert runtime_for(_machine(AMX), "cpu", "float32").dtype == "float32"


def test_machine_detect_reads_the_probe_once_and_plans_with_its_rates(monkeypatch, tmp_path):
    monkeypatch.setenv("RHYTHMFLOW_CACHE_DIR", str(tmp_path))
    measured = []
    monkeypatch.setattr(pr, "measure_cpu", lambda t, **kw: measured.append(t) or AMX)
    m = Machine.detect(threads=2)
    assert Machine.detect(threads=2) == m and measured == [2]  # cached on disk
    assert (m.cpu_dtype, m.gflops) == ("bfloat16", {f"cpu-{d}": g for d, g in
                                                   pr.probe_gflops(AMX).items()})
    assert m.gflops["cpu-bfloat16"] > m.gflops["cpu-float32"]


def test_guidance_layout_policy_from_measurements():
    # the doubled batch wins short, clearly loses at 2048 frames (beyond the 15 % noise guard)
    t = [LayoutTiming(256, batched=2.0, split=2.6), LayoutTiming(2048, batched=44.0, split=36.0)]
    assert pr.choose_guidance_layout(300, t)[0] == "batched"
    layout, why = pr.choose_guidance_layout(2048, t)
    assert layout == "split" and "at 2048 frames" in why
    assert pr.choose_guidance_layout(6144, t)[0] == "split"
    assert pr.choose_guidance_layout(2048, None)[0] == "batched"


def test_probe_round_trips_through_json():
    back = Probe.from_dict(json.loads(json.dumps(AMX.to_dict())))
    assert back == AMX


def test_error_classes():
    assert [pr.error_class(e) for e in (0.0, 3e-7, 3.6e-4, 2.9e-3, 2.3e-2)] == [
        "exact", "exact", "low-precision", "low-precision", "quantized"]


def test_measure_and_cache(monkeypatch, tmp_path):
    """A real (short) measurement on this CPU, cached under RHYTHMFLOW_CACHE_DIR, reused, and
    re-measured on refresh or for another thread count."""
    monkeypatch.setenv("RHYTHMFLOW_CACHE_DIR", str(tmp_path))
    before = torch.get_num_threads()
    p = pr.load_or_measure(1)
    assert torch.get_num_threads() == before
    assert [c.dtype for c in p.candidates][:3] == ["float32", "bfloat16", "float16"]
    f32, bf16, fp16 = (p.candidate(d) for d in ("float32", "bfloat16", "float16"))
    assert (f32.speedup_vs_float32, f32.rel_error, f32.error_class) == (1.0, 0.0, "exact")
    assert bf16.error_class == fp16.error_class == "low-precision"
    assert 1e-4 < bf16.rel_error < 1e-2 and fp16.rel_error < bf16.rel_error
    assert all(c.seconds > 0 and c.finite for c in p.candidates)
    # the layout in the dtype auto runs: at least the first (shortest) length is measured
    assert p.layout_dtype == pr.choose_cpu_dtype(p, dtypes=("float32", "bfloat16", "float16"))[0]
    assert p.layouts and p.layouts[0].frames == 256
    assert all(t.batched > 0 and t.split > 0 for t in p.layouts)
    assert p.forward_overhead >= 0 and p.layer_overhead >= 0 and p.seconds_taken > 0
    assert set(p.vae_gflops) == {"float32", "bfloat16"} and min(p.vae_gflops.values()) > 0
    path = pr.cache_path(1)
    assert path.parent == tmp_path / "probe" and path.is_file()
    assert Probe.from_dict(json.loads(path.read_text())) == p

    def no_measure(threads, **kw):
        raise AssertionError("a cached probe must not be measured again")

    monkeypatch.setattr(pr, "measure_cpu", no_measure)
    assert pr.load_or_measure(1) == p
    fresh = []
    monkeypatch.setattr(pr, "measure_cpu", lambda t, **kw: fresh.append(t) or AMX)
    assert pr.load_or_measure(1, refresh=True) == AMX and fresh == [1]
    assert pr.cache_path(2) != path
    pr.load_or_measure(2)
    assert fresh == [1, 2]
    path.write_text("{not json")
    assert pr.load_or_measure(1) == AMX and fresh == [1, 2, 1]  # unreadable cache: re-measured


def test_unwritable_cache_still_returns_the_probe(monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("RHYTHMFLOW_CACHE_DIR", str(blocker))  # a file: no folder inside it
    monkeypatch.setattr(pr, "measure_cpu", lambda t, **kw: AMX)
    assert pr.load_or_measure(2) == AMX
    assert "could not cache the machine probe" in caplog.text


@pytest.mark.slow
def test_importing_the_probe_measures_nothing():
    import subprocess
    import sys

    code = ("import rhythmflow.machine.probe, sys; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class VirtualCPU:
    """A fake clock plus products whose cost is virtual: ``cost[dtype]`` seconds per token and
    weight matrix, plus a busy spell ``spikes[(dtype, call)]`` on chosen calls."""

    def __init__(self, cost, spikes=None):
        self.now, self.cost, self.spikes, self.calls = 0.0, cost, spikes or {}, {}

    def clock(self):
        return self.now

    def product(self, dtype, x, w, lin):
        real = torch.nn.functional.linear  # the real maths (errors), virtual time

        def fn(xs):
            k = self.calls[dtype] = self.calls.get(dtype, 0) + 1
            self.now += self.cost[dtype] * xs.shape[0] + self.spikes.get((dtype, k), 0.0)
            if dtype in ("float32", "int8"):
                return real(xs, w)
            d = getattr(torch, dtype)
            return real(xs.to(d), w.to(d))

        return fn


def test_probe_interleaves_keeps_the_fastest_round_and_scales_a_slow_scout(monkeypatch):
    # calls 1-4: scout (warm-up + timed per shape); 5-6 round 0; 7-8 round 1
    cpu = VirtualCPU({"float32": 1.0, "bfloat16": 0.25, "float16": 40.0, "int8": 0.5},
                     spikes={("bfloat16", 5): 1000.0, ("float32", 8): 500.0})  # rounds 0, 1
    monkeypatch.setattr(pr, "_product", cpu.product)
    p = pr.measure_cpu(1, budget=0.0, clock=cpu.clock, layout_frames=(), overhead=False)
    c = {x.dtype: x for x in p.candidates}
    layer = sum(count for _, _, count in pr.LAYER_SHAPES)  # 7 products per layer
    assert c["float32"].seconds == pytest.approx(layer * pr.TOKENS * 1.0)
    assert c["bfloat16"].speedup_vs_float32 == pytest.approx(4.0)  # the busy spell is dropped
    assert c["int8"].speedup_vs_float32 == pytest.approx(2.0)
    assert c["float16"].scaled and not c["bfloat16"].scaled  # 40x slower on the scout
    assert c["float16"].speedup_vs_float32 == pytest.approx(1 / 40)
    # float16 ran only its scout (warm-up + timed call per shape), never the full rounds
    assert cpu.calls["float16"] == 2 * len(pr.LAYER_SHAPES)
    assert cpu.calls["bfloat16"] == 4 * len(pr.LAYER_SHAPES)  # scout + 2 rounds (budget 0)
    assert pr.choose_cpu_dtype(p)[0] == "bfloat16"
    assert (p.layouts, p.layout_dtype, p.forward_overhead) == ((), "", 0.0)
