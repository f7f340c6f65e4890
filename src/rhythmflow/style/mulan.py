"""MuQ-MuLan (OpenMuQ/MuQ-MuLan-large), inference only: a text or a 24 kHz waveform → an
L2-normalised 512-d joint embedding. The same computation as the ``muq`` package (0.1.0):

- audio: log-mel (:mod:`.mel`) → normalise by the MuQ statistics → 2-D conv subsampling (4×
  in time) → conformer (``transformers``' Wav2Vec2-Conformer layers, rotary positions) → the
  hidden state ``use_layer_idx`` → linear → tower transformer → mean over time → latent;
- text: XLM-RoBERTa (``transformers``) → linear (if widths differ) → tower transformer → mean
  over tokens → latent.

The tower transformers, the conv subsampling and the heads are plain torch, as in ``muq``.
Loading (config files, strict checkpoint mapping) lives in :mod:`.mulan_load`.

Shapes: b - batch, n - samples, m - mel bands, t - frames (mel, then conformer),
s - tokens, c - conv channels, h - heads, d - width, k - clips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .mel import LogMel


@dataclass(frozen=True)
class TowerConfig:
    """The small transformer on top of each pretrained tower (``*_transformer`` in the config)."""

    dim: int
    depth: int
    heads: int
    dim_head: int
    ff_mult: float


@dataclass(frozen=True)
class MuQConfig:
    """The MuQ audio encoder (``OpenMuQ/MuQ-large-msd-iter/config.json``), inference part."""

    n_mels: int
    hop_length: int
    conv_dim: int
    encoder_dim: int
    encoder_depth: int
    label_rate: int
    codebook_size: int
    codebook_dim: int
    mel_mean: float
    mel_std: float
    w2v2: dict[str, Any] = field(hash=False)  # Wav2Vec2ConformerConfig fields

    @property
    def n_fold(self) -> int:
        """Mel frames (100 Hz) per label frame; the conv subsampling's time stride."""
        return 100 // self.label_rate


@dataclass(frozen=True)
class MuLanConfig:
    """Everything needed to build :class:`MuQMuLan` (read by :func:`.mulan_load.read_config`)."""

    sample_rate: int
    clip_seconds: float
    dim_latent: int
    audio: TowerConfig
    text: TowerConfig
    audio_model_dim: int
    use_layer_idx: int
    text_model_dim: int | None
    sigmoid_contrast: bool
    muq: MuQConfig
    xlmr: dict[str, Any] = field(hash=False)  # XLMRobertaConfig fields

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))


# ---------------------------------------------------------------- muq's tower transformer


class BiaslessLayerNorm(nn.Module):
    """LayerNorm with a learned scale and no bias (muq's ``LayerNorm``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.learned_gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.learned_gamma)


class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x


def feed_forward(dim: int, mult: float) -> nn.Sequential:
    hidden = int(dim * mult * 2 / 3)
    # indices as in muq (index 3 was a dropout): keys ``1.weight`` and ``4.weight``
    return nn.Sequential(BiaslessLayerNorm(dim), nn.Linear(dim, hidden * 2, bias=False), GEGLU(),
                         nn.Identity(), nn.Linear(hidden, dim, bias=False))


class Attention(nn.Module):
    """Pre-norm multi-head self-attention with L2-normalised queries/keys, learned per-dim
    q/k scales and a fixed logit scale of 8 (muq's ``Attention``; no mask, no bias)."""

    def __init__(self, dim: int, heads: int, dim_head: int, scale: float = 8.0) -> None:
        super().__init__()
        self.heads, self.scale = heads, scale
        inner = heads * dim_head
        self.norm = BiaslessLayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, t, d] → [b, t, d]
        b, t, _ = x.shape
        x = self.norm(x)
        q, k, v = self.to_q(x), *self.to_kv(x).chunk(2, dim=-1)
        q, k, v = (y.reshape(b, t, self.heads, -1).transpose(1, 2) for y in (q, k, v))  # [b, h, t, d]
        q = F.normalize(q, dim=-1) * self.q_scale
        k = F.normalize(k, dim=-1) * self.k_scale
        attn = (torch.matmul(q, k.transpose(-1, -2)) * self.scale).softmax(dim=-1)  # [b, h, t, t]
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, -1)  # [b, t, h * d]
        return self.to_out(out)


