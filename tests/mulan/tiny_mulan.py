"""Tiny random-weight MuQ-MuLan, built with the real ``muq`` and ``transformers`` classes and
saved with exactly the files of the three official repos (see ``rhythmflow.assets``):

- ``OpenMuQ/MuQ-MuLan-large``: ``config.json`` (towers named by repo id) + ``pytorch_model.bin``
- ``OpenMuQ/MuQ-large-msd-iter``: ``config.json`` + ``model.safetensors`` (MuQ's hub mixin)
- ``xlm-roberta-base``: ``config.json`` + ``model.safetensors`` + ``tokenizer.json`` +
  ``sentencepiece.bpe.model`` (a SentencePiece model trained here on a few lines)

Only the sizes are small: the MuLan latent stays 512 wide, audio stays 24 kHz with 10 s clips,
and MuQ keeps its 128-band mel front end.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

MULAN_REPO = "OpenMuQ/MuQ-MuLan-large"
MUQ_REPO = "OpenMuQ/MuQ-large-msd-iter"
XLMR_REPO = "xlm-roberta-base"

CORPUS = [
    "jazzy nightclub with smooth saxophone and brushed drums",
    "fast metal, distorted guitars, double kick drums, screaming vocals",
    "gentle folk song with acoustic guitar and warm female voice",
    "upbeat pop, bright synths, catchy chorus, dance rhythm",
    "sad piano ballad, slow tempo, strings in the background",
    "lo-fi hip hop beat, vinyl crackle, mellow keys",
    "中国风 古筝 笛子 温柔的女声",
    "city lights at night, electronic, 120 bpm",
]


def _keep_only(folder: Path, names: set[str]) -> None:
    """Drop what ``save_pretrained`` adds beyond the official repo's files (README, ...)."""
    for p in folder.iterdir():
        if p.name not in names:
            p.unlink()


def _tokenizer_files(folder: Path, work: Path) -> int:
    """Train a tiny SentencePiece model, wrap it as an XLM-R tokenizer and keep only the two
    files the official repo ships; returns the vocabulary size the text model must have."""
    import sentencepiece as spm
    try:  # transformers 4.x: the fast tokenizer class (its slow one writes no tokenizer.json)
        from transformers import XLMRobertaTokenizerFast as XLMRobertaTokenizer
    except ImportError:  # transformers 5.x: one class, backed by `tokenizers`
        from transformers import XLMRobertaTokenizer

    work.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4),
        model_prefix=str(work / "sp"),
        vocab_size=100,
        character_coverage=1.0,
        model_type="unigram",
        minloglevel=2,
    )
    shutil.copy(work / "sp.model", work / "sentencepiece.bpe.model")
    tok = XLMRobertaTokenizer(vocab_file=str(work / "sentencepiece.bpe.model"))
    saved = work / "saved"
    tok.save_pretrained(saved)
    shutil.copy(saved / "tokenizer.json", folder / "tokenizer.json")
    shutil.copy(work / "sentencepiece.bpe.model", folder / "sentencepiece.bpe.model")
    return len(tok)


def build_xlmr(folder: Path, work: Path, *, dim: int = 32) -> Path:
    from transformers import XLMRobertaConfig, XLMRobertaModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab = _tokenizer_files(folder, work)
    config = XLMRobertaConfig(
        vocab_size=vocab, hidden_size=dim, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=2 * dim, max_position_embeddings=130, type_vocab_size=1,
        pad_token_id=1, bos_token_id=0, eos_token_id=2,
    )
    torch.manual_seed(1)
    XLMRobertaModel(config).save_pretrained(folder)
    _keep_only(folder, {"config.json", "model.safetensors", "tokenizer.json",
                        "sentencepiece.bpe.model"})
    return folder


