"""Device / dtype / threads policy. CUDA/MPS branches are exercised by patching torch's probes
(no GPU here); real CUDA runs are covered by the GPU check in docs/PERFORMANCE.md when lent."""

from __future__ import annotations

import logging

import pytest
import torch

from rhythmflow.errors import UsageError
from rhythmflow.runtime import apply_threads, physical_cores, resolve_runtime


def test_cpu_defaults_float32_physical_cores_8_steps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    rt = resolve_runtime()
    assert (rt.device, rt.dtype, rt.default_steps, rt.vae_device) == ("cpu", "float32", 8, "cpu")
    assert rt.threads == physical_cores() >= 1
    assert rt.torch_dtype is torch.float32
    assert any("float16 is emulated" in r for r in rt.reasons)


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bfloat16"), (False, "float16")])
def test_cuda_prefers_bf16_when_supported(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    rt = resolve_runtime()
    assert (rt.device, rt.dtype, rt.default_steps) == ("cuda", expected, 32)


def test_mps_decodes_vae_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    rt = resolve_runtime()
    assert (rt.device, rt.vae_device, rt.dtype) == ("mps", "cpu", "float32")


def test_overrides_and_fp16_on_cpu_warns(caplog):
    with caplog.at_level(logging.WARNING):
        rt = resolve_runtime("cpu", "fp16", threads=1)
    assert (rt.dtype, rt.threads) == ("float16", 1)
    assert "40x slower" in caplog.text


@pytest.mark.parametrize(("kw", "message"), [
    ({"device": "tpu"}, "unknown device"), ({"dtype": "float8"}, "unknown dtype"),
    ({"threads": 0}, "--threads must be >= 1")])
def test_bad_settings(kw, message):
    with pytest.raises(UsageError, match=message):
        resolve_runtime(**kw)


def test_cuda_requested_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="CUDA is not available"):
        resolve_runtime("cuda")


def test_apply_threads():
    before = torch.get_num_threads()
    try:
        apply_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_runtime_and_model():
    from rhythmflow.model.testing import random_dit

    rt = resolve_runtime()
    model = random_dit(dtype=rt.torch_dtype, device=rt.device)
    x = torch.randn(1, 16, 64, device=rt.device)
    c = model.prepare(cond=torch.zeros_like(x), text=torch.zeros(1, 16, dtype=torch.long,
                      device=rt.device), style=torch.randn(1, 512, device=rt.device),
                      start_time=torch.zeros(1, device=rt.device))
    assert torch.isfinite(model(x, torch.tensor(0.5, device=rt.device), c)).all()
