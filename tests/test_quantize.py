"""Dynamic int8 quantization of the DiT's transformer projections."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rhythmflow.errors import UsageError
from rhythmflow.model import expected_shapes, load_checkpoint
from rhythmflow.model.quantize import Int8DynamicLinear, available, quantize_int8
from rhythmflow.model.testing import TINY, random_dit, save_checkpoint
from rhythmflow.perf import model_inputs

pytestmark = pytest.mark.skipif(not available(), reason="no x86/fbgemm int8 engine in this build")


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt()).item()


def velocity(model, frames: int = 32, batch: int = 2) -> torch.Tensor:
    a = model_inputs(model, frames, batch, seed=7)
    x, t = a.pop("x"), a.pop("t")
    with torch.inference_mode():
        return model(x, t, model.prepare(**a))


@pytest.mark.parametrize("bias", [True, False])
def test_int8_linear_close_to_float(bias):
    torch.manual_seed(0)
    lin = nn.Linear(256, 96, bias=bias)
    q = Int8DynamicLinear.from_linear(lin)
    x = torch.randn(3, 17, 256)
    ref = lin(x)
    out = q(x)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert 0 < rel_rms(out, ref) < 2e-2


def test_quantize_replaces_only_transformer_linears():
    model = quantize_int8(random_dit(TINY))
    blocks = list(model.transformer_blocks.modules())
    assert not any(type(m) is nn.Linear for m in blocks)
    assert sum(isinstance(m, Int8DynamicLinear) for m in blocks) == 7 * TINY.depth
    assert isinstance(model.input_embed.proj, nn.Linear)
    assert isinstance(model.proj_out, nn.Linear)


def test_quantized_velocity_close_to_float32():
    ref = velocity(random_dit(TINY, seed=3))
    q = velocity(quantize_int8(random_dit(TINY, seed=3)))
    err = rel_rms(q, ref)
    assert 0 < err < 5e-2


def test_strict_load_then_quantize(tmp_path):
    src = random_dit(TINY, seed=4)
    path = save_checkpoint(src, tmp_path / "m.pt", form="pt", dtype=torch.float16)
    model = load_checkpoint(path)  # strict: raises on any key mismatch
    sd = model.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected_shapes(model.config)
    ref = velocity(model)
    quantize_int8(model)
    assert rel_rms(velocity(model), ref) < 5e-2
    again = load_checkpoint(path)  # the file is untouched and still loads strictly
    assert torch.equal(velocity(again), ref)


def test_refuses_non_float32_models():
    with pytest.raises(UsageError, match="float32"):
        quantize_int8(random_dit(TINY, dtype=torch.bfloat16))
