"""Building blocks of the DiffRhythm DiT, named as in the official state dicts.

Shape legend: b - batch, n - latent frames, d - model dim, c - cond dim (512),
t - text dim (512), h - attention heads, k - head dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TimestepEmbedding(nn.Module):
    """Scalar in [0, 1] → sinusoidal features (sin first) → MLP to the cond dim."""

    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.time_mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, v: Tensor) -> Tensor:  # [b] -> [b, c]
        half = self.freq_dim // 2
        f = torch.exp(
            torch.arange(half, device=v.device, dtype=torch.float32)
            * -(math.log(10000) / (half - 1))
        )
        a = (1000 * v.float())[:, None] * f[None, :]
        emb = torch.cat([a.sin(), a.cos()], dim=-1)
        return self.time_mlp(emb.to(self.time_mlp[0].weight.dtype))


def text_position_table(n_rows: int, dim: int, theta: float = 10000.0) -> Tensor:
    """[n_rows, dim] table cat(cos(p·w), sin(p·w)), w_j = theta^(-2j/dim), in float32."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
    angles = torch.outer(torch.arange(n_rows, dtype=torch.float32), freqs).float()
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def conv1d(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """``conv(x)``, computed in float32 for float16/bfloat16 on the CPU: PyTorch has no fast
    low-precision grouped/depthwise CPU kernel and falls back to one slow call per group."""
    if x.device.type != "cpu" or x.dtype == torch.float32 or x.dtype == torch.float64:
        return conv(x)
    bias = None if conv.bias is None else conv.bias.float()
    y = F.conv1d(x.float(), conv.weight.float(), bias, conv.stride, conv.padding, conv.dilation,
                 conv.groups)
    return y.to(x.dtype)


class GRN(nn.Module):
    """Global response normalisation (ConvNeXt-V2) with the norm taken over the time axis."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: Tensor) -> Tensor:  # [b, n, f]
        g = torch.norm(x, p=2, dim=1, keepdim=True)  # [b, 1, f]
        nx = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    def __init__(self, dim: int, hidden: int, kernel: int = 7) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.grn = GRN(hidden)
        self.pwconv2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:  # [b, n, t]
        h = conv1d(self.dwconv, x.transpose(1, 2)).transpose(1, 2)
        h = self.pwconv1(self.norm(h))
        h = self.grn(F.gelu(h))
        return x + self.pwconv2(h)


class TextEmbedding(nn.Module):
    """Token ids → embedding + fixed position table → ConvNeXt-V2 blocks."""

    def __init__(self, num_embeds: int, dim: int, conv_layers: int, max_frames: int) -> None:
        super().__init__()
        self.text_embed = nn.Embedding(num_embeds + 1, dim)
        self.max_frames = max_frames
        self.text_blocks = nn.ModuleList(ConvNeXtV2Block(dim, dim * 2) for _ in range(conv_layers))
        self.register_buffer("freqs_cis", text_position_table(max_frames, dim), persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:  # [b, n] -> [b, n, t]
        e = self.text_embed(tokens)
        if len(self.text_blocks):
            pos = torch.arange(tokens.shape[1], device=tokens.device).clamp(max=self.max_frames - 1)
            e = e + self.freqs_cis[pos].to(e.dtype)
            for block in self.text_blocks:
                e = block(e)
        return e


class ConvPositionEmbedding(nn.Module):
    """Two grouped convolutions over time with Mish; returns the residual branch only."""

    def __init__(self, dim: int, kernel: int = 31, groups: int = 16) -> None:
        super().__init__()
        self.conv1d = nn.Sequential(
            nn.Conv1d(dim, dim, kernel, groups=groups, padding=kernel // 2),
            nn.Mish(),
            nn.Conv1d(dim, dim, kernel, groups=groups, padding=kernel // 2),
            nn.Mish(),
        )

    def forward(self, x: Tensor) -> Tensor:  # [b, n, d] -> [b, n, d], contiguous
        h = x.transpose(1, 2)
        for layer in self.conv1d:
            h = conv1d(layer, h) if isinstance(layer, nn.Conv1d) else layer(h)
        return h.transpose(1, 2).contiguous()


class InputEmbedding(nn.Module):
    """Linear over cat[x, cond, text, style, c] then a convolutional position residual.

    The projection is linear, so the model splits it: the time-invariant columns (cond, text,
    style, start/duration part of c, bias) are applied once per generation (see ``DiT.prepare``).
    """

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, dim)
        self.conv_pos_embed = ConvPositionEmbedding(dim)


class RMSNorm(nn.Module):
    """Llama RMSNorm: statistics in float32, weight applied after casting back."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        h = x.float()
        h = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        if h.dtype == self.weight.dtype:  # h is a fresh tensor: scale it in place
            return h.mul_(self.weight)
        return self.weight * h


def rope_tables(n: int, head_dim: int, theta: float, device, dtype) -> tuple[Tensor, Tensor]:
    """cos, sin [n, k] for the HF rotate_half convention, angles computed in float32."""
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim)
    )
    angles = torch.outer(torch.arange(n, device=device, dtype=torch.float32), inv_freq)
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``x·cos + rotate_half(x)·sin`` with ``rotate_half(x) = cat(−x2, x1)`` over the last axis
    (x [..., k]; cos, sin broadcast to x). One new, contiguous tensor whatever x's strides (so a
    transposed view comes out in its logical layout); the halves are updated in place."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    out = torch.mul(x, cos, out=torch.empty(x.shape, dtype=x.dtype, device=x.device))
    out[..., :half].addcmul_(x2, sin[..., :half], value=-1)
    out[..., half:].addcmul_(x1, sin[..., half:])
    return out


