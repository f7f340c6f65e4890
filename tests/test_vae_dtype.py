"""The VAE decode dtype by measurement: the probe's decoder convolution, the policy from recorded
measurements, the plan / runtime / estimate that carry it, and the end-to-end choice on a real
Oobleck TorchScript file (the accuracy guard on the weights is in test_vae_eager.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from rhythmflow.cli.main import main
from rhythmflow.errors import UsageError
from rhythmflow.machine.vae_probe import (
    DECODER_EFFICIENCY,
    RESIDUAL_TIME_SHARE,
    choose_vae_dtype,
    decode_seconds,
    measure_vae_convs,
)
from rhythmflow.model.oobleck import SMALL, random_decoder, save_scripted
from rhythmflow.pipeline import _calibrated_estimate
from rhythmflow.planner.core import Gpu, Machine, plan, runtime_for
from rhythmflow.planner.cost import VAE_FLOP_PER_FRAME, estimate_job
from rhythmflow.request import GenerationRequest
from tests.conftest import TINY_LRC, tiny_config

# recorded: the 2-core AMX Xeon (this module's machine, probe convolution 203 / 848 GFLOP/s)
# and an AVX2 CPU, where bfloat16 convolutions are emulated (the AVX2 EPYC measured bfloat16
# GEMMs 11x slower than float32)
AMX_VAE = {"float32": 203.0, "bfloat16": 848.0}
AVX2_VAE = {"float32": 120.0, "bfloat16": 11.0}
AMX = Machine(cpu="Intel(R) Xeon(R) Processor", cores=2, memory_available=64 << 30,
              gflops={"cpu-float32": 272.0, "cpu-bfloat16": 684.0}, cpu_dtype="bfloat16",
              cpu_dtype_reason="bfloat16: 2.8x faster than float32 on this CPU (AMX)",
              vae_gflops=AMX_VAE)
AVX2 = Machine(cpu="AMD EPYC", cores=2, memory_available=64 << 30,
               gflops={"cpu-float32": 120.0}, vae_gflops=AVX2_VAE)


def test_amx_decodes_in_bfloat16_when_the_dit_runs_low_precision_and_says_why():
    dtype, why = choose_vae_dtype("cpu", "bfloat16", AMX_VAE)
    assert dtype == "bfloat16"
    assert "4.2x faster than float32 on this CPU" in why and "accurate on the loaded" in why


@pytest.mark.parametrize(("device", "dit", "rates", "expected", "text"), [
    ("cpu", "bfloat16", AVX2_VAE, "float32", "measured 0.09x float32"),
    ("cpu", "bfloat16", {"float32": 200.0, "bfloat16": 220.0}, "float32", "1.10x"),  # noise
    ("cpu", "float32", AMX_VAE, "float32", "the DiT runs float32"),
    ("cpu", "bfloat16", {}, "float32", "not measured"),
    ("cuda", "bfloat16", AMX_VAE, "float32", "TorchScript decoder on cuda"),
])
def test_float32_wherever_bfloat16_is_not_measured_faster_or_not_accepted(device, dit, rates,
                                                                         expected, text):
    dtype, why = choose_vae_dtype(device, dit, rates)
    assert dtype == expected and text in why


def test_requests_are_kept_and_bfloat16_is_refused_off_the_cpu():
    assert choose_vae_dtype("cpu", "float32", AVX2_VAE, "bfloat16")[0] == "bfloat16"
    assert choose_vae_dtype("cpu", "bfloat16", AMX_VAE, "float32") == (
        "float32", "VAE decode float32: requested")
    with pytest.raises(ValueError, match="runs on cuda"):
        choose_vae_dtype("cuda", "bfloat16", AMX_VAE, "bfloat16")


def test_runtime_carries_the_choice_and_its_reason():
    rt = runtime_for(AMX)
    assert (rt.dtype, rt.vae_dtype) == ("bfloat16", "bfloat16")
    assert any(r.startswith("VAE decode: bfloat16 residual convolutions") for r in rt.reasons)
    assert "vae_dtype=bfloat16" in rt.describe()
    assert runtime_for(AMX, dtype="float32").vae_dtype == "float32"
    assert runtime_for(AMX, vae_dtype="fp32").vae_dtype == "float32"
    assert runtime_for(AVX2).vae_dtype == "float32"
    gpu = dataclasses.replace(AMX, gpus=(Gpu("Fake GPU", 8 << 30, True),))
    assert runtime_for(gpu).vae_dtype == "float32"
    for bad, message in ((dict(vae_dtype="int8"), "unknown value 'int8'"),
                         (dict(device="cuda", vae_dtype="bfloat16"), "runs on cuda")):
        with pytest.raises(UsageError, match=message) as info:
            runtime_for(gpu, **bad)
        assert info.value.field == "vae_dtype"


def test_request_field_is_checked_and_round_trips():
    r = GenerationRequest(lrc=TINY_LRC, vae_dtype="bf16")
    assert GenerationRequest.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    with pytest.raises(UsageError) as info:
        GenerationRequest(lrc=TINY_LRC, vae_dtype="float16")
    assert info.value.field == "vae_dtype"


def test_decode_estimate_uses_the_measured_convolution_rates():
    # 2048 frames decode as 9 fixed windows of 256 = 2304 frames
    flop = 2304 * VAE_FLOP_PER_FRAME
    f32 = flop / (AMX_VAE["float32"] * DECODER_EFFICIENCY * 1e9)
    b16 = f32 * (1 - RESIDUAL_TIME_SHARE + RESIDUAL_TIME_SHARE * 203.0 / 848.0)
    assert decode_seconds(flop, "float32", AMX_VAE) == pytest.approx(f32)
    assert decode_seconds(flop, "bfloat16", AMX_VAE) == pytest.approx(b16)
    assert decode_seconds(flop, "bfloat16", {}) is None
    cfg = tiny_config()
    e = estimate_job(cfg, 2048, steps=8, evals_per_step=1, gflops=684.0, vae_gflops=AMX_VAE,
                     vae_dtype="bfloat16")
    assert e.decode == pytest.approx(b16)
    p32 = plan(GenerationRequest(lrc=TINY_LRC, style_prompt="test style", duration=95, vae_dtype="float32"), AMX,
               check_files=False)
    p16 = plan(GenerationRequest(lrc=TINY_LRC, style_prompt="test style", duration=95), AMX, check_files=False)
    assert (p32.runtime.vae_dtype, p16.runtime.vae_dtype) == ("float32", "bfloat16")
    assert p16.to_dict()["vae_dtype"] == "bfloat16"
    # a low-precision decode changes the bytes: only such workers resume such jobs
    assert (p32.runtime_class, p16.runtime_class) == ("cpu-bfloat16", "cpu-bfloat16-vae-bfloat16")
    # the plan names the class as the worker that runs it does (int8 layers included)
    q8 = plan(GenerationRequest(lrc=TINY_LRC, style_prompt="test style", duration=95, quantize="int8"), AMX,
              check_files=False)
    assert q8.runtime_class == "cpu-float32-int8"
    assert p32.estimate.decode == pytest.approx(f32) and p16.estimate.decode == pytest.approx(b16)


def test_the_probe_convolution_is_timed_in_both_dtypes():
    before = torch.get_num_threads()
    rates = measure_vae_convs(rounds=1)
    assert set(rates) == {"float32", "bfloat16"} and all(g > 0 for g in rates.values())
    assert torch.get_num_threads() == before


def test_an_emulated_bfloat16_is_scaled_from_its_scout_not_run_at_full_size(monkeypatch):
    """On a CPU without bf16 units the bfloat16 convolution is many times slower: the probe
    times it on the short scout only (so it stays short there) and reports the scout's rate.
    A fake clock advances by a per-dtype cost per time step of each call."""
    import rhythmflow.model.oobleck_fast as of
    from rhythmflow.machine import vae_probe as pv
    now, calls = [0.0], []
    cost = {torch.float32: 1e-5, torch.bfloat16: 3e-4}  # seconds per step: bf16 30x slower
    real = of.Conv.forward

    def timed_forward(self, x):
        calls.append((self.dtype, x.shape[-1]))
        now[0] += cost[self.dtype] * x.shape[-1]
        return real(self, x)

    monkeypatch.setattr(of.Conv, "forward", timed_forward)
    rates = pv.measure_vae_convs(rounds=2, clock=lambda: now[0])
    flop_per_step = pv.CONV_FLOP / pv.CONV_STEPS
    assert rates == {"float32": pytest.approx(flop_per_step / 1e-5 / 1e9, abs=0.06),
                     "bfloat16": pytest.approx(flop_per_step / 3e-4 / 1e9, abs=0.06)}
    assert (torch.bfloat16, pv.CONV_STEPS) not in calls  # never at full size
    assert calls.count((torch.float32, pv.CONV_STEPS)) == 3  # kernel set-up + 2 rounds
    assert choose_vae_dtype("cpu", "bfloat16", rates)[0] == "float32"


@pytest.mark.parametrize(("layout", "share_rows"), [("batched", [2]), ("split", [1])])
def test_the_calibrated_estimate_times_the_forwards_the_run_makes(layout, share_rows):
    calls = []

    def calibrate(model, frames, *, rows):
        calls.append(rows)
        return {1: 1.0, 2: 1.5}[rows]

    r = GenerationRequest(lrc=TINY_LRC, style_prompt="test style", duration=95, steps=4, batch=2)
    p = dataclasses.replace(plan(r, AMX, check_files=False), guidance_layout=layout)
    gen = type("Gen", (), {"model": None})()
    stages = []
    seconds = _calibrated_estimate(p, gen, lambda *a: stages.append(a), calibrate)
    assert calls == share_rows
    per_item = 1.5 if layout == "batched" else 2.0  # one forward of 2 rows, or two of 1 row
    assert seconds == pytest.approx(4 * 2 * per_item)
    assert f"{2 * per_item:.3g} s" in stages[0][1]
    calls.clear()  # half the steps outside the guidance interval run one row
    half = dataclasses.replace(p, request=dataclasses.replace(r, guidance_interval=(0.0, 0.25)))
    seconds = _calibrated_estimate(half, gen, lambda *a: None, calibrate)
    assert seconds == pytest.approx(4 * 2 * (0.5 * per_item + 0.5 * 1.0))


def test_generate_decodes_a_real_oobleck_file_in_the_requested_dtype(tiny_files, tmp_path):
    """The CLI end to end on a small Oobleck TorchScript VAE: ``--vae-dtype bfloat16`` reaches
    the decoder (its probe-window error is recorded) and the plan and sidecar say so."""
    vae = save_scripted(random_decoder(SMALL, seed=3), tmp_path / "oobleck.pt")
    cfg = tiny_config()
    assert cfg.max_frames == 2048 and SMALL.latent_dim == 64
    outs = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.wav"
        assert main(["generate", "--lrc", str(tiny_files["lrc"]), "--style-embedding",
                     str(tiny_files["style"]), "--checkpoint", str(tiny_files["ckpt"]), "--vae",
                     str(vae), "--steps", "2", "--seed", "3", "--skip-estimate",
                     "--vae-dtype", dtype, "--progress", "none", "-o", str(out)]) == 0
        outs[dtype] = json.loads(out.with_suffix(".json").read_text())
    f32, b16 = outs["float32"], outs["bfloat16"]
    assert f32["plan"]["vae_dtype"] == "float32" and b16["plan"]["vae_dtype"] == "bfloat16"
    assert f32["vae_decode"]["decoder"] == "eager-oobleck (float32)"
    assert b16["vae_decode"]["decoder"].startswith(
        "eager-oobleck (bfloat16 residual convolutions, ")
    assert "% audio error on a probe window" in b16["vae_decode"]["decoder"]