def build_muq(folder: Path, *, dim: int = 32) -> Path:
    from muq import MuQ
    from transformers import Wav2Vec2ConformerConfig

    w2v2 = Wav2Vec2ConformerConfig(
        hidden_size=dim, num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * dim,
        position_embeddings_type="rotary", conv_depthwise_kernel_size=5, hidden_dropout=0.0,
        activation_dropout=0.0, attention_dropout=0.0, layerdrop=0.0,
    ).to_dict()
    config = {
        "label_rate": 25, "num_codebooks": 1, "codebook_dim": 16, "codebook_size": 64,
        "features": ["melspec_2048"], "hop_length": 240, "n_mels": 128, "conv_dim": 16,
        "encoder_dim": dim, "encoder_depth": 2, "mask_hop": 0.4, "mask_prob": 0.6,
        "is_flash": False, "stat": {"melspec_2048_mean": 6.77, "melspec_2048_std": 19.0},
        "w2v2_config": json.loads(json.dumps(w2v2, default=str)),
    }
    torch.manual_seed(2)
    MuQ(config).save_pretrained(folder)
    _keep_only(folder, {"config.json", "model.safetensors"})
    return folder


def mulan_config(audio_name: str, text_name: str, *, tower_dim: int = 32) -> dict:
    return {
        "mulan": {
            "sr": 24000, "clip_secs": 10, "dim_latent": 512,
            "decoupled_contrastive_learning": True, "hierarchical_contrastive_loss": False,
            "hierarchical_contrastive_loss_layers": None, "sigmoid_contrastive_loss": False,
            "rank_contrast": True,
        },
        "audio_model": {"name": audio_name, "model_dim": tower_dim, "use_layer_idx": -1},
        "text_model": {"name": text_name, "model_dim": tower_dim},
        "audio_transformer": {"dim": 24, "tf_depth": 1, "heads": 2, "dim_head": 12,
                              "attn_dropout": 0.0, "ff_dropout": 0.0, "ff_mult": 2},
        "text_transformer": {"dim": 24, "tf_depth": 1, "max_seq_len": 64, "dim_head": 12,
                             "heads": 2, "attn_dropout": 0.0, "ff_dropout": 0.0, "ff_mult": 2},
    }


def build_mulan(folder: Path, muq_folder: Path, xlmr_folder: Path) -> Path:
    """The MuLan repo: random weights for everything (towers included, as the official
    ``pytorch_model.bin`` holds the whole model), config naming the towers by repo id."""
    from muq import MuQMuLan

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(3)
    model = MuQMuLan(mulan_config(str(muq_folder), str(xlmr_folder)))
    with torch.no_grad():  # towers differ from their own repos: the big file must win
        for p in model.mulan.audio.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        for p in model.mulan.text.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(mulan_config(MUQ_REPO, XLMR_REPO), indent=2))
    return folder


def build_repos(root: Path) -> dict[str, Path]:
    """The three repos as plain folders ``<root>/<repo_id>/`` (the ``--assets-dir`` layout)."""
    muq = build_muq(root / MUQ_REPO)
    xlmr = build_xlmr(root / XLMR_REPO, root.parent / (root.name + "-work"))
    mulan = build_mulan(root / MULAN_REPO, muq, xlmr)
    return {MULAN_REPO: mulan, MUQ_REPO: muq, XLMR_REPO: xlmr}


def as_hf_cache(repos: dict[str, Path], cache: Path) -> Path:
    """Copy repos into the Hugging Face cache layout (``models--org--name/snapshots/<rev>/``
    with ``refs/main``), which is where ``hf_hub_download`` and ``from_pretrained`` look."""
    for repo_id, folder in repos.items():
        rev = hashlib.sha1(repo_id.encode()).hexdigest()
        base = cache / ("models--" + repo_id.replace("/", "--"))
        shutil.copytree(folder, base / "snapshots" / rev)
        (base / "refs").mkdir(parents=True, exist_ok=True)
        (base / "refs" / "main").write_text(rev)
    return cache
