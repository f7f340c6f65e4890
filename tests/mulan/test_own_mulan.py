"""Exactness of rhythmflow's own MuQ-MuLan (rhythmflow.style.mulan, mel, mulan_load) against
the real ``muq`` package, on the tiny random MuQ-MuLan that ``tiny_mulan.py`` builds with the
real classes and saves in the official layout. Runs in ``.venv-mulan`` (muq, torchaudio,
transformers 4.x); the last test also runs our code in the main environment (transformers 5)
and compares it with ``muq`` here. Bound: ≤ 1e-5 relative (measured: bit-identical)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import muq  # the real package: a missing muq is a failure, never a skip
import pytest
import torch
import torchaudio

from rhythmflow.style.mel import LogMel, mel_filterbank
from rhythmflow.style.mulan_load import TextTokenizer, load_mulan, official_state_dict

from . import tiny_mulan as tm

REPO = Path(__file__).resolve().parents[2]
MAIN_PYTHON = Path(os.environ.get("RHYTHMFLOW_MAIN_PYTHON", REPO / ".venv" / "bin" / "python"))
PROMPTS = ["jazzy nightclub with smooth saxophone", "中国风 古筝 笛子 温柔的女声", "x",
           "fast metal, distorted guitars, double kick drums, screaming vocals, 180 bpm"]
RTOL = 1e-5


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).norm() / ref.norm())


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, Path]:
    return tm.build_repos(tmp_path_factory.mktemp("own") / "repos")


def _files(repos: dict[str, Path]) -> list[Path]:
    return [repos[tm.MULAN_REPO] / "config.json", repos[tm.MUQ_REPO] / "config.json",
            repos[tm.XLMR_REPO] / "config.json", repos[tm.MULAN_REPO] / "pytorch_model.bin"]


@pytest.fixture(scope="module")
def ours(repos):
    model = load_mulan(*_files(repos))
    return model, TextTokenizer.for_config(repos[tm.XLMR_REPO] / "tokenizer.json", model.config)


@pytest.fixture(scope="module")
def upstream(repos):
    """muq's own model with the checkpoint's weights (its from_pretrained loads non-strictly)."""
    model = muq.MuQMuLan(tm.mulan_config(str(repos[tm.MUQ_REPO]), str(repos[tm.XLMR_REPO])))
    state = torch.load(repos[tm.MULAN_REPO] / "pytorch_model.bin", weights_only=True)
    assert not any(model.load_state_dict(state, strict=False))
    return model.eval()


def _audio(n: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 24000
    tone = 0.3 * torch.sin(2 * torch.pi * 330 * t) * (1 + torch.sin(2 * torch.pi * 0.7 * t))
    return tone + 0.05 * torch.randn(batch, n, generator=g)


@pytest.mark.parametrize("scale,norm", [("htk", None), ("slaney", None), ("slaney", "slaney")])
def test_mel_filterbank_equals_torchaudio(scale, norm):
    for n_freqs, f_min, f_max, n_mels, sr in [(1025, 0.0, 12000.0, 128, 24000),
                                              (513, 30.0, 8000.0, 80, 16000)]:
        ref = torchaudio.functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sr,
                                                    norm=norm, mel_scale=scale)
        got = mel_filterbank(n_freqs, f_min, f_max, n_mels, sr, norm=norm, scale=scale)
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-7)


def test_log_mel_equals_muqs_torchaudio_front_end():
    from muq.muq.modules.features import MelSTFT

    ref_fe = MelSTFT(n_fft=2048, hop_length=240, is_db=True)
    for n in (24000, 240000, 12345):
        wav = _audio(n, batch=2)
        ref, got = ref_fe(wav), LogMel()(wav)
        assert got.shape == ref.shape
        assert rel_err(got, ref) <= RTOL, rel_err(got, ref)
        assert (got - ref).abs().max() < 1e-3  # dB


def test_every_tensor_of_muqs_checkpoint_is_loaded(repos, ours):
    """The checkpoint the real muq saved: all its tensors are in our model (or are the known
    training-only ones), bit for bit."""
    saved = torch.load(repos[tm.MULAN_REPO] / "pytorch_model.bin", weights_only=True)
    mine = official_state_dict(ours[0])
    assert saved.keys() == mine.keys()
    from rhythmflow.style.mulan_load import training_only_shapes

    dropped = set(training_only_shapes(ours[0].config)) | {k for k in saved if "pos_conv" in k}
    for k, v in saved.items():
        assert v.shape == mine[k].shape, k
        if k not in dropped:
            assert torch.equal(v, mine[k]), k


def test_text_embeddings_equal_muq(ours, upstream):
    model, tokenizer = ours
    for prompt in PROMPTS:
        with torch.no_grad():
            ref = upstream(texts=[prompt])
            ids, mask = tokenizer(prompt)
            got = model.embed_text(ids, mask)
        ref_ids = upstream.mulan.text.tokenizer([prompt], return_tensors="pt")["input_ids"]
        assert torch.equal(ids, ref_ids), prompt  # tokenizers alone = transformers' tokenizer
        assert got.shape == ref.shape == (1, 512)
        assert rel_err(got, ref) <= RTOL, (prompt, rel_err(got, ref))


@pytest.mark.parametrize("n,batch", [(240000, 1), (240001, 1), (600000, 1), (250000, 2)])
def test_audio_embeddings_equal_muq(ours, upstream, n, batch):
    """One clip, a 1-sample tail (muq completes it from the start), 2.5 clips, a batch."""
    wav = _audio(n, batch=batch, seed=n)
    with torch.no_grad():
        ref, got = upstream(wavs=wav), ours[0].embed_audio(wav)
    assert got.shape == ref.shape == (batch, 512)
    assert rel_err(got, ref) <= RTOL, rel_err(got, ref)


def test_the_main_environment_equals_muq(repos, upstream, tmp_path):
    """Our code under the main environment's transformers (5.x) against muq under 4.x here."""
    if not MAIN_PYTHON.is_file():
        pytest.fail(f"{MAIN_PYTHON} is missing (set RHYTHMFLOW_MAIN_PYTHON)")
    wav = _audio(260000, seed=3)
    with torch.no_grad():
        ref_text, ref_audio = upstream(texts=[PROMPTS[0]]), upstream(wavs=wav)
    torch.save(wav, tmp_path / "wav.pt")
    script = (
        "import json, sys, torch, transformers\n"
        "from rhythmflow.style.mulan_load import TextTokenizer, load_mulan\n"
        "files, tok, prompt, wav, out = json.loads(sys.argv[1])\n"
        "m = load_mulan(*files)\n"
        "ids, mask = TextTokenizer.for_config(tok, m.config)(prompt)\n"
        "with torch.no_grad():\n"
        "    t, a = m.embed_text(ids, mask), m.embed_audio(torch.load(wav))\n"
        "torch.save({'text': t, 'audio': a, 'transformers': transformers.__version__}, out)\n"
    )
    args = [[str(p) for p in _files(repos)], str(repos[tm.XLMR_REPO] / "tokenizer.json"),
            PROMPTS[0], str(tmp_path / "wav.pt"), str(tmp_path / "out.pt")]
    proc = subprocess.run([str(MAIN_PYTHON), "-c", script, json.dumps(args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, ("the main environment needs rhythmflow[mulan]: "
                                  + proc.stderr[-3000:])
    out = torch.load(tmp_path / "out.pt")
    assert rel_err(out["text"], ref_text) <= RTOL, (out["transformers"], rel_err(out["text"], ref_text))
    assert rel_err(out["audio"], ref_audio) <= RTOL, (out["transformers"], rel_err(out["audio"], ref_audio))
