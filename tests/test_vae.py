"""VAE wrapper on real TorchScript files built by rhythmflow.testing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rhythmflow.errors import (
    AssetError,
    CheckpointError,
    NumericalError,
    ResourceError,
    UsageError,
)
from rhythmflow.testing import DECODER_REACH, ENCODER_REACH, build_decode_only, build_tiny_vae
from rhythmflow.vae.codec import (
    DECODE_GEOMETRY,
    HOP,
    RECEPTIVE_MARGIN,
    DecodeGeometry,
    TorchScriptVAE,
    Window,
    chunk_windows,
    load_vae,
)


@pytest.fixture(scope="module")
def vae_file(tmp_path_factory) -> Path:
    return build_tiny_vae(tmp_path_factory.mktemp("vae") / "vae_model.pt")


def _vae(path: Path, **kw) -> TorchScriptVAE:
    return load_vae(path, **kw)


def _latents(n: int, b: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 64, n, generator=torch.Generator().manual_seed(seed))


def test_windows_follow_upstream_layout():
    # 300 frames, chunk 128, overlap 32: starts every 96 frames, then one aligned to the end
    wins = chunk_windows(300, 128, 32)
    assert [w.start for w in wins] == [0, 96, 172]
    assert all(w.stop - w.start == 128 for w in wins)
    assert wins[0] == Window(0, 128, 0, 112)
    assert wins[1] == Window(96, 224, 112, 208)
    assert wins[-1] == Window(172, 300, 188, 300)
    # an exact fit adds no extra window; short input is one window
    assert [w.start for w in chunk_windows(224, 128, 32)] == [0, 96]
    assert chunk_windows(50, 128, 32) == [Window(0, 50, 0, 50)]


@pytest.mark.parametrize(
    "n,chunk,overlap", [(300, 128, 32), (97, 32, 8), (1000, 64, 16), (65, 64, 16)]
)
def test_windows_cover_every_frame(n, chunk, overlap):
    covered = torch.zeros(n, dtype=torch.bool)
    for w in chunk_windows(n, chunk, overlap):
        assert 0 <= w.start <= w.keep_start < w.keep_stop <= w.stop <= n
        covered[w.keep_start : w.keep_stop] = True
    assert covered.all()


def test_bad_overlap_is_a_usage_error(vae_file):
    with pytest.raises(UsageError, match="overlap"):
        chunk_windows(300, 32, 32)
    with pytest.raises(UsageError, match="overlap"):
        TorchScriptVAE(load_vae(vae_file).module, chunk_size=16, overlap=20)


def test_decode_lengths_channels_and_dtype(vae_file):
    vae = _vae(vae_file, chunk_size=64, overlap=16)
    assert (vae.sample_rate, vae.hop, vae.latent_dim, vae.channels) == (44100, 2048, 64, 2)
    for n in (1, 10, 64, 65, 150):
        y = vae.decode(_latents(n, b=2))
        assert y.shape == (2, 2, n * HOP) and y.dtype == torch.float32


def test_chunked_decode_equals_whole_decode(vae_file):
    z = _latents(300, b=2)
    whole = _vae(vae_file, chunked=False).decode(z)
    for chunk, overlap in [(128, 32), (64, 16), (40, 2 * DECODER_REACH)]:
        chunked = _vae(vae_file, chunk_size=chunk, overlap=overlap).decode(z)
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


def test_without_overlap_seams_appear_only_at_chunk_edges(vae_file):
    z = _latents(200)
    whole = _vae(vae_file, chunked=False).decode(z)
    chunked = _vae(vae_file, chunk_size=50, overlap=0).decode(z)
    err = (chunked - whole).abs().amax(dim=(0, 1)).reshape(200, HOP).amax(dim=1)  # per frame
    edges = torch.zeros(200, dtype=torch.bool)
    for w in chunk_windows(200, 50, 0)[1:]:
        edges[w.start - DECODER_REACH : w.start + DECODER_REACH] = True
    assert err[edges].max() > 1e-3  # the test can tell a seam from a clean paste
    assert err[~edges].max() < 1e-5


def test_decode_reports_each_chunk(vae_file):
    calls = []
    _vae(vae_file, chunk_size=64, overlap=16).decode(
        _latents(200), on_chunk=lambda d, t: calls.append((d, t))
    )
    total = len(chunk_windows(200, 64, 16))
    assert calls == [(k, total) for k in range(1, total + 1)] and total > 1
    calls.clear()
    _vae(vae_file, chunk_size=64, overlap=16).decode(
        _latents(200, b=2), on_chunk=lambda d, t: calls.append((d, t))
    )
    assert calls == [(k, 2 * total) for k in range(1, 2 * total + 1)]  # item by item


def test_decode_rejects_bad_latents(vae_file):
    vae = _vae(vae_file)
    with pytest.raises(UsageError, match=r"transpose"):
        vae.decode(torch.zeros(1, 100, 64))
    bad = _latents(10)
    bad[0, 3, 4] = float("nan")
    with pytest.raises(NumericalError):
        vae.decode(bad)


def test_chunked_encode_equals_whole_encode_and_drops_partial_frame(vae_file):
    audio = torch.randn(2, 2, 230 * HOP + 777, generator=torch.Generator().manual_seed(3)) * 0.3
    whole = _vae(vae_file, chunked=False).encode(audio, sample=False)
    assert whole.shape == (2, 64, 230)
    for chunk, overlap in [(128, 32), (48, 2 * ENCODER_REACH + 2)]:
        chunked = _vae(vae_file, chunk_size=chunk, overlap=overlap).encode(audio, sample=False)
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


def test_encode_samples_the_posterior_reproducibly(vae_file):
    vae = _vae(vae_file, chunk_size=64, overlap=16)
    audio = torch.randn(1, 2, 100 * HOP, generator=torch.Generator().manual_seed(4)) * 0.3
    mean = vae.encode(audio, sample=False)
    a = vae.encode(audio, generator=torch.Generator().manual_seed(7))
    b = vae.encode(audio, generator=torch.Generator().manual_seed(7))
    c = vae.encode(audio, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == mean.shape == (1, 64, 100)
    # the noise is scaled by softplus(scale) + 1e-4 >= 1e-4, so samples differ from the mean
    assert (a - mean).abs().mean() > 1e-4


def test_encode_rejects_bad_audio(vae_file):
    vae = _vae(vae_file)
    with pytest.raises(UsageError, match="at least 2048"):
        vae.encode(torch.zeros(1, 2, 1000))
    with pytest.raises(UsageError, match=r"\[b, 2, samples\]"):
        vae.encode(torch.zeros(1, 1, 4096))


def test_encode_then_decode_keeps_length(vae_file):
    vae = _vae(vae_file, chunk_size=64, overlap=16)
    audio = torch.randn(1, 2, 70 * HOP) * 0.1
    assert vae.decode(vae.encode(audio)).shape == audio.shape


def test_default_geometry_is_fixed_and_covers_the_receptive_field(vae_file):
    vae = _vae(vae_file)
    assert vae.geometry() == DECODE_GEOMETRY == DecodeGeometry(256, 32)
    assert DECODE_GEOMETRY.overlap // 2 >= RECEPTIVE_MARGIN > 9  # measured reach: 9 frames
    assert vae.geometry().to_dict() == {"chunk": 256, "overlap": 32, "per_item": True}
    assert _vae(vae_file, chunked=False).geometry() == DecodeGeometry(0, 0)


def test_decode_does_not_depend_on_free_memory(vae_file):
    """The old chunk size followed free memory (and so did the bytes); now only the fit does."""
    z = _latents(700, b=1, seed=9)
    outs = []
    for free in (4 << 30, 64 << 30):  # the old rule: 128- and 1024-frame chunks
        vae = _vae(vae_file)
        vae.check_fits(700, available=free)
        outs.append(vae.decode(z))
    assert torch.equal(outs[0], outs[1])


def test_batch_item_equals_the_same_latent_decoded_alone(vae_file):
    """batch 2 item 0 == batch 1, bit for bit (float latents -> audio), at either position."""
    z = _latents(600, b=2, seed=12)
    vae = _vae(vae_file)
    both = vae.decode(z)
    assert torch.equal(both[0:1], vae.decode(z[0:1]))
    assert torch.equal(both[1:2], vae.decode(z[1:2]))
    assert torch.equal(vae.decode(z.flip(0))[1:2], both[0:1])


def test_decode_refuses_when_it_cannot_fit(vae_file):
    vae = _vae(vae_file)
    need = vae.memory_needed(2048)
    assert need < vae.memory_needed(4096) or vae.geometry().chunk < 2048
    vae.check_fits(2048, available=need)
    with pytest.raises(ResourceError, match=r"VAE decode needs .*close other programs"):
        vae.check_fits(2048, available=need - 1)
    with pytest.raises(ResourceError, match="batch=1"):
        vae.check_fits(2048, batch=4, available=need)


def test_load_rejects_non_torchscript_and_incomplete_modules(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip archive at all" * 10)
    with pytest.raises(CheckpointError, match="not a TorchScript"):
        load_vae(junk)
    with pytest.raises(CheckpointError, match="encode_export"):
        load_vae(build_decode_only(tmp_path / "decode_only.pt"))
    with pytest.raises(AssetError, match="does not exist"):
        load_vae(tmp_path / "missing.pt")


def test_vae_from_assets_dir_is_checksummed_before_loading(tmp_path, monkeypatch):
    # a file in the asset-root layout whose sha256 is not the release's: reported, never loaded
    monkeypatch.setenv("RHYTHMFLOW_CACHE_DIR", str(tmp_path / "cache"))
    build_tiny_vae(tmp_path / "root" / "ASLP-lab" / "DiffRhythm-vae" / "vae_model.pt")
    with pytest.raises(AssetError, match="corrupt asset vae"):
        load_vae(assets_dir=tmp_path / "root", offline=True)


def test_missing_vae_offline_names_repo_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(AssetError) as err:
        load_vae(assets_dir=tmp_path / "empty", offline=True)
    msg = str(err.value)
    assert "vae_model.pt" in msg and "ASLP-lab/DiffRhythm-vae" in msg and "rhythmflow fetch" in msg


@pytest.fixture(scope="module")
def oobleck_file(tmp_path_factory) -> Path:
    """The official decoder's architecture (Oobleck: strides 2·4·4·8·8, dilated residual units)
    at a small width, as a TorchScript file."""
    from rhythmflow.model.oobleck import SMALL, random_decoder, save_scripted

    return save_scripted(random_decoder(SMALL), tmp_path_factory.mktemp("oob") / "oobleck.pt")


def test_oobleck_reach_is_within_the_fixed_overlap(oobleck_file):
    """Perturbing one latent frame moves the decoded audio only within RECEPTIVE_MARGIN frames
    (the real architecture reaches 9 frames at 1e-6): the fixed overlap covers it."""
    vae = _vae(oobleck_file, chunked=False)
    n, mid = 40, 20
    z = _latents(n, seed=3)
    z2 = z.clone()
    z2[..., mid] += 1.0
    y, y2 = vae.decode(z), vae.decode(z2)
    per_frame = (y2 - y).abs().amax(dim=1).reshape(n, HOP).amax(dim=1)
    scale = y.pow(2).mean().sqrt()
    far = torch.ones(n, dtype=torch.bool)
    far[mid - RECEPTIVE_MARGIN : mid + RECEPTIVE_MARGIN + 1] = False
    assert per_frame[mid] > 1e-3 * scale
    assert per_frame[far].max() <= 1e-6 * scale


def test_oobleck_chunked_decode_with_the_fixed_overlap_equals_whole(oobleck_file):
    """The fixed overlap (not the window size) decides equality: short windows, same overlap."""
    z = _latents(100, seed=4)
    whole = _vae(oobleck_file, chunked=False).decode(z)
    chunked = _vae(oobleck_file, chunk_size=64, overlap=DECODE_GEOMETRY.overlap).decode(z)
    assert len(chunk_windows(100, 64, DECODE_GEOMETRY.overlap)) == 3
    assert (chunked - whole).abs().max() <= 1e-5 * whole.abs().max()  # float rounding only


def test_torchscript_vae_cast_to_bfloat16_decodes_float32_audio(oobleck_file):
    vae32 = _vae(oobleck_file, chunked=False)
    module = torch.jit.load(str(oobleck_file)).eval().to(torch.bfloat16)
    vae16 = TorchScriptVAE(module, chunked=False)
    assert vae16.dtype == torch.bfloat16
    z = _latents(16, seed=5)
    a, b = vae32.decode(z), vae16.decode(z)
    assert b.dtype == torch.float32 and b.shape == a.shape
    rel = ((b - a).pow(2).mean().sqrt() / a.pow(2).mean().sqrt()).item()
    assert 0 < rel < 3e-2
