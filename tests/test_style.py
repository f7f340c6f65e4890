"""Style embeddings: .npy files, the negative embedding asset, the reference clip rule, the
on-disk cache, and the MuQ-MuLan dependency error."""

from __future__ import annotations

import hashlib
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from rhythmflow.assets import ASSETS
from rhythmflow.errors import AssetError, DependencyError, UsageError
from rhythmflow.style import embed as style
from rhythmflow.style.embed import StyleCache, load_reference_clip, load_style_npy, style_embedding


class HashEncoder:
    """A small deterministic encoder with MuQ-MuLan's interface (the real one is 0.7 B params):
    text → a unit vector seeded by the text; audio → a fixed projection of the clip."""

    sample_rate = 24000

    def __init__(self, revision: str = "test@1") -> None:
        self.revision = revision
        self.calls: list[str] = []
        self.proj = torch.randn(240, 512, generator=torch.Generator().manual_seed(0))

    def embed_text(self, text: str) -> torch.Tensor:
        self.calls.append("text")
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "little")
        v = torch.randn(1, 512, generator=torch.Generator().manual_seed(seed))
        return v / v.norm()

    def embed_audio(self, wav: torch.Tensor) -> torch.Tensor:
        self.calls.append("audio")
        assert wav.shape == (1, 240000) and wav.dtype == torch.float32
        v = wav.reshape(1, 240, 1000).mean(-1) @ self.proj
        return (v / v.norm()).double()  # any float dtype comes back as float32


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RHYTHMFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def _ramp_song(path, seconds: float, sr: int = 44100, channels: int = 2, **kw):
    """Left channel = t / 100 (seconds), right = half of it: the clip's values tell its time."""
    t = np.arange(int(seconds * sr)) / sr
    data = np.stack([t / 100, t / 200][:channels], axis=1).astype(np.float32)
    sf.write(path, data, sr, **kw)
    return path


def test_npy_files(tmp_path):
    v = np.random.default_rng(0).standard_normal(512)
    np.save(tmp_path / "flat.npy", v)  # [512] float64 → [1, 512] float32
    t = load_style_npy(tmp_path / "flat.npy")
    assert t.shape == (1, 512) and t.dtype == torch.float32
    np.testing.assert_allclose(t[0].numpy(), v.astype(np.float32))
    np.save(tmp_path / "wrong.npy", np.zeros((2, 512), np.float32))
    with pytest.raises(UsageError, match=r"\[1, 512\]"):
        load_style_npy(tmp_path / "wrong.npy")
    np.save(tmp_path / "ints.npy", np.zeros((1, 512), np.int64))
    with pytest.raises(UsageError, match="float"):
        load_style_npy(tmp_path / "ints.npy")
    bad = np.zeros((1, 512), np.float32)
    bad[0, 7] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    with pytest.raises(UsageError, match="NaN or Inf"):
        load_style_npy(tmp_path / "inf.npy")
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(UsageError, match="not a .npy"):
        load_style_npy(tmp_path / "text.npy")
    with pytest.raises(UsageError, match="does not exist"):
        load_style_npy(tmp_path / "missing.npy")
    assert torch.equal(style_embedding(npy=tmp_path / "flat.npy"), t)


def test_negative_style_from_assets_and_from_user_file(assets_dir, tmp_path):
    neg = style.negative_style(assets_dir=assets_dir, offline=True)
    assert neg.shape == (1, 512) and neg.dtype == torch.float32 and torch.isfinite(neg).all()
    assert neg.abs().sum() > 0
    mine = tmp_path / "neg.npy"
    style.save_style_npy(mine, torch.ones(1, 512))
    assert torch.equal(style.negative_style(mine), torch.ones(1, 512))
    with pytest.raises(AssetError, match="negative_prompt.npy"):
        style.negative_style(assets_dir=tmp_path / "empty", offline=True)


@pytest.mark.parametrize(
    "suffix,sr,channels,kw",
    [
        (".wav", 44100, 2, {}),
        (".flac", 22050, 1, {}),
        (".ogg", 48000, 2, {}),
        (".mp3", 44100, 2, {}),
    ],
)
def test_reference_clip_is_ten_seconds_from_the_middle(tmp_path, suffix, sr, channels, kw):
    # 25.7 s → start = floor(25.7 / 2) - 5 = 7 s, as upstream
    path = _ramp_song(tmp_path / f"ref{suffix}", 25.7, sr=sr, channels=channels, **kw)
    clip = load_reference_clip(path)
    assert clip.shape == (1, 240000) and clip.dtype == torch.float32
    gain = 0.75 if channels == 2 else 1.0  # mono mix of t/100 and t/200
    tol = 2e-3 if suffix in (".ogg", ".mp3") else 2e-4
    for i in (12000, 120000, 228000):  # away from the clip edges (resampler transients)
        assert clip[0, i].item() == pytest.approx(gain * (7 + i / 24000) / 100, abs=tol)


