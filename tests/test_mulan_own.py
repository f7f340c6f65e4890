"""rhythmflow's own MuQ-MuLan (rhythmflow.style.mulan) in the ordinary environment, without
``muq``: a tiny random model written from our own modules in the official checkpoint layout
(the three repos, as ``<assets-dir>/<repo_id>/``), loaded strictly, embedding text and audio.
Exactness against the real ``muq`` is tests/mulan/test_own_mulan.py (run in .venv-mulan)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rhythmflow.errors import AssetError, UsageError
from rhythmflow.style.embed import MuQMuLanEncoder, StyleCache, style_embedding
from rhythmflow.style.mel import LogMel, mel_filterbank
from rhythmflow.style.mulan import MuQMuLan, split_clips
from rhythmflow.style.mulan_load import official_state_dict, read_config

from .mulan.tiny_mulan import CORPUS, MULAN_REPO, MUQ_REPO, XLMR_REPO, mulan_config

PROMPT = "jazzy nightclub with smooth saxophone"
WEIGHTS = "pytorch_model.bin"


def _tokenizer_json(path: Path) -> int:
    """A tiny XLM-R-style tokenizer (unigram, metaspace, ``<s> … </s>``) trained with
    ``tokenizers`` alone; returns its vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok.train_from_iterator(CORPUS * 4, trainers.UnigramTrainer(
        vocab_size=120, special_tokens=specials, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(path))
    return tok.get_vocab_size()


def build_repos(root: Path, seed: int = 0) -> Path:
    """The official files of the three repos with random weights from our own modules."""
    from transformers import Wav2Vec2ConformerConfig, XLMRobertaConfig

    mulan, muq, xlmr = (root / r for r in (MULAN_REPO, MUQ_REPO, XLMR_REPO))
    for d in (mulan, muq, xlmr):
        d.mkdir(parents=True)
    vocab = _tokenizer_json(xlmr / "tokenizer.json")
    (xlmr / "config.json").write_text(XLMRobertaConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=40, type_vocab_size=1, pad_token_id=1,
        bos_token_id=0, eos_token_id=2).to_json_string())
    w2v2 = Wav2Vec2ConformerConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        position_embeddings_type="rotary", conv_depthwise_kernel_size=5).to_dict()
    (muq / "config.json").write_text(json.dumps({
        "label_rate": 25, "num_codebooks": 1, "codebook_dim": 16, "codebook_size": 64,
        "features": ["melspec_2048"], "hop_length": 240, "n_mels": 128, "conv_dim": 16,
        "encoder_dim": 32, "encoder_depth": 2, "mask_hop": 0.4, "mask_prob": 0.6,
        "is_flash": False, "stat": {"melspec_2048_mean": 6.77, "melspec_2048_std": 19.0},
        "w2v2_config": w2v2}, default=str))
    (mulan / "config.json").write_text(json.dumps(mulan_config(MUQ_REPO, XLMR_REPO)))
    cfg = read_config(mulan / "config.json", muq / "config.json", xlmr / "config.json")
    torch.manual_seed(seed)
    model = MuQMuLan(cfg)
    with torch.no_grad():  # non-trivial batch-norm statistics and biases
        for name, t in model.state_dict().items():
            if t.is_floating_point() and ("running" in name or name.endswith("bias")):
                t.add_(0.1 * torch.rand_like(t))
    torch.save(official_state_dict(model, fill=0.5), mulan / WEIGHTS)
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return build_repos(tmp_path_factory.mktemp("mulan-own") / "assets")


def _encoder(root: Path) -> MuQMuLanEncoder:
    return MuQMuLanEncoder(assets_dir=root, offline=True)


def _wav(seconds: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * 24000)) / 24000
    return (0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(t.shape, generator=g))[None]


def test_text_and_audio_embeddings_load_strictly_and_are_deterministic(root):
    enc = _encoder(root)
    text, audio = enc.embed_text(PROMPT), enc.embed_audio(_wav(10))
    for e in (text, audio):
        assert e.shape == (1, 512) and e.dtype == torch.float32 and torch.isfinite(e).all()
        torch.testing.assert_close(e.norm(dim=-1), torch.ones(1))
    again = _encoder(root)
    assert torch.equal(again.embed_text(PROMPT), text)
    assert torch.equal(again.embed_audio(_wav(10)), audio)
    assert (enc.embed_text("fast metal, double kick") - text).abs().max() > 1e-3
    assert (enc.embed_audio(_wav(10, seed=2)) - audio).abs().max() > 1e-6
    # every tensor of the file reached the model (training-only ones were written as 0.5)
    saved = torch.load(root / MULAN_REPO / WEIGHTS, weights_only=True)
    loaded = official_state_dict(enc._model, fill=0.5)
    assert saved.keys() == loaded.keys()
    for k, v in saved.items():
        assert torch.equal(v, loaded[k]), k


def test_style_embedding_uses_the_own_encoder_and_the_cache(root, tmp_path):
    store = StyleCache(tmp_path / "cache")
    enc = _encoder(root)
    a = style_embedding(prompt=PROMPT, encoder=enc, cache=store)
    assert "@local:" in enc.revision and len(list(store.folder.glob("*.npy"))) == 1
    second = _encoder(root)
    assert torch.equal(style_embedding(prompt=PROMPT, encoder=second, cache=store), a)
    assert second._model is None  # a cache hit loads nothing


def _copy(root: Path, tmp_path: Path) -> tuple[Path, Path]:
    copy = tmp_path / "assets"
    shutil.copytree(root, copy)
    return copy, copy / MULAN_REPO / WEIGHTS


@pytest.mark.parametrize("key", ["mulan.text_to_latents.bias",
                                 "mulan.audio.model.model.conformer.layers.1.ffn2.output_dense.weight",
                                 "mulan.audio.aggregator.weight"])
