"""Tiny random-weight models for tests, benchmarks and ``diagnose --smoke`` (one home):

* :func:`random_dit` / :func:`save_checkpoint`: a DiT with random weights, written in the official
  checkpoint containers (random weights say nothing about music; they exercise every code path).
* :func:`build_tiny_vae`: a tiny TorchScript VAE with the official method names and rates.

``decode_export``: latents [b, 64, n] → audio [b, 2, n·2048]; ``encode_export``: audio [b, 2, s]
→ [b, 128, s // 2048] (mean and scale halves, as the official encoder). Both directions are
convolution-only, so each output frame depends on a few neighbouring frames only
(``DECODER_REACH`` / ``ENCODER_REACH``): chunked processing with ``overlap // 2`` larger than that
reach reproduces whole-song processing up to float round-off.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from rhythmflow.model.blocks import text_position_table
from rhythmflow.model.checkpoint import PREFIX
from rhythmflow.model.dit import DiT
from rhythmflow.specs import BASE_FRAMES, HOP, LATENT_CHANNELS, DiTConfig

LATENT_DIM = LATENT_CHANNELS
CHANNELS = 2
DECODER_REACH = 2  # frames each side a decoded frame depends on (kernel 5)
ENCODER_REACH = 1  # frames each side an encoded frame depends on (kernel 3)


class TinyVAE(nn.Module):
    def __init__(self, hop: int = HOP, latent_dim: int = LATENT_DIM, hidden: int = 8) -> None:
        super().__init__()
        self.dec_mix = nn.Conv1d(
            latent_dim, hidden, kernel_size=2 * DECODER_REACH + 1, padding=DECODER_REACH
        )
        self.dec_up = nn.ConvTranspose1d(hidden, CHANNELS, kernel_size=hop, stride=hop)
        self.enc_down = nn.Conv1d(CHANNELS, hidden, kernel_size=hop, stride=hop)
        self.enc_mix = nn.Conv1d(
            hidden, 2 * latent_dim, kernel_size=2 * ENCODER_REACH + 1, padding=ENCODER_REACH
        )

    @torch.jit.export
    def decode_export(self, z: torch.Tensor) -> torch.Tensor:  # [b, 64, n] -> [b, 2, n*hop]
        return self.dec_up(torch.tanh(self.dec_mix(z)))

    @torch.jit.export
    def encode_export(self, x: torch.Tensor) -> torch.Tensor:  # [b, 2, s] -> [b, 128, s//hop]
        return self.enc_mix(torch.tanh(self.enc_down(x)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_export(z)


def _script(model: nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # the format under test is TorchScript, deprecated or not
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return torch.jit.script(model)


def build_tiny_vae(path: str | Path, *, seed: int = 0, hop: int = HOP) -> Path:
    """Build a random-weight :class:`TinyVAE` (deterministic for ``seed``), script it and save it
    to ``path``; the global RNG state is left untouched. Returns the path."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyVAE(hop=hop).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _script(model).save(str(path))
    return path


# --- the DiT -----------------------------------------------------------------------------

TINY = DiTConfig(
    dim=64,
    depth=2,
    ff_mult=2,
    text_dim=512,
    conv_layers=1,
    mel_dim=64,
    text_num_embeds=363,
    max_frames=BASE_FRAMES,
)


@torch.no_grad()
def random_dit(
    config: DiTConfig = TINY,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> DiT:
    """A DiT with every parameter drawn at random (fan-in scaled), deterministic per seed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):  # no default initialisation: every value is drawn below
        model = DiT(config)
    model = model.to_empty(device="cpu")
    model.text_embed.freqs_cis = text_position_table(config.max_frames, config.text_dim)
    for name, p in model.named_parameters():
        if name.endswith(("norm.weight", "layernorm.weight")):
            values = 1 + 0.1 * torch.randn(p.shape, generator=gen)
        elif p.ndim >= 2 and "text_embed.text_embed" not in name:
            fan_in = p[0].numel()
            values = torch.randn(p.shape, generator=gen) / fan_in**0.5
        elif p.ndim >= 2:
            values = torch.randn(p.shape, generator=gen)
        else:
            values = 0.05 * torch.randn(p.shape, generator=gen)
        p.copy_(values)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def save_checkpoint(
    model: DiT, path: str | os.PathLike, *, form: str = "pt", dtype: torch.dtype = torch.float16
) -> Path:
    """Write ``model`` as an official container: "pt" (model_state_dict), "ema"
    (ema_model_state_dict with initted/step) or "safetensors" (flat)."""
    path = Path(path)
    sd = {
        PREFIX + k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()
    }
    if form == "pt":
        torch.save({"model_state_dict": sd}, path)
    elif form == "ema":
        ema = {"initted": torch.tensor(True), "step": torch.tensor(1000)}
        ema.update({"ema_model." + k: v for k, v in sd.items()})
        torch.save({"ema_model_state_dict": ema}, path)
    elif form == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        raise ValueError(f"unknown checkpoint form {form!r}")
    return path


# --- a module that is not a DiffRhythm VAE (tests of the VAE loader's refusal) ------------

class DecodeOnly(nn.Module):
    """A TorchScript module lacking ``encode_export`` (not a DiffRhythm VAE)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Conv1d(LATENT_DIM, CHANNELS, 1)

    @torch.jit.export
    def decode_export(self, z: torch.Tensor) -> torch.Tensor:
        return self.lin(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_export(z)


def build_decode_only(path: str | Path) -> Path:
    """Save a TorchScript module that has ``decode_export`` but no ``encode_export``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DecodeOnly().eval()
    _script(model).save(str(path))
    return Path(path)


# --- a Whisper tokenizer and processor for random Whispers (the lyric check's tests) --------

def save_whisper_processor(folder: str | os.PathLike, specials: list[str],
                           pieces: list[str] | tuple[str, ...] = ()):
    """A byte-level Whisper tokenizer (256 byte tokens, then ``pieces``, no merges) with
    ``specials`` after ``<|endoftext|>``, and an 80-mel feature extractor, saved in ``folder``
    as ``WhisperProcessor.save_pretrained`` writes them (what rhythmflow's recogniser loads).
    Returns the tokenizer. Needs ``transformers``."""
    import json

    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    eot = "<|endoftext|>"
    tok = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                           unk_token=eot, bos_token=eot, eos_token=eot, pad_token=eot)
    tok.add_special_tokens({"additional_special_tokens": specials})
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80),
                     tokenizer=tok).save_pretrained(folder)
    return tok