def test_reference_audio_shorter_than_ten_seconds_is_refused(tmp_path):
    path = _ramp_song(tmp_path / "short.wav", 9.5)
    with pytest.raises(UsageError, match=r"9\.50 s long.*at least 10 s"):
        load_reference_clip(path)
    with pytest.raises(UsageError, match="at least 10 s"):
        style_embedding(audio_path=path, encoder=HashEncoder())
    with pytest.raises(UsageError, match="does not exist"):
        style_embedding(audio_path=tmp_path / "none.wav", encoder=HashEncoder())


def test_prompt_embeddings_are_cached_per_prompt_and_revision(tmp_path):
    enc = HashEncoder()
    a = style_embedding(prompt="jazzy nightclub", encoder=enc)
    assert a.shape == (1, 512) and a.dtype == torch.float32 and enc.calls == ["text"]
    assert torch.equal(style_embedding(prompt="jazzy nightclub", encoder=enc), a)
    assert enc.calls == ["text"]  # second time from disk
    assert list((tmp_path / "cache" / "style").glob("*.npy"))
    b = style_embedding(prompt="metal, fast drums", encoder=enc)
    assert enc.calls == ["text", "text"] and not torch.equal(a, b)
    newer = HashEncoder(revision="test@2")
    style_embedding(prompt="jazzy nightclub", encoder=newer)
    assert newer.calls == ["text"]  # another model revision is another key
    fresh = HashEncoder()
    style_embedding(prompt="jazzy nightclub", encoder=fresh, cache=False)
    assert fresh.calls == ["text"]


def test_audio_embeddings_are_cached_by_file_content(tmp_path):
    enc = HashEncoder()
    song = _ramp_song(tmp_path / "song.wav", 12.0)
    a = style_embedding(audio_path=song, encoder=enc)
    assert a.dtype == torch.float32 and enc.calls == ["audio"]
    copy = shutil.copy(song, tmp_path / "renamed.wav")
    assert torch.equal(style_embedding(audio_path=copy, encoder=enc), a)
    assert enc.calls == ["audio"]  # same bytes, other name: cache hit
    _ramp_song(tmp_path / "song.wav", 13.0)  # new content under the old name: a miss
    style_embedding(audio_path=song, encoder=enc)
    assert enc.calls == ["audio", "audio"]


def test_unreadable_cache_entries_are_misses(tmp_path):
    enc = HashEncoder()
    style_embedding(prompt="folk", encoder=enc)
    for f in (tmp_path / "cache" / "style").glob("*.npy"):
        f.write_bytes(b"garbage")
    style_embedding(prompt="folk", encoder=enc)
    assert enc.calls == ["text", "text"]
    store = StyleCache(tmp_path / "elsewhere")
    style_embedding(prompt="folk", encoder=enc, cache=store)
    assert len(list((tmp_path / "elsewhere").glob("*.npy"))) == 1


def test_exactly_one_source(tmp_path):
    with pytest.raises(UsageError, match="exactly one"):
        style_embedding(encoder=HashEncoder())
    with pytest.raises(UsageError, match="exactly one"):
        style_embedding(prompt="x", npy=tmp_path / "a.npy")
    with pytest.raises(UsageError, match="empty"):
        style_embedding(prompt="   ", encoder=HashEncoder())


def _fake_mulan_weights(hub):
    asset = ASSETS["mulan-weights"]
    repo = hub / f"models--{asset.repo_id.replace('/', '--')}"
    (repo / "snapshots" / ("e" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("e" * 40) / asset.path).write_bytes(b"weights")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("e" * 40)


def test_without_transformers_a_cache_miss_is_a_dependency_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` fails
    enc = style.MuQMuLanEncoder(offline=True)
    with pytest.raises(
        DependencyError, match=r"pip install 'rhythmflow\[mulan\]'.*weights are missing"
    ):
        style_embedding(prompt="pop", encoder=enc)
    _fake_mulan_weights(tmp_path / "hub")
    enc = style.MuQMuLanEncoder(offline=True)
    assert enc.revision == f"OpenMuQ/MuQ-MuLan-large@{'e' * 40}"
    with pytest.raises(DependencyError, match="rhythmflow\\[mulan\\]"):
        style_embedding(prompt="pop", encoder=enc)


def test_a_cache_hit_needs_neither_transformers_nor_loading_the_model(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    _fake_mulan_weights(tmp_path / "hub")
    enc = style.MuQMuLanEncoder(offline=True)
    emb = torch.full((1, 512), 0.5)
    StyleCache().put(StyleCache.key("text", b"pop", enc.revision), emb)
    assert torch.equal(style_embedding(prompt="pop", encoder=enc), emb)
