"""plan(request, machine): every decision and validation, without weights, on recorded machines."""

from __future__ import annotations

import dataclasses

import pytest

from rhythmflow import specs
from rhythmflow.errors import LrcError, ResourceError, UsageError
from rhythmflow.planner.core import Gpu, Machine, plan
from rhythmflow.planner.cost import GB
from rhythmflow.request import GenerationRequest

CPU = Machine(cpu="test CPU", cores=2, memory_available=24 * GB, gflops={"cpu-float32": 200.0})
GPU = Machine(cpu="test CPU", cores=8, memory_available=64 * GB,
              gpus=(Gpu("Test GPU", 70 * GB, True),),
              gflops={"cpu-float32": 200.0, "cuda-bfloat16": 400_000.0})
STYLE = {"style_prompt": "pop"}


def req(**kw) -> GenerationRequest:
    return GenerationRequest(**{**STYLE, **kw})


def test_default_base_job_on_a_cpu():
    p = plan(req(seed=3), CPU)
    assert (p.model, p.duration, p.frames) == ("v1.2-base", 95.0, specs.BASE_FRAMES)
    assert (p.device, p.dtype, p.steps, p.seed, p.runtime.threads) == ("cpu", "float32", 8, 3, 2)
    assert p.runtime_class == "cpu-float32" and p.guided
    e = p.estimate
    assert e.known and e.evaluations == 8 and e.style > 0  # a text prompt loads MuQ-MuLan
    assert e.total == pytest.approx(e.load + e.lyrics + e.style + e.sampling + e.decode)
    assert "steps 8: default on cpu" in p.reasons


@pytest.mark.parametrize(("duration", "model", "frames"), [
    (None, "v1.2-base", 2048), (95, "v1.2-base", 2048), (96, "v1.2-full", 2067),
    (150.5, "v1.2-full", 3240), (285, "v1.2-full", 6136)])
def test_duration_chooses_model_and_frames(duration, model, frames):
    p = plan(req(duration=duration), CPU)
    assert (p.model, p.frames) == (model, frames)
    assert p.frames == specs.frames_for(p.config.max_frames, p.duration)


@pytest.mark.parametrize(("kw", "field", "text"), [
    ({"duration": 120, "model": "base"}, "duration", "base models generate exactly 95 s"),
    ({"duration": 300}, "duration", "full models generate 96-285 s"),
    ({"duration": 90, "model": "full"}, "duration", "full models generate"),
    ({"lrc": "[00:01.00]ok\n[00:75.00]bad seconds\n"}, "lrc", "LRC line 2"),
    ({"style_embedding_file": "/no/such.npy", "style_prompt": None}, "style_embedding_file",
     "no such file"),
    ({"ref_song": "/no/such.wav", "edit_segments": [[0, 10]]}, "ref_song", "no such file"),
    ({"device": "cuda"}, "device", "no such CUDA device"),
])
def test_invalid_jobs_fail_naming_the_field(kw, field, text):
    with pytest.raises(UsageError, match=text) as info:
        plan(req(**kw), CPU)
    assert info.value.field == field


def test_lrc_errors_carry_the_line_number():
    with pytest.raises(LrcError) as info:
        plan(req(lrc="[00:01.00]fine\n[01:xx.00]broken\n"), CPU)
    assert info.value.line == 2


def test_edit_segments_past_the_song_fail_before_loading(tmp_path):
    song = tmp_path / "ref.wav"
    song.write_bytes(b"RIFF")  # existence is all plan checks of the file
    with pytest.raises(UsageError, match="past the end"):
        plan(req(ref_song=str(song), edit_segments=[[90, 100]]), CPU)


def test_time_budget_picks_the_most_steps_that_fit_or_refuses():
    big = plan(req(time_budget=1e9), CPU)
    assert big.steps == 32 and any("time_budget" in r for r in big.reasons)
    per_step = big.estimate.sampling / 32
    fixed = big.estimate.total - big.estimate.sampling
    p = plan(req(time_budget=fixed + 5.5 * per_step), CPU)
    assert p.steps == 5 and p.estimate.total <= fixed + 5.5 * per_step
    with pytest.raises(ResourceError, match="time_budget .* too short") as info:
        plan(req(time_budget=fixed / 2), CPU)
    assert info.value.field == "time_budget"
    with pytest.raises(ResourceError, match="at most 5 steps fit"):
        plan(req(time_budget=fixed + 5.5 * per_step, steps=6), CPU)
    with pytest.raises(UsageError, match="speed is unknown"):
        plan(req(time_budget=100.0), dataclasses.replace(CPU, gflops={}))


