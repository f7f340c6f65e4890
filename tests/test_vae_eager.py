"""The eager Oobleck decoder: weights read strictly from real TorchScript files, same audio as the
file's own ``decode_export`` up to float rounding, TorchScript kept when the file differs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rhythmflow.errors import UsageError
from rhythmflow.model.oobleck import SMALL, OobleckDecoder, random_decoder, save_scripted
from rhythmflow.model.oobleck_fast import (
    VAE_LOW_PRECISION_LIMIT,
    FastOobleckDecoder,
    eager_decoder,
)
from rhythmflow.model.oobleck_load import find_decoder, fold_weight_norm
from rhythmflow.testing import build_tiny_vae
from rhythmflow.vae.codec import DECODE_GEOMETRY, chunk_windows, load_vae


class WNConv(nn.Module):
    """A weight-normed (``weight_g`` / ``weight_v``) convolution or transposed convolution, as
    Stable Audio's ``WNConv1d`` / ``WNConvTranspose1d`` (norm over all but dim 0)."""

    def __init__(self, conv: nn.Module, gen: torch.Generator) -> None:
        super().__init__()
        w = conv.weight.detach()
        self.transposed = isinstance(conv, nn.ConvTranspose1d)
        self.weight_v = nn.Parameter(w * (1 + 0.5 * torch.rand(w.shape, generator=gen)))
        self.weight_g = nn.Parameter(w.flatten(1).norm(dim=1).reshape(-1, 1, 1))
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
        self.stride, self.padding, self.dilation = conv.stride[0], conv.padding[0], conv.dilation[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch._weight_norm(self.weight_v, self.weight_g, 0)
        if self.transposed:
            return F.conv_transpose1d(x, w, self.bias, stride=self.stride, padding=self.padding)
        return F.conv1d(x, w, self.bias, padding=self.padding, dilation=self.dilation)


class Release(nn.Module):
    """The official file's shape: an encoder beside a ``decoder.``-prefixed, weight-normed
    Oobleck decoder; ``tanh`` adds a final tanh the eager decoder does not have."""

    def __init__(self, dec: OobleckDecoder, tanh: bool = False) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        for mod in list(dec.modules()):
            if isinstance(mod, nn.Sequential):
                for i, sub in enumerate(mod):
                    if isinstance(sub, (nn.Conv1d, nn.ConvTranspose1d)):
                        mod[i] = WNConv(sub, gen)
        self.decoder = dec
        self.encoder = nn.Conv1d(2, 128, 1)
        self.tanh = tanh

    @torch.jit.export
    def decode_export(self, z: torch.Tensor) -> torch.Tensor:
        y = self.decoder.layers(z)
        return torch.tanh(y) if self.tanh else y

    @torch.jit.export
    def encode_export(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder.encode_export(x)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    return save_scripted(random_decoder(SMALL, seed=3), tmp_path_factory.mktemp("e") / "v.pt")


def _release(folder: Path, tanh: bool = False) -> Path:
    path = folder / ("tanh.pt" if tanh else "release.pt")
    torch.jit.script(Release(random_decoder(SMALL, seed=4), tanh).eval()).save(str(path))
    return path


def _z(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 64, n, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max abs difference relative to the max abs value of ``b``."""
    return float((a - b).abs().max() / b.abs().max())


def test_find_decoder_reads_the_architecture_from_the_weights(small_file):
    found = find_decoder(dict(torch.jit.load(str(small_file)).named_parameters()))
    assert found.config == SMALL and found.prefix == ""
    # Snake parameters [1, C, 1] are kept as [C]; every decoder parameter is read
    assert found.tensors["layers.1.layers.0.alpha"].shape == (SMALL.c_mults[-1] * 4,)
    assert len(found.tensors) == 2 + 5 * (2 + 2 + 3 * 8) + 2 + 1  # conv, 5 blocks, Snake, conv


def test_find_decoder_is_strict(small_file):
    params = dict(torch.jit.load(str(small_file)).named_parameters())
    missing = {k: v for k, v in params.items() if k != "layers.3.layers.4.layers.2.beta"}
    assert "Snake beta at layers.3.layers.4.layers.2" in find_decoder(missing)
    extra = {**params, "layers.2.layers.7.weight": torch.zeros(3)}
    assert "does not use (layers.2.layers.7.weight" in find_decoder(extra)
    reshaped = {**params, "layers.2.layers.3.layers.3.weight": torch.zeros(8, 8, 3)}
    assert "k1 convolution" in find_decoder(reshaped)
    assert "no parameter named like" in find_decoder({"encoder.weight": torch.zeros(1)})


def test_eager_float32_equals_torchscript_up_to_rounding(small_file):
    module = torch.jit.load(str(small_file)).eval()
    fast = FastOobleckDecoder(find_decoder(dict(module.named_parameters())))
    z = _z(40)
    with torch.no_grad():
        ref = module.decode_export(z)
    got = fast(z)
    assert got.dtype == torch.float32 and got.shape == ref.shape == (1, 2, 40 * 2048)
    assert _close(got, ref) < 1e-5


def test_load_vae_decodes_with_the_eager_decoder_through_the_fixed_geometry(small_file):
    """The product path: 300 frames in the fixed 256/32 windows, eager vs the file's TorchScript."""
    eager = load_vae(small_file)
    script = load_vae(small_file, decoder="torchscript")
    assert eager.decoder_kind == "eager-oobleck (float32)"
    assert script.decoder_kind == "torchscript"
    assert eager.geometry() == script.geometry() == DECODE_GEOMETRY
    assert len(chunk_windows(300, *DECODE_GEOMETRY)) == 2
    z = _z(300, seed=2).repeat(2, 1, 1)
    a, b = eager.decode(z), script.decode(z)
    assert a.shape == b.shape == (2, 2, 300 * 2048)
    assert _close(a, b) < 1e-5
    assert torch.equal(a[0], a[1])  # items one at a time: same latent, same bytes


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decoding_only_the_kept_frames_is_slicing_the_whole_decode(small_file, dtype):
    """``keep=(a, b)``: the last blocks run on the kept frames plus a halo only; the audio is
    the whole window's, sliced, up to rounding (inner, first and last window cases): float32
    rounding, or a bfloat16 rounding flip where the kernels' blocking changes with the length
    (one bfloat16 step is 0.4 % of a value; the bfloat16 decode's own error is ~0.4 % RMS)."""
    found = find_decoder(dict(torch.jit.load(str(small_file)).named_parameters()))
    dec = FastOobleckDecoder(found, residual_dtype=dtype).eval()
    z = _z(64, seed=7)
    whole = dec(z)
    for a, b in ((16, 48), (0, 48), (16, 64), (0, 64), (30, 31)):
        part = dec(z, keep=(a, b))
        assert part.shape == (1, 2, (b - a) * 2048)
        assert _close(part, whole[..., a * 2048:b * 2048]) < (
            1e-5 if dtype == torch.float32 else 2e-3)


def test_fold_weight_norm_is_torchs_weight_norm():
    gen = torch.Generator().manual_seed(0)
    for shape in [(6, 4, 7), (8, 3, 16), (2, 5, 1)]:
        v = torch.randn(shape, generator=gen)
        g = torch.rand(shape[0], 1, 1, generator=gen) + 0.5
        torch.testing.assert_close(fold_weight_norm(g, v), torch._weight_norm(v, g, 0),
                                   rtol=1e-6, atol=0)
    v = torch.randn(4, 6, 3, generator=gen)  # dim=1 norm: g is [1, out, 1]
    g = torch.rand(1, 6, 1, generator=gen)
    torch.testing.assert_close(fold_weight_norm(g, v), torch._weight_norm(v, g, 1),
                               rtol=1e-6, atol=0)


def test_weight_normed_prefixed_release_layout_loads_and_matches(tmp_path):
    path = _release(tmp_path)
    module = torch.jit.load(str(path)).eval()
    found = find_decoder(dict(module.named_parameters()))
    assert found.prefix == "decoder." and found.config == SMALL
    assert "layers.1.layers.1.weight" in found.tensors  # folded from weight_g / weight_v
    vae, script = load_vae(path), load_vae(path, decoder="torchscript")
    assert vae.decoder_kind.startswith("eager-oobleck")
    z = _z(50, seed=3)
    assert _close(vae.decode(z), script.decode(z)) < 1e-5


def test_a_file_that_decodes_differently_keeps_torchscript(tmp_path, caplog):
    """Same parameter names and shapes, another computation (a final tanh): the probe decode
    tells them apart and the file's own decode is used, with the reason logged."""
    path = _release(tmp_path, tanh=True)
    assert not isinstance(find_decoder(dict(torch.jit.load(str(path)).named_parameters())), str)
    with caplog.at_level(logging.INFO):
        vae = load_vae(path)
    assert vae.decoder_kind == "torchscript"
    assert "differs from the file's decode_export" in caplog.text
    z = _z(10, seed=4)
    with torch.no_grad():
        assert torch.equal(vae.decode(z), vae.module.decode_export(z))


def test_a_non_oobleck_vae_keeps_torchscript(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        vae = load_vae(build_tiny_vae(tmp_path / "tiny.pt"))
    assert vae.decoder_kind == "torchscript"
    assert "not Oobleck" in caplog.text


def test_bfloat16_residual_convolutions_are_opt_in_and_close(small_file):
    f32 = load_vae(small_file)
    b16 = load_vae(small_file, residual_dtype=torch.bfloat16)
    err = b16.decoder.probe_error  # measured on these weights at load
    assert b16.decoder.residual_dtype == torch.bfloat16 and 0 < err <= VAE_LOW_PRECISION_LIMIT
    assert (b16.residual_dtype, f32.residual_dtype) == ("bfloat16", "float32")
    assert b16.decoder_kind == (f"eager-oobleck (bfloat16 residual convolutions, "
                                f"{100 * err:.2g} % audio error on a probe window)")
    module = torch.jit.load(str(small_file)).eval()
    assert eager_decoder(module).residual_dtype == torch.float32  # the default is exact
    z = _z(30, seed=5)
    a, b = f32.decode(z), b16.decode(z)
    rel = float((b - a).pow(2).mean().sqrt() / a.pow(2).mean().sqrt())
    assert b.dtype == torch.float32 and 0 < rel < 2e-2


def test_bfloat16_is_dropped_when_inaccurate_on_the_loaded_weights(small_file, caplog):
    """The guard measures the error on the weights it loads: with a limit under these weights'
    error the float32 decoder is kept, and the warning names the measured error."""
    module = torch.jit.load(str(small_file)).eval()
    err = eager_decoder(module, residual_dtype=torch.bfloat16).probe_error
    with caplog.at_level(logging.WARNING):
        kept = eager_decoder(module, residual_dtype=torch.bfloat16, limit=err / 2)
    assert kept.residual_dtype == torch.float32 and kept.probe_error == err
    assert kept.describe() == "float32"
    assert f"changes the audio of a probe window by {100 * err:.2g} %" in caplog.text


def test_unknown_decoder_choice_is_a_usage_error(small_file):
    with pytest.raises(UsageError, match="'auto' or 'torchscript'"):
        load_vae(small_file, decoder="fast")


@pytest.mark.slow
def test_benchmark_dry_run_prints_the_comparison_table(tmp_path):
    """benchmarks/vae_decode.py on the width-4 decoder: every variant runs, the table and the
    JSON carry speed-ups and errors against the TorchScript decode."""
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "vae.json"
    proc = subprocess.run(
        [sys.executable, "vae_decode.py", "--small", "--windows", "40", "--frames", "100",
         "--rounds", "1", "--variants", "ts-float32", "eager-float32", "eager-bf16-residual",
         "--json", str(out)],
        cwd=repo / "benchmarks", capture_output=True, text=True, timeout=300, check=False,
        env=dict(os.environ, PYTHONPATH=str(repo / "src")))
    assert proc.returncode == 0, proc.stderr
    assert "CPU: " in proc.stdout and "| x ts-float32 |" in proc.stdout
    rows = json.loads(out.read_text())["vae"]["rows"]
    assert [r["variant"] for r in rows] == ["ts-float32", "eager-float32", "eager-bf16-residual"]
    assert rows[0]["speedup"] == 1.0 and rows[0]["max_abs_diff"] == 0.0
    assert rows[1]["max_abs_diff"] <= 1e-5 * rows[1]["audio_max_abs"]
    assert 0 < rows[2]["rel_rms_error"] < 2e-2
    wins = len(chunk_windows(100, 40, DECODE_GEOMETRY.overlap))
    assert wins > 1 and all(r["windows"] == wins and r["decode_seconds"] > 0 for r in rows)
