"""The performance model: analytic FLOPs against torch's FLOP counter, memory, estimates."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from rhythmflow.machine import perf as perf
from rhythmflow.specs import PRESETS
from rhythmflow.testing import TINY, random_dit

CONFIGS = [TINY, dataclasses.replace(TINY, depth=3, conv_layers=2, max_frames=6144, ff_mult=3)]


def math_sdpa(q, k, v, attn_mask=None, is_causal=False, **kw):
    """Attention as explicit matmuls, so the FLOP counter sees QKᵀ and AV."""
    assert attn_mask is None and not is_causal
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ v


def counted(monkeypatch, fn) -> dict[str, int]:
    monkeypatch.setattr(F, "scaled_dot_product_attention", math_sdpa)
    with FlopCounterMode(display=False) as fc:
        fn()
    return {name: sum(c.values()) for name, c in fc.get_flop_counts().items()}


def group(counts: dict[str, int], pattern: str) -> int:
    rx = re.compile(pattern)
    return sum(v for k, v in counts.items() if rx.fullmatch(k))


@pytest.mark.parametrize("cfg", CONFIGS, ids=["tiny", "tiny6144"])
@pytest.mark.parametrize(("frames", "batch"), [(24, 1), (40, 2)])
def test_forward_flops_match_flop_counter(monkeypatch, cfg, frames, batch):
    model = random_dit(cfg)
    a = perf.model_inputs(model, frames, batch)
    x, t = a.pop("x"), a.pop("t")
    c = model.prepare(**a)
    counts = counted(monkeypatch, lambda: model(x, t, c))
    mine = perf.forward_flops(cfg, frames, batch)
    assert mine["total"] == counts["Global"]
    assert mine["mlp"] == group(counts, r"DiT\.transformer_blocks\.\d+\.mlp")
    attn = group(counts, r"DiT\.transformer_blocks\.\d+\.self_attn")
    proj = group(counts, r"DiT\.transformer_blocks\.\d+\.self_attn\.[qkvo]_proj")
    assert (mine["projections"], mine["attention"]) == (proj, attn - proj)
    assert mine["convolutions"] == counts["DiT.input_embed.conv_pos_embed"]
    assert mine["output"] == counts["DiT.norm_out"] + counts["DiT.proj_out"]
    assert sum(v for k, v in mine.items() if k != "total") == mine["total"]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["tiny", "tiny6144"])
def test_prepare_flops_match_flop_counter(monkeypatch, cfg):
    model = random_dit(cfg)
    a = perf.model_inputs(model, 20, 2)
    a.pop("x"), a.pop("t")
    counts = counted(monkeypatch, lambda: model.prepare(**a))
    assert perf.prepare_flops(cfg, 20, 2) == counts["Global"]


def test_full_size_flops_are_about_5_tflop_at_2048_frames():
    fl = perf.forward_flops(PRESETS["v1.2-base"], 2048)
    assert 4.9e12 < fl["total"] < 5.3e12
    assert fl["mlp"] > fl["projections"] > fl["attention"] > fl["convolutions"]
    assert perf.forward_flops(PRESETS["v1.2-base"], 2048, 2)["total"] == 2 * fl["total"]


def test_param_count_and_bytes():
    model = random_dit(TINY)
    n = sum(p.numel() for p in model.parameters())
    assert perf.param_count(TINY) == n
    assert perf.param_bytes(TINY) == 4 * n
    assert perf.param_bytes(TINY, torch.float16) == 2 * n
    assert perf.param_bytes(TINY, torch.int8) == n


@pytest.mark.parametrize("layout", ["linear", "matmul", "int8"])
def test_measure_gemm_gflops_runs_every_layout(layout):
    g = perf.measure_gemm_gflops(32, 64, 48, layout=layout, repeats=1)
    assert math.isfinite(g) and g > 0


def test_measure_gemm_rejects_unknown_layout():
    with pytest.raises(ValueError, match="layout"):
        perf.measure_gemm_gflops(8, 8, 8, layout="sparse")


def test_time_forward_leaves_the_model_unchanged():
    model = random_dit(TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = perf.time_forward(model, 32, 2, repeats=2, warmup_frames=8)
    assert math.isfinite(s) and s > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_peak_memory_sees_an_allocation():
    import mmap

    size = 64 * 2**20
    with perf.PeakMemory(interval=0.001) as mem:
        block = mmap.mmap(-1, size)  # fresh anonymous pages (malloc could reuse freed ones)
        block.write(b"\x01" * size)  # touched, and alive when the with-block exits
    block.close()
    assert mem.peak_rss - mem.start_rss > 48 * 2**20
    assert mem.peak_anon > 0


@pytest.mark.parametrize("name", ["tiny", "tiny-full", "v1.2-base", "v1.2-full"])
def test_analytic_parameter_count_equals_the_built_model(name):
    import dataclasses

    from rhythmflow.model.dit import DiT

    cfg = {"tiny": TINY, "tiny-full": dataclasses.replace(TINY, depth=3, max_frames=6144,
                                                          conv_layers=2)}.get(name) or PRESETS[name]
    with torch.device("meta"):
        model = DiT(cfg)
    assert cfg.param_count == sum(p.numel() for p in model.parameters())


def test_time_forward_builds_inputs_on_the_model_device_and_synchronises(monkeypatch):
    """A model whose weights live off the CPU (here: the meta device) gets its inputs there, and
    every timed forward is bracketed by a sync of that device (CUDA work is asynchronous)."""
    model = random_dit(TINY).to("meta")
    a = perf.model_inputs(model, 16, 2)
    assert {v.device.type for v in a.values()} == {"meta"}
    synced: list[torch.device] = []
    monkeypatch.setattr(perf, "device_sync", lambda d: synced.append(torch.device(d)))
    calls = []
    real_forward = type(model).forward

    def forward(self, x, t, c):
        calls.append(len(synced))
        return real_forward(self, x, t, c)

    monkeypatch.setattr(type(model), "forward", forward)
    perf.time_forward(model, 16, 2, repeats=3, warmup_frames=8)
    assert synced == [torch.device("meta")] * 6
    # warm-up runs unsynchronised; then each timed forward has one sync before and one after
    assert calls == [0, 1, 3, 5]


def test_device_sync_calls_the_backend_of_the_device(monkeypatch):
    seen = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: seen.append(("cuda", d)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: seen.append(("mps", None)))
    perf.device_sync("cpu")
    perf.device_sync(torch.device("meta"))
    assert seen == []
    perf.device_sync("cuda:1")
    perf.device_sync("mps")
    assert seen == [("cuda", torch.device("cuda:1")), ("mps", None)]