def test_a_job_that_cannot_fit_is_refused_with_the_settings_that_would_fit():
    small = dataclasses.replace(CPU, memory_available=2 * GB)
    with pytest.raises(ResourceError, match=r"batch=1.*quantize=int8"):
        plan(req(batch=2), small)
    quantized = dataclasses.replace(CPU, memory_available=6 * GB)
    with pytest.raises(ResourceError):
        plan(req(), quantized)
    assert plan(req(quantize="int8"), quantized).memory.fits


def test_gpu_machine_plans_bf16_and_32_steps():
    p = plan(req(seed=1), GPU)
    assert (p.device, p.dtype, p.steps, p.runtime_class) == ("cuda", "bfloat16", 32,
                                                             "cuda-bfloat16")
    assert p.estimate.sampling < plan(req(seed=1, device="cpu"), GPU).estimate.sampling


def test_seeds_are_drawn_once_and_recorded():
    a, b = plan(req(), CPU), plan(req(), CPU)
    assert 0 <= a.seed < 2**31 and any(r.startswith(f"seed {a.seed}") for r in a.reasons)
    assert plan(req(seed=a.seed), CPU).seed == a.seed
    assert {a.seed, b.seed}  # both drawn; equal only by chance
    assert plan(req(seed=2**63 - 1), CPU).seed == 2**63 - 1


@pytest.mark.parametrize(("schedule", "steps"), [("uniform", 4), ("sway", 6)])
def test_grid_is_the_samplers_grid(schedule, steps):
    import torch

    from rhythmflow.sampling import make_grid

    p = plan(req(schedule=schedule, steps=steps), CPU)
    grid = p.grid()
    assert torch.equal(grid, make_grid(steps, schedule, p.sway_coef))
    assert grid[0] == 0 and grid[-1] == 1 and len(grid) == steps + 1


def test_guidance_changes_work_and_memory():
    guided, unguided = plan(req(steps=8), CPU), plan(req(steps=8, cfg_strength=0), CPU)
    assert not unguided.guided and unguided.estimate.sampling < guided.estimate.sampling
    assert unguided.memory.total < guided.memory.total
    part = plan(req(steps=8, guidance_interval=(0.25, 0.75)), CPU)
    assert unguided.estimate.sampling < part.estimate.sampling < guided.estimate.sampling


def test_plan_dict_is_json_and_holds_the_request():
    import json

    p = plan(req(seed=4, steps=2), CPU)
    d = json.loads(json.dumps(p.to_dict()))
    assert GenerationRequest.from_dict(d["request"]) == p.request
    assert (d["steps"], d["seed"], d["frames"], d["dtype"]) == (2, 4, 2048, "float32")


def test_machine_round_trips_and_detects_this_one():
    assert Machine.from_dict(GPU.to_dict()) == GPU
    here = Machine.detect(measure=False)
    assert here.cores >= 1 and here.memory_available > 0


def test_checkpoint_architecture_is_read_without_loading(tmp_path):
    from rhythmflow.testing import TINY, random_dit, save_checkpoint

    ckpt = save_checkpoint(random_dit(TINY), tmp_path / "cfm_model.pt")
    p = plan(req(checkpoint=str(ckpt), seed=0), CPU)
    assert p.config == TINY and p.model == str(ckpt) and p.frames == TINY.max_frames


