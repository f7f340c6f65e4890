"""Dynamic int8 quantization of the DiT's transformer projections."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rhythmflow.errors import UsageError
from rhythmflow.machine.host import cpu_facts
from rhythmflow.model import expected_shapes, load_checkpoint
from rhythmflow.model.inputs import model_inputs
from rhythmflow.model.quantize import Int8DynamicLinear, available, default_kernel, quantize_int8
from rhythmflow.model.smoothquant import calibrate, smooth_dit, smooth_scales
from rhythmflow.testing import TINY, random_dit, save_checkpoint

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


@pytest.mark.parametrize(("fuse", "per_block"), [(False, 7), (True, 4)])
def test_quantize_replaces_only_transformer_linears(fuse, per_block):
    model = quantize_int8(random_dit(TINY), fuse=fuse)
    blocks = list(model.transformer_blocks.modules())
    assert not any(type(m) is nn.Linear for m in blocks)
    assert sum(isinstance(m, Int8DynamicLinear) for m in blocks) == per_block * TINY.depth
    assert isinstance(model.input_embed.proj, nn.Linear)
    assert isinstance(model.proj_out, nn.Linear)


@pytest.mark.parametrize("kernel", ["fbgemm", "onednn"])
def test_fused_equals_separate_int8_layers(kernel):
    """One int8 product for q/k/v (and gate/up) quantizes the shared input with the same
    per-tensor scale as three separate layers, and the weights per output channel: the same
    numbers, so the fused modules are the model's maths (blocks.SelfAttention / MLP)."""
    if kernel not in torch.backends.quantized.supported_engines:
        pytest.skip(f"no {kernel} engine")
    fused = velocity(quantize_int8(random_dit(TINY, seed=10), kernel=kernel, fuse=True))
    separate = velocity(quantize_int8(random_dit(TINY, seed=10), kernel=kernel, fuse=False))
    assert torch.allclose(fused, separate, rtol=1e-5, atol=1e-6)
    assert rel_rms(fused, velocity(random_dit(TINY, seed=10))) > 1e-4  # really quantized


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


# ----------------------------------------------------------------- kernels (fbgemm, oneDNN/AMX)

onednn_only = pytest.mark.skipif("onednn" not in torch.backends.quantized.supported_engines,
                                 reason="no oneDNN quantized engine in this torch build")


def test_default_kernel_follows_the_cpu_flags():
    assert default_kernel(("avx2", "fma")) == "fbgemm"
    assert default_kernel(("avx512f", "avx512_vnni")) == "fbgemm"  # not measured: unchanged
    want = "onednn" if "onednn" in torch.backends.quantized.supported_engines else "fbgemm"
    assert default_kernel(("avx512f", "amx_tile", "amx_int8")) == want


@onednn_only
def test_onednn_kernel_is_the_8_bit_reference_computation():
    """oneDNN's int8 linear = per-tensor 8-bit affine activations × per-channel int8 weights,
    computed here by hand from torch's quantize/dequantize (exact up to float32 accumulation)."""
    torch.manual_seed(1)
    lin = nn.Linear(192, 80, bias=True)
    x = torch.randn(2, 33, 192) * 3 + 0.5
    q = Int8DynamicLinear.from_linear(lin, kernel="onednn")
    assert not q.reduce_range and q.kernel == "onednn"
    w = lin.weight.detach()
    scale = (w.abs().amax(1) / 127).double()
    w_hat = torch.quantize_per_channel(w, scale, torch.zeros(80, dtype=torch.int64), 0,
                                       torch.qint8).dequantize()
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    s = (hi - lo) / 255
    zp = int(round(-lo / s))
    x_hat = torch.quantize_per_tensor(x, s, zp, torch.quint8).dequantize()
    ref = x_hat @ w_hat.T + lin.bias.detach()
    out = q(x)
    assert rel_rms(out, ref) < 1e-4
    assert rel_rms(out, lin(x)) > 1e-3  # it really is quantized


@onednn_only
def test_onednn_more_accurate_than_7_bit_fbgemm_and_engine_independent():
    torch.manual_seed(2)
    lin = nn.Linear(512, 256, bias=False)
    x = torch.randn(64, 512)
    ref = lin(x)
    before = torch.backends.quantized.engine
    fb = Int8DynamicLinear.from_linear(lin, kernel="fbgemm")
    od = Int8DynamicLinear.from_linear(lin, kernel="onednn")
    assert torch.backends.quantized.engine == before  # the prepack restored the engine
    e_fb, e_od = rel_rms(fb(x), ref), rel_rms(od(x), ref)
    assert 0 < e_od < 0.8 * e_fb < 2e-2
    try:  # the packed weight carries its kernel: the global engine at call time is irrelevant
        torch.backends.quantized.engine = "fbgemm"
        assert torch.equal(od(x), Int8DynamicLinear.from_linear(lin, kernel="onednn")(x))
    finally:
        torch.backends.quantized.engine = before


def test_unknown_kernel_is_refused():
    with pytest.raises(UsageError, match="kernel"):
        quantize_int8(random_dit(TINY), kernel="int4")
    with pytest.raises(ValueError, match="kernel"):
        Int8DynamicLinear.from_linear(nn.Linear(8, 8), kernel="int4")