class SelfAttention(nn.Module):
    """Full (non-causal) multi-head attention with RoPE; no bias, no mask."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:  # cos, sin [n, k]
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # [b, n, d]
        return self.o_proj(attend(q, k, v, cos, sin, self.heads))


def attend(q: Tensor, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor, heads: int) -> Tensor:
    """The attention core on projections q, k, v [b, n, d]: split into ``heads``, RoPE on q and
    k, full (non-causal) SDPA, heads merged back: [b, n, d]. Shared by :class:`SelfAttention`
    and the int8 attention (:class:`rhythmflow.model.quantize.Int8Attention`)."""
    b, n, d = q.shape
    # SDPA's CPU kernel is ~8 % faster on contiguous [b, h, n, k] inputs than on transposed
    # views; RoPE writes q and k in that layout at no extra cost, v is copied once.
    q = apply_rope(q.view(b, n, heads, d // heads).transpose(1, 2), cos, sin)
    k = apply_rope(k.view(b, n, heads, d // heads).transpose(1, 2), cos, sin)
    v = v.view(b, n, heads, d // heads).transpose(1, 2).contiguous()
    o = F.scaled_dot_product_attention(q, k, v, is_causal=False)  # [b, h, n, k]
    return o.transpose(1, 2).reshape(b, n, d)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # inference only: the hidden tensor is reused in place
        h = F.silu(self.gate_proj(x), inplace=True)
        return self.down_proj(h.mul_(self.up_proj(x)))


class DecoderLayer(nn.Module):
    """Pre-norm Llama decoder layer (attention + SwiGLU MLP), parameter names as HF's."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.self_attn = SelfAttention(dim, heads)
        self.mlp = MLP(dim, hidden)
        self.input_layernorm = RMSNorm(dim, eps)
        self.post_attention_layernorm = RMSNorm(dim, eps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """x [b, n, d] in the weights' dtype, or float32 (the residual stream of a low-precision
        model, see ``DiT.forward``): each branch reads it normalised and cast to the weights'
        dtype, and its output is added in x's dtype."""
        dt = self.input_layernorm.weight.dtype  # the model dtype (also with int8 linears)
        x = x + self.self_attn(self.input_layernorm(x).to(dt), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x).to(dt))


class AdaLayerNormFinal(nn.Module):
    """LayerNorm without affine, modulated by (scale, shift) from the cond vector (scale first)."""

    def __init__(self, dim: int, cond_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cond_dim, dim * 2)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:  # x [b, n, d], c [b, c]
        scale, shift = self.linear(F.silu(c)).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale[:, None, :]) + shift[:, None, :]