class TowerTransformer(nn.Module):
    """``depth`` × (attention + GEGLU feed-forward), both residual; no final norm."""

    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(cfg.dim, cfg.heads, cfg.dim_head),
                           feed_forward(cfg.dim, cfg.ff_mult)])
            for _ in range(cfg.depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


# ---------------------------------------------------------------- MuQ (audio tower backbone)


class Res2d(nn.Module):
    """Residual block: two 3×3 convs with batch norm, a strided 3×3 conv on the shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, stride=stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv3 = nn.Conv2d(c_in, c_out, 3, padding=1, stride=stride)
        self.bn3 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(self.bn3(self.conv3(x)) + out)


class ConvSubsampling(nn.Module):
    """Mel ``[b, m, t]`` → ``[b, t / fold, d]``: two residual blocks halve the bands twice and
    divide time by ``fold``, then a linear maps ``c × m / 4`` to the conformer width."""

    def __init__(self, conv_dim: int, out_dim: int, n_mels: int, fold: int) -> None:
        super().__init__()
        strides = {4: (2, 2), 2: (2, 1)}.get(fold)
        if strides is None:
            raise ValueError(f"MuQ label rate gives {fold} mel frames per label; expected 2 or 4")
        self.conv = nn.Sequential(Res2d(1, conv_dim, (2, strides[0])),
                                  Res2d(conv_dim, conv_dim, (2, strides[1])))
        self.linear = nn.Linear(conv_dim * (n_mels // 4), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.unsqueeze(1))  # [b, c, m / 4, t']
        b, c, m, t = x.shape
        return self.linear(x.permute(0, 3, 1, 2).reshape(b, t, c * m))  # [b, t', d]


class Conformer(nn.Module):
    """The layers of ``transformers``' ``Wav2Vec2ConformerEncoder`` (whose forward neither
    returns hidden states under transformers 5 nor uses its ``pos_conv_embed``), driven here.
    Hidden state ``i`` is the input of layer ``i``; the last (``-1``) is the normed output."""

    def __init__(self, w2v2: dict[str, Any], dim: int, depth: int) -> None:
        super().__init__()
        from transformers import Wav2Vec2ConformerConfig
        from transformers.models.wav2vec2_conformer import modeling_wav2vec2_conformer as hf

        config = Wav2Vec2ConformerConfig(**{**w2v2, "hidden_size": dim, "num_hidden_layers": depth})
        config._attn_implementation = "eager"
        self._config = config
        self.rebuild_positions()
        self.layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(hf.Wav2Vec2ConformerEncoderLayer(config) for _ in range(depth))

    def rebuild_positions(self) -> None:
        """(Re)build the parameter-free position module (rotary frequencies) on the CPU."""
        from transformers.models.wav2vec2_conformer import modeling_wav2vec2_conformer as hf

        positions = {"rotary": hf.Wav2Vec2ConformerRotaryPositionalEmbedding,
                     "relative": hf.Wav2Vec2ConformerRelPositionalEmbedding}
        kind = positions.get(self._config.position_embeddings_type)
        with torch.device("cpu"):
            self.embed_positions = kind(self._config) if kind is not None else None

    def forward(self, x: torch.Tensor, layer_idx: int = -1) -> torch.Tensor:  # [b, t, d]
        stop = layer_idx % (len(self.layers) + 1)
        rel = self.embed_positions(x) if self.embed_positions is not None else None
        for i, layer in enumerate(self.layers):
            if i == stop:
                return x
            out = layer(x, attention_mask=None, relative_position_embeddings=rel)
            x = out[0] if isinstance(out, tuple) else out  # a tuple under transformers 4
        return self.layer_norm(x)


class MuQEncoder(nn.Module):
    """Waveform ``[b, n]`` at 24 kHz → MuQ hidden state ``[b, t, d]`` (25 frames a second)."""

    def __init__(self, cfg: MuQConfig, sample_rate: int, layer_idx: int) -> None:
        super().__init__()
        self._mel_args = (sample_rate, 2048, cfg.hop_length, cfg.n_mels)
        self.mel = LogMel(*self._mel_args)
        self.mean, self.std, self.layer_idx = cfg.mel_mean, cfg.mel_std, layer_idx
        self.conv = ConvSubsampling(cfg.conv_dim, cfg.encoder_dim, cfg.n_mels, cfg.n_fold)
        self.conformer = Conformer(cfg.w2v2, cfg.encoder_dim, cfg.encoder_depth)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.mel(wav)[..., :-1]  # [b, m, t]: muq drops the last frame
        x = (x - self.mean) / self.std
        return self.conformer(self.conv(x), self.layer_idx)


# ---------------------------------------------------------------- the two towers and MuLan


class AudioTower(nn.Module):
    def __init__(self, cfg: MuLanConfig) -> None:
        super().__init__()
        self.muq = MuQEncoder(cfg.muq, cfg.sample_rate, cfg.use_layer_idx)
        self.proj = nn.Linear(cfg.audio_model_dim, cfg.audio.dim)
        self.transformer = TowerTransformer(cfg.audio)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # [b, n] → [b, d]
        return self.transformer(self.proj(self.muq(wav))).mean(dim=-2)


class TextTower(nn.Module):
    def __init__(self, cfg: MuLanConfig) -> None:
        super().__init__()
        from transformers import XLMRobertaConfig, XLMRobertaModel

        self.xlmr = XLMRobertaModel(XLMRobertaConfig(**cfg.xlmr), add_pooling_layer=False)
        width = cfg.text_model_dim
        self.proj = (nn.Linear(width, cfg.text.dim) if width is not None and width != cfg.text.dim
                     else nn.Identity())
        self.transformer = TowerTransformer(cfg.text)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # [b, s] → [b, d]
        hidden = self.xlmr(input_ids=ids, attention_mask=mask).last_hidden_state  # [b, s, d']
        return self.transformer(self.proj(hidden)).mean(dim=-2)


class MuQMuLan(nn.Module):
    """The joint embedding model. ``embed_text(ids, mask)`` and ``embed_audio(wav)`` return
    float ``[b, dim_latent]``; build it with :func:`.mulan_load.load_mulan`."""

    def __init__(self, cfg: MuLanConfig) -> None:
        super().__init__()
        self.config = cfg
        self.audio = AudioTower(cfg)
        self.text = TextTower(cfg)
        self.audio_to_latents = nn.Linear(cfg.audio.dim, cfg.dim_latent)
        self.text_to_latents = nn.Linear(cfg.text.dim, cfg.dim_latent)

    def rebuild_derived(self) -> None:
        """Recompute, on the CPU, every tensor that is a function of the config rather than a
        checkpoint entry (mel window and filterbank, rotary frequencies, XLM-R's position and
        token-type ids): after building on the meta device and ``to_empty``."""
        with torch.device("cpu"):
            self.audio.muq.mel = LogMel(*self.audio.muq._mel_args)
        self.audio.muq.conformer.rebuild_positions()
        emb = self.text.xlmr.embeddings
        with torch.no_grad():
            emb.position_ids.copy_(torch.arange(emb.position_ids.shape[-1]).expand_as(emb.position_ids))
            emb.token_type_ids.zero_()

    #: the non-persistent buffers :meth:`rebuild_derived` recomputes
    DERIVED = frozenset({"audio.muq.mel.window", "audio.muq.mel.fb",
                         "text.xlmr.embeddings.position_ids", "text.xlmr.embeddings.token_type_ids"})

    def embed_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token ids and attention mask ``[b, s]`` (XLM-R tokenizer) → ``[b, dim_latent]``."""
        return F.normalize(self.text_to_latents(self.text(ids, mask)), dim=-1)

    def embed_audio(self, wav: torch.Tensor) -> torch.Tensor:
        """Waveforms ``[b, n]`` at ``sample_rate`` → ``[b, dim_latent]``: each is cut into
        clips of ``clip_seconds`` (see :func:`split_clips`) and the clips' unit latents are
        averaged (not renormalised), as muq does."""
        out = []
        for one in wav:  # [n]
            latents = [
                F.normalize(self.audio_to_latents(self.audio(clip[None])), dim=-1)[0]
                for clip in split_clips(one, self.config.clip_samples)
            ]  # k × [dim_latent]
            out.append(torch.stack(latents).mean(dim=0))
        return torch.stack(out)


def split_clips(wav: torch.Tensor, clip: int) -> torch.Tensor:
    """``[n]`` → ``[k, clip]``: whole clips from the start; a shorter tail is completed with
    samples from the start of the waveform (muq's ``_get_all_clips``)."""
    n = wav.shape[-1]
    clips = [wav[i:i + clip] for i in range(0, n - clip + 1, clip)]
    done = len(clips) * clip
    if done < n:
        clips.append(torch.cat([wav[done:], wav[: clip - (n - done)]]))
    return torch.stack(clips)