def test_per_tensor_weights_are_less_accurate_than_per_channel():
    torch.manual_seed(3)
    lin = nn.Linear(256, 64, bias=False)
    with torch.no_grad():  # output channels of very different magnitude
        lin.weight.mul_(torch.logspace(-2, 0, 64)[:, None])
    x = torch.randn(32, 256)
    small = slice(0, 16)  # the smallest output channels: one scale per tensor is coarse there
    ref = lin(x)[:, small]
    per_channel = rel_rms(Int8DynamicLinear.from_linear(lin, kernel="fbgemm")(x)[:, small], ref)
    per_tensor = rel_rms(Int8DynamicLinear.from_linear(lin, kernel="fbgemm",
                                                       per_channel=False)(x)[:, small], ref)
    assert per_channel < 0.5 * per_tensor


# ----------------------------------------------------------------- SmoothQuant


def test_smooth_scales_formula():
    act = torch.tensor([4.0, 1.0, 0.0])
    w = torch.tensor([[1.0, -4.0, 2.0], [0.5, 1.0, -1.0]])  # column maxima 1, 4, 2
    s = smooth_scales(act, [w], 0.5)
    assert torch.allclose(s, torch.tensor([2.0, 0.5, 1.0]))  # sqrt(4/1), sqrt(1/4), unseen: 1
    s = smooth_scales(act, [w, torch.tensor([[8.0, 0.0, 0.0]])], 1.0)  # joint maxima, alpha 1
    assert torch.allclose(s[:2], torch.tensor([4.0, 1.0]))


def test_smoothing_keeps_the_float_model_and_moves_range():
    model = random_dit(TINY, seed=5)
    ref = velocity(model)
    norm_before = model.transformer_blocks[0].input_layernorm.weight.clone()
    smooth_dit(model, 0.5)
    assert not torch.equal(model.transformer_blocks[0].input_layernorm.weight, norm_before)
    assert rel_rms(velocity(model), ref) < 1e-5


def test_default_quantization_smooths_with_the_cpu_kernel():
    model = random_dit(TINY, seed=9)
    norm = model.transformer_blocks[1].post_attention_layernorm.weight.clone()
    kernel = default_kernel(cpu_facts()[1])
    quantize_int8(model, kernel=kernel)
    assert not torch.equal(model.transformer_blocks[1].post_attention_layernorm.weight, norm)
    assert {m.kernel for m in model.modules()
            if isinstance(m, Int8DynamicLinear)} == {kernel}


def test_smoothing_refuses_alpha_outside_0_1():
    with pytest.raises(ValueError, match="alpha"):
        smooth_dit(random_dit(TINY), 1.5)


def _outlier_dit(seed: int):
    """A tiny DiT whose attention and MLP inputs have a few outlier channels (x50) that the
    weights reading them compensate (as in trained transformers): the float model is the random
    one, up to rounding, but a per-tensor activation scale must cover the outliers."""
    model = random_dit(TINY, seed=seed)
    with torch.no_grad():
        for blk in model.transformer_blocks:
            at, mlp = blk.self_attn, blk.mlp
            for norm, readers in ((blk.input_layernorm, (at.q_proj, at.k_proj, at.v_proj)),
                                  (blk.post_attention_layernorm, (mlp.gate_proj, mlp.up_proj))):
                norm.weight[:3] *= 50
                for lin in readers:
                    lin.weight[:, :3] /= 50
    return model


def test_calibration_statistics_see_the_outlier_channels():
    model = _outlier_dit(11)
    hi = calibrate(model, statistic="max")
    rms = calibrate(model, statistic="rms")
    assert hi.keys() == rms.keys() and len(hi) == 7 * TINY.depth
    for name in hi:
        assert (rms[name] > 0).all() and (rms[name] <= hi[name] * (1 + 1e-6)).all()
    for name in ("0.self_attn.q_proj", "1.mlp.gate_proj"):  # the norms' outputs
        assert (rms[name][:3] > 10 * rms[name][3:].median()).all()
    with pytest.raises(ValueError, match="statistic"):
        calibrate(model, statistic="mean")


@pytest.mark.parametrize(("statistic", "alpha"), [("max", 0.5), ("rms", 0.25)])
def test_smoothquant_lowers_the_error_of_outlier_channels(statistic, alpha):
    ref = velocity(_outlier_dit(6))
    assert rel_rms(ref, velocity(random_dit(TINY, seed=6))) < 1e-5
    plain = rel_rms(velocity(quantize_int8(_outlier_dit(6), smooth_alpha=None)), ref)
    smooth = rel_rms(velocity(quantize_int8(_outlier_dit(6), smooth_alpha=alpha,
                                            smooth_statistic=statistic)), ref)
    assert smooth < 0.7 * plain


@pytest.mark.parametrize("kernel", ["fbgemm", "onednn"])
def test_strict_load_then_smooth_quantize(tmp_path, kernel):
    if kernel not in torch.backends.quantized.supported_engines:
        pytest.skip(f"no {kernel} engine")
    src = random_dit(TINY, seed=8)
    path = save_checkpoint(src, tmp_path / "m.safetensors", form="safetensors")
    model = load_checkpoint(path)
    ref = velocity(model)
    quantize_int8(model, kernel=kernel, smooth_alpha=0.5)
    kinds = {m.kernel for m in model.modules() if isinstance(m, Int8DynamicLinear)}
    assert kinds == {kernel}
    assert 0 < rel_rms(velocity(model), ref) < 5e-2
    assert torch.equal(velocity(load_checkpoint(path)), ref)  # the file still loads strictly
