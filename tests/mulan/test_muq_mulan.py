"""rhythmflow's MuQ-MuLan encoder (its own code, rhythmflow.style.mulan) end to end against the
real ``muq`` package, on a tiny random MuQ-MuLan built with the real ``muq`` and
``transformers`` classes (``tiny_mulan.py``). The reference is what DiffRhythm does:
``MuQMuLan.from_pretrained("OpenMuQ/MuQ-MuLan-large", cache_dir=...)`` and, for audio, librosa's
10 s from the middle at 24 kHz. Runs in the ``rhythmflow[mulan]`` environment (``.venv-mulan``,
see ``scripts/setup.sh test``); ``tests/test_mulan_env.py`` runs this folder there."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import muq  # the real package: a missing muq is a failure, never a skip
import numpy as np
import pytest
import soundfile as sf
import torch

from rhythmflow.errors import AssetError
from rhythmflow.style import embed as style
from rhythmflow.style.embed import MuQMuLanEncoder, StyleCache, style_embedding
from rhythmflow.testing import TINY, build_tiny_vae, random_dit, save_checkpoint

from . import tiny_mulan as tm

REPO = Path(__file__).resolve().parents[2]
PROMPT = "jazzy nightclub with smooth saxophone"


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, Path]:
    return tm.build_repos(tmp_path_factory.mktemp("mulan") / "repos")


@pytest.fixture(scope="module")
def repos_root(repos) -> Path:
    """The folder holding the three repos as ``<root>/<repo_id>/`` (the --assets-dir layout)."""
    return repos[tm.MULAN_REPO].parents[1]


@pytest.fixture(scope="module")
def song_model(tmp_path_factory) -> tuple[list[str], Path]:
    """Tiny DiT checkpoint, tiny TorchScript VAE and an LRC file, as command-line arguments."""
    d = tmp_path_factory.mktemp("song-model")
    ckpt = save_checkpoint(random_dit(dataclasses.replace(TINY, depth=1), seed=7),
                           d / "cfm_model.pt")
    lrc = d / "song.lrc"
    lrc.write_text("[00:01.00]Hello little song\n[00:04.00]The end\n", encoding="utf-8")
    return ["--checkpoint", str(ckpt), "--vae", str(build_tiny_vae(d / "vae_model.pt")),
            "--skip-estimate", "--progress", "none"], lrc


@pytest.fixture(scope="module")
def hub(repos, tmp_path_factory) -> Path:
    return tm.as_hf_cache(repos, tmp_path_factory.mktemp("hf") / "hub")


@pytest.fixture(scope="module")
def reference(hub):
    """Upstream's loading: the hub mixin resolves the repo ids through the HF cache, falls back
    from model.safetensors to pytorch_model.bin, and loads the towers by repo id."""
    model = muq.MuQMuLan.from_pretrained(tm.MULAN_REPO, cache_dir=str(hub))
    return model.eval()


@pytest.fixture
def in_hub(hub, monkeypatch):
    """MuQ-MuLan from the HF cache; the release's small assets stay in RHYTHMFLOW_ASSETS_DIR
    (../shared/assets), which holds no MuQ-MuLan file."""
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    return hub


def _song(path: Path, seconds: float, sr: int = 44100) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(5)
    left = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))
    right = 0.2 * np.sin(2 * np.pi * 330 * t + 1) + 0.05 * rng.standard_normal(t.size)
    sf.write(path, np.stack([left, right], 1).astype(np.float32), sr, subtype="PCM_16")
    return path


def _upstream_clip(path: Path) -> torch.Tensor:
    """DiffRhythm's get_audio_style_embed preprocessing, verbatim in substance."""
    import librosa

    audio_len = librosa.get_duration(path=str(path))
    start_time = audio_len // 2 - 5
    wav, _ = librosa.load(str(path), sr=24000, offset=start_time, duration=10)
    return torch.tensor(wav).unsqueeze(0)


def test_text_prompt_matches_upstream_loading(reference, in_hub, tmp_path):
    enc = MuQMuLanEncoder()
    ours = style_embedding(prompt=PROMPT, encoder=enc, cache=StyleCache(tmp_path / "c"))
    with torch.no_grad():
        ref = reference(texts=[PROMPT]).float()
    assert ours.shape == (1, 512) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    other = style_embedding(prompt="fast metal, double kick", encoder=enc, cache=False)
    assert (other - ours).abs().max() > 1e-3  # the prompt matters
    assert enc.revision.startswith(f"{tm.MULAN_REPO}@") and "local" not in enc.revision


def test_reference_audio_matches_upstream(reference, in_hub, tmp_path):
    song = _song(tmp_path / "ref.wav", 23.5)
    clip = _upstream_clip(song)
    ours_clip = style.load_reference_clip(song)
    # librosa's resampler rounds 441000 * 24000 / 44100 up to 240001 samples, so upstream embeds
    # two clips (muq pads the 1-sample tail to a whole clip) and averages; we embed exactly 10 s
    assert ours_clip.shape == (1, 240000) and clip.shape[1] in (240000, 240001)
    # the same 10 s from the middle, up to the resampler (soxr in both, different settings)
    assert (ours_clip - clip[:, :240000]).abs().max() < 2e-3
    ours = style_embedding(audio_path=song, encoder=MuQMuLanEncoder(), cache=False)
    with torch.no_grad():
        ref = reference(wavs=clip).float()
        exact = reference(wavs=ours_clip).float()
    torch.testing.assert_close(ours, exact, rtol=0, atol=1e-6)
    assert (ours - ref).abs().max() < 1e-2
    text = style_embedding(prompt=PROMPT, encoder=MuQMuLanEncoder(), cache=False)
    assert (ours - text).abs().max() > 1e-3