@pytest.mark.slow
def test_planning_imports_no_torch():
    """The HTTP service validates requests with plan(); it must stay free of torch."""
    import subprocess
    import sys

    code = ("import sys\nfrom rhythmflow.planner.core import Machine, plan\n"
            "from rhythmflow.request import GenerationRequest\n"
            "m = Machine(cores=2, memory_available=10**11, gflops={'cpu-float32': 100.0})\n"
            "p = plan(GenerationRequest(style_prompt='x', lrc='[00:01.00]hi\\n', seed=1), m)\n"
            "q = plan(GenerationRequest(style_prompt='x', lyrics='[verse]\\nhello there', seed=1), m)\n"
            "p.to_dict(); print(p.steps, q.lrc.count(']hello there'), 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["8", "1", "False"]  # LRC and plain lyrics (timed here) alike


def test_int8_quantization_plans_a_float32_model_even_where_auto_picks_bf16():
    amx = dataclasses.replace(CPU, cpu_dtype="bfloat16", cpu_dtype_reason="bfloat16: faster here")
    assert plan(req(), amx).dtype == "bfloat16"
    assert plan(req(quantize="int8"), amx).dtype == "float32"
    with pytest.raises(UsageError, match="quantizes a float32 model") as info:
        plan(req(quantize="int8", dtype="bfloat16"), amx)
    assert info.value.field == "quantize"


def test_guidance_layout_follows_the_machines_measurement():
    assert plan(req(seed=1), CPU).guidance_layout == "batched"  # nothing measured
    split_wins = dataclasses.replace(CPU, layout_timings=((2048, 2.0, 1.6), (256, 0.2, 0.3)))
    assert plan(req(seed=1), split_wins).guidance_layout == "split"
    assert plan(req(seed=1, cfg_strength=0), split_wins).guidance_layout == "batched"
    assert Machine.from_dict(split_wins.to_dict()) == split_wins


# Recorded on the busy 2-core AMX Xeon by the probe's layer measurement (bfloat16): the doubled
# batch wins at 256 and 1024 frames, two forwards win at 2048.
AMX_LAYOUT = dataclasses.replace(
    CPU, cpu_dtype="bfloat16", cpu_dtype_reason="bfloat16: 2.8x faster than float32 on this CPU",
    gflops={"cpu-float32": 200.0, "cpu-bfloat16": 500.0}, layout_dtype="bfloat16",
    layout_timings=((256, 0.44, 0.58), (1024, 1.16, 1.84), (2048, 1.62, 1.23)))


def test_plan_takes_the_measured_layout_per_length_and_says_why():
    p = plan(req(seed=1), AMX_LAYOUT)
    assert (p.dtype, p.frames, p.guidance_layout) == ("bfloat16", 2048, "split")
    assert ("split guidance (two forwards): 1.32x faster than one doubled batch at 2048 frames "
            "on this CPU") in p.reasons
    assert p.to_dict()["guidance_layout"] == "split"
    short = dataclasses.replace(AMX_LAYOUT, layout_timings=((256, 0.44, 0.58),
                                                            (1024, 1.16, 1.84)))
    p = plan(req(seed=1), short)  # 2048 is within reach of 1024, where batched won
    assert p.guidance_layout == "batched"
    assert any(r.startswith("batched guidance (one doubled forward): 1.59x faster than two "
                            "forwards at 1024 frames") for r in p.reasons)
    assert plan(req(seed=1, duration=285), AMX_LAYOUT).guidance_layout == "split"  # 6136 frames


@pytest.mark.parametrize(("kw", "text"), [
    ({"dtype": "float32", "device": "cpu"}, "the layout was measured in bfloat16, not float32"),
    ({"quantize": "int8", "device": "cpu"},
     "the layout was measured in bfloat16, not float32 with int8 layers"),
    ({"device": "cuda"}, "not measured on cuda"),
])
def test_layout_is_batched_where_it_was_not_measured(kw, text):
    machine = dataclasses.replace(AMX_LAYOUT, gpus=GPU.gpus, gflops={**AMX_LAYOUT.gflops,
                                                                     **GPU.gflops})
    p = plan(req(seed=1, **kw), machine)
    assert p.guidance_layout == "batched"
    assert any(r.startswith("batched guidance (one doubled forward): ") and text in r
               for r in p.reasons)


def test_estimate_counts_the_measured_per_forward_overhead():
    from rhythmflow.testing import TINY

    overhead = (2e-2, 5e-3)  # seconds: fixed + per layer, as the probe measured them under load
    slow = dataclasses.replace(CPU, eval_overhead=overhead)
    per_forward = 2e-2 + 5e-3 * TINY.depth
    a, b = (plan(req(seed=1), m, config=TINY) for m in (CPU, slow))
    assert b.estimate.sampling == pytest.approx(a.estimate.sampling + 8 * per_forward)
    assert "ms per forward" in b.estimate.basis
    assert b.estimate.sampling > 2 * a.estimate.sampling  # tiny models: overhead dominates
    split = dataclasses.replace(slow, layout_timings=((2048, 2.0, 1.0),))
    c = plan(req(seed=1), split, config=TINY)
    assert c.guidance_layout == "split"  # two forwards per guided evaluation
    assert c.estimate.sampling == pytest.approx(a.estimate.sampling + 2 * 8 * per_forward)
    full, full_slow = plan(req(seed=1), CPU), plan(req(seed=1), slow)  # full size: negligible
    assert full_slow.estimate.total == pytest.approx(full.estimate.total, rel=2e-3)
    assert full_slow.estimate.total > full.estimate.total
    gpu = plan(req(seed=1), dataclasses.replace(GPU, eval_overhead=overhead), config=TINY)
    assert "ms per forward" not in gpu.estimate.basis  # measured on the CPU only
