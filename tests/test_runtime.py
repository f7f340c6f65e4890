"""Device / dtype / threads policy. CUDA/MPS branches are exercised by patching torch's probes
(no GPU here); real CUDA runs are covered by the GPU check in docs/PERFORMANCE.md when lent."""

from __future__ import annotations

import pytest
import torch

from rhythmflow.errors import UsageError
from rhythmflow.machine.host import physical_cores
from rhythmflow.machine.process import apply_threads
from rhythmflow.planner.core import Gpu, Machine, resolve_runtime, runtime_for


def test_cpu_defaults_float32_physical_cores_8_steps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    rt = resolve_runtime()
    assert (rt.device, rt.dtype, rt.default_steps, rt.vae_device) == ("cpu", "float32", 8, "cpu")
    assert rt.threads == physical_cores() >= 1
    assert rt.torch_dtype is torch.float32
    assert any(r.startswith("dtype float32") for r in rt.reasons)


GPU = 8 * 1024**3


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bfloat16"), (False, "float16")])
def test_cuda_prefers_bf16_when_supported(bf16, expected):
    rt = runtime_for(Machine(gpus=(Gpu("Fake GPU", GPU, bf16),)))
    assert (rt.device, rt.dtype, rt.default_steps) == ("cuda", expected, 32)
    assert "Fake GPU" in rt.reasons[0]


def test_mps_decodes_vae_on_cpu():
    rt = runtime_for(Machine(mps=True))
    assert (rt.device, rt.vae_device, rt.dtype) == ("mps", "cpu", "float32")


def test_measured_cpu_dtype_is_the_automatic_choice():
    m = Machine(cores=2, cpu_dtype="bfloat16",
                cpu_dtype_reason="bfloat16: 3.4x faster than float32")
    rt = runtime_for(m)
    assert (rt.device, rt.dtype, rt.threads) == ("cpu", "bfloat16", 2)
    assert "dtype bfloat16: 3.4x faster than float32" in rt.reasons


def test_overrides_and_fp16_on_cpu_warns():
    rt = resolve_runtime("cpu", "fp16", threads=1)
    assert (rt.dtype, rt.threads) == ("float16", 1)
    assert any("float16 is emulated" in r for r in rt.reasons)


@pytest.mark.parametrize(("kw", "message"), [
    ({"device": "tpu"}, "device: unknown device"), ({"dtype": "float8"}, "dtype: unknown value"),
    ({"threads": 0}, "threads: must be >= 1")])
def test_bad_settings(kw, message):
    with pytest.raises(UsageError, match=message) as info:
        resolve_runtime(**kw)
    assert info.value.field == next(iter(kw))


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_device_requested_that_the_machine_lacks(device):
    machine = Machine(gpus=(Gpu("Fake GPU", GPU, True),)) if device == "cuda:1" else Machine()
    with pytest.raises(UsageError, match="not available|no such CUDA device"):
        runtime_for(machine, device)


def test_apply_threads():
    before = torch.get_num_threads()
    try:
        apply_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_runtime_and_model():
    from rhythmflow.testing import random_dit

    rt = resolve_runtime()
    model = random_dit(dtype=rt.torch_dtype, device=rt.device)
    x = torch.randn(1, 16, 64, device=rt.device)
    c = model.prepare(cond=torch.zeros_like(x), text=torch.zeros(1, 16, dtype=torch.long,
                      device=rt.device), style=torch.randn(1, 512, device=rt.device),
                      start_time=torch.zeros(1, device=rt.device))
    assert torch.isfinite(model(x, torch.tensor(0.5, device=rt.device), c)).all()