def test_the_mulan_checkpoint_overrides_the_tower_repos(repos, reference, in_hub):
    """The big pytorch_model.bin holds the towers too (tiny_mulan perturbs them): an encoder that
    only loaded the tower repos would embed differently."""
    towers_only = muq.MuQMuLan(tm.mulan_config(str(repos[tm.MUQ_REPO]), str(repos[tm.XLMR_REPO])))
    towers_only.load_state_dict(
        {k: v for k, v in reference.state_dict().items() if ".model." not in k}, strict=False
    )
    with torch.no_grad():
        partial = towers_only.eval()(texts=[PROMPT])
    ours = MuQMuLanEncoder().embed_text(PROMPT)
    assert (ours - partial).abs().max() > 1e-4


def test_assets_dir_layout_gives_the_same_embedding(repos_root, in_hub):
    from_hub = MuQMuLanEncoder().embed_text(PROMPT)
    root = repos_root
    assert (root / tm.XLMR_REPO / "tokenizer.json").is_file()
    enc = MuQMuLanEncoder(assets_dir=root, offline=True)
    torch.testing.assert_close(enc.embed_text(PROMPT), from_hub, rtol=0, atol=1e-6)
    assert "@local:" in enc.revision


def test_a_cached_prompt_does_not_load_the_encoder(in_hub, tmp_path):
    store = StyleCache(tmp_path / "cache")
    first = MuQMuLanEncoder()
    a = style_embedding(prompt="sad piano ballad", encoder=first, cache=store)
    assert first._model is not None
    second = MuQMuLanEncoder()
    assert torch.equal(style_embedding(prompt="sad piano ballad", encoder=second, cache=store), a)
    assert second._model is None


def test_damaged_weights_are_an_asset_error_naming_the_folder(repos_root, tmp_path):
    root = tmp_path / "assets"
    shutil.copytree(repos_root, root)
    weights = root / tm.MULAN_REPO / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    with pytest.raises(AssetError, match="rhythmflow fetch") as exc:
        MuQMuLanEncoder(assets_dir=root, offline=True).embed_text(PROMPT)
    assert str(weights.parent) in str(exc.value)


def test_a_missing_tower_file_names_the_file_and_repo(repos_root, tmp_path):
    root = tmp_path / "assets"
    shutil.copytree(repos_root, root)
    (root / tm.XLMR_REPO / "tokenizer.json").unlink()
    with pytest.raises(AssetError) as exc:
        MuQMuLanEncoder(assets_dir=root, offline=True).embed_text(PROMPT)
    assert "tokenizer.json" in str(exc.value) and tm.XLMR_REPO in str(exc.value)


def test_command_lines_with_a_text_prompt_and_reference_audio(song_model, in_hub, tmp_path):
    """The seed-compatible ``python -m infer.infer --ref-prompt`` and ``rhythmflow generate
    --style-audio``, through the real encoder, in subprocesses."""
    model_args, lrc = song_model
    song = _song(tmp_path / "ref.wav", 15)
    common = [*model_args, "--steps", "2", "--seed", "3"]
    runs = {
        tmp_path / "seed" / "output.wav": [
            "-m", "infer.infer", "--lrc-path", str(lrc), "--ref-prompt", PROMPT,
            "--audio-length", "95", "--timeout", "1800", "--output-dir", str(tmp_path / "seed"),
        ],
        tmp_path / "audio.wav": [
            "-m", "rhythmflow", "generate", "--lrc", str(lrc), "--style-audio", str(song),
            "-o", str(tmp_path / "audio.wav"),
        ],
    }
    songs = []
    for out, args in runs.items():
        proc = subprocess.run([sys.executable, *args, *common], cwd=REPO, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert sf.info(out).samplerate == 44100 and sf.info(out).channels == 2
        assert json.loads(out.with_suffix(".json").read_text())["status"] == "completed"
        songs.append(sf.read(out)[0])
    assert not np.array_equal(*songs)  # same seed, different style: the style reached the model


def test_generate_reads_mulan_from_assets_dir_offline(song_model, repos_root, tmp_path,
                                                      monkeypatch):
    """--assets-dir and --offline reach the style encoder too: with an empty HF cache, every
    file (release assets and the three MuQ-MuLan repos) comes from the one folder."""
    model_args, lrc = song_model
    root = tmp_path / "assets"
    shutil.copytree(os.environ["RHYTHMFLOW_ASSETS_DIR"], root)
    shutil.copytree(repos_root, root, dirs_exist_ok=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("RHYTHMFLOW_ASSETS_DIR")
    out = tmp_path / "s.wav"
    cmd = [sys.executable, "-m", "rhythmflow", "generate", "--lrc", str(lrc), "--style-prompt",
           PROMPT, *model_args, "--assets-dir", str(root), "--offline", "--steps", "1",
           "-o", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file() and not (tmp_path / "empty-hub").exists()