def test_a_missing_tensor_is_refused_by_name(root, tmp_path, key):
    copy, weights = _copy(root, tmp_path)
    state = torch.load(weights, weights_only=True)
    del state[key]
    torch.save(state, weights)
    with pytest.raises(AssetError, match="missing tensors") as exc:
        _encoder(copy).embed_text(PROMPT)
    assert key in str(exc.value) and "rhythmflow fetch" in str(exc.value)


def test_an_extra_or_wrong_shaped_tensor_is_refused_by_name(root, tmp_path):
    copy, weights = _copy(root, tmp_path)
    state = torch.load(weights, weights_only=True)
    torch.save({**state, "mulan.audio.extra.weight": torch.zeros(3)}, weights)
    with pytest.raises(AssetError, match=r"unexpected tensors: mulan\.audio\.extra\.weight"):
        _encoder(copy).embed_audio(_wav(10))
    state["mulan.text.proj.weight"] = torch.zeros(5, 5)
    torch.save(state, weights)
    with pytest.raises(AssetError, match=r"wrong-shaped tensors: mulan\.text\.proj\.weight \[5, 5\]"):
        _encoder(copy).embed_text(PROMPT)


def test_older_savers_layouts_are_accepted(root, tmp_path):
    """Weight norm saved as weight_g/weight_v (torch < 2.1), no rotary inv_freq buffer, XLM-R
    position ids saved as a buffer: the same embedding."""
    copy, weights = _copy(root, tmp_path)
    state = torch.load(weights, weights_only=True)
    conv = "mulan.audio.model.model.conformer.pos_conv_embed.conv."
    state[conv + "weight_g"] = state.pop(conv + "parametrizations.weight.original0")
    state[conv + "weight_v"] = state.pop(conv + "parametrizations.weight.original1")
    del state["mulan.audio.model.model.conformer.embed_positions.inv_freq"]
    state["mulan.text.model.embeddings.position_ids"] = torch.arange(40)[None]
    torch.save(state, weights)
    torch.testing.assert_close(_encoder(copy).embed_audio(_wav(10)),
                               _encoder(root).embed_audio(_wav(10)), rtol=0, atol=0)


def test_damaged_weights_and_a_missing_tokenizer_are_asset_errors(root, tmp_path):
    copy, weights = _copy(root, tmp_path)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    with pytest.raises(AssetError, match="rhythmflow fetch") as exc:
        _encoder(copy).embed_text(PROMPT)
    assert str(weights.parent) in str(exc.value)
    copy2, _ = _copy(root, tmp_path / "2")
    (copy2 / XLMR_REPO / "tokenizer.json").unlink()
    with pytest.raises(AssetError) as exc:
        _encoder(copy2).embed_text(PROMPT)
    assert "tokenizer.json" in str(exc.value) and XLMR_REPO in str(exc.value)


def test_a_prompt_longer_than_the_position_limit_is_a_usage_error(root):
    # XLM-R position ids start after the padding id (1): 40 positions hold 38 tokens
    with pytest.raises(UsageError, match="at most 38"):
        _encoder(root).embed_text(" ".join(["saxophone"] * 60))


def test_clips_as_muq_cuts_them():
    wav = torch.arange(25.0)
    clips = split_clips(wav, 10)
    assert clips.shape == (3, 10)
    assert torch.equal(clips[2], torch.cat([wav[20:], wav[:5]]))  # the tail wraps to the start
    assert split_clips(wav[:20], 10).shape == (2, 10)


def test_mel_front_end_shapes_and_a_tone_lands_in_its_band():
    fb = mel_filterbank(1025, 0.0, 12000.0, 128, 24000)
    assert fb.shape == (1025, 128) and fb.min() >= 0 and (fb.max(dim=0).values > 0).all()
    wav = torch.sin(2 * torch.pi * 1000 * torch.arange(24000) / 24000)[None]
    db = LogMel()(wav)
    assert db.shape == (1, 128, 24000 // 240 + 1)
    band = int(db[0, :, 50].argmax())
    bins = torch.linspace(0, 12000, 1025)
    assert fb[int((bins - 1000).abs().argmin()), band] > 0.5  # the 1 kHz bin feeds that band
    silent = LogMel()(torch.zeros(1, 4800))
    assert torch.equal(silent, torch.full_like(silent, -100.0))  # amin 1e-10 → -100 dB


def test_generate_with_a_text_style_prompt_in_the_ordinary_install(root, tmp_path, tiny_files,
                                                                   assets_dir, monkeypatch):
    """`rhythmflow generate --style-prompt` end to end in this environment (no muq): the tiny
    MuQ-MuLan repos beside the release's small files, the tiny DiT and VAE."""
    import json as _json

    import soundfile as sf

    from rhythmflow.cli.main import main

    assets = tmp_path / "assets"
    shutil.copytree(assets_dir, assets)
    shutil.copytree(root, assets, dirs_exist_ok=True)
    monkeypatch.setenv("RHYTHMFLOW_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "song.wav"
    code = main(["generate", "--lrc", str(tiny_files["lrc"]), "--style-prompt", PROMPT,
                 "--checkpoint", str(tiny_files["ckpt"]), "--vae", str(tiny_files["vae"]),
                 "--assets-dir", str(assets), "--offline", "--steps", "2", "--seed", "3",
                 "--progress", "none", "--skip-estimate", "-o", str(out)])
    assert code == 0
    audio, rate = sf.read(out)
    assert rate == 44100 and audio.shape[1] == 2 and len(audio) > 0
    meta = _json.loads(out.with_suffix(".json").read_text())
    assert meta["request"]["style_prompt"] == PROMPT
