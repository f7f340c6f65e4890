"""An eager Oobleck decoder for CPU inference, built from a VAE file's own weights.

Same maths as the TorchScript decoder (:mod:`rhythmflow.model.oobleck`, Stable Audio's Oobleck),
laid out for oneDNN: activations are ``[b, ch, 1, t]`` in channels-last memory and every
convolution a ``1 × k`` 2-d one (the layout oneDNN runs fastest on CPU); Snake's ``α = exp(log α)``
and ``1 / (exp(log β) + 1e-9)`` are precomputed once and ``x + 1/(β+ε) · sin²(α·x)`` runs in place
on one temporary; the residual sum is written into the stream. In float32 the audio equals
TorchScript's up to float rounding (tested). Weights come only from
:func:`rhythmflow.model.oobleck_load.find_decoder`.

Optional reduced precision (``residual_dtype``): the residual units' convolutions take bfloat16
inputs and weights (float32 accumulation in oneDNN); everything else stays float32. ``plan``
chooses it by measurement (:mod:`rhythmflow.machine.vae_probe`) and :func:`eager_decoder` keeps it only
when its audio error on the loaded weights is within :data:`VAE_LOW_PRECISION_LIMIT`; the
full-size figures are in ``benchmarks/vae_decode.py`` (docs/performance-log.md).

Shapes: b - batch, d - latent channels, n - latent frames, ch - channels, t - time steps.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rhythmflow.model.oobleck import OobleckConfig
from rhythmflow.model.oobleck_load import DecoderWeights, find_decoder

log = logging.getLogger(__name__)

SNAKE_EPS = 1e-9
#: ``forward(z, keep=…)`` crops to the kept frames after this many upsampling blocks, with this
#: many latent frames of context each side: the receptive field of the remaining blocks is
#: under 0.3 frames (their dilated convolutions span 39 samples at 256-2048 samples per frame).
#: Blocks 3-5 are ~75 % of the FLOPs; at the fixed 256/32 windows this saves 7 % of a decode.
CROP_AFTER = 2
CROP_HALO = 2


CL = torch.channels_last  # activations are [b, ch, 1, t] in channels-last memory: oneDNN's
# fastest convolution layout on CPU (fp32 1.2-3x, bf16 on AMX 4x over [b, ch, t] here)


class Snake(nn.Module):
    """Snake-beta with precomputed ``α`` and ``1/(β+ε)`` (``[1, ch, 1, 1]``) from log-scale
    params, computed in float32 on one temporary and returned in ``out_dtype`` (the next
    convolution's input dtype). Whole-tensor ops: time-tiled versions (to stay in cache) were
    5-10x slower on the busy 2-core machine measured, each small op paying a thread wake-up.

    ``compute_dtype`` bfloat16 (between two bfloat16 convolutions, whose input it rounds to
    anyway): every op in bfloat16 on bfloat16 input, no cast passes — 1.4x faster on a
    ``[1, 128, 1, 524288]`` activation (memory-bound), +0.04 % audio error at full size."""

    def __init__(self, log_alpha: Tensor, log_beta: Tensor,
                 out_dtype: torch.dtype = torch.float32,
                 compute_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        alpha = log_alpha.exp().reshape(1, -1, 1, 1)
        inv_beta = 1.0 / (log_beta.exp().reshape(1, -1, 1, 1) + SNAKE_EPS)
        self.register_buffer("alpha", alpha.to(compute_dtype))
        self.register_buffer("inv_beta", inv_beta.to(compute_dtype))
        self.out_dtype = out_dtype

    def forward(self, x: Tensor) -> Tensor:  # [b, ch, 1, t] -> new tensor in out_dtype
        # mixed-dtype element-wise ops take torch's slow paths: cast first
        x = x.to(self.alpha.dtype)
        t = torch.mul(x, self.alpha)
        t.sin_()
        t.mul_(t)
        torch.addcmul(x, t, self.inv_beta, out=t)  # x + sin² · 1/(β+ε): one pass, not two
        return t if self.out_dtype == t.dtype else t.to(self.out_dtype)


def _cl(w: Tensor, dtype: torch.dtype) -> Tensor:
    """A conv weight ``[o, i, k]`` as ``[o, i, 1, k]`` channels-last in ``dtype``."""
    return w.unsqueeze(2).to(dtype).contiguous(memory_format=CL)


class Conv(nn.Module):
    """A 1-d convolution as a ``1 × k`` 2-d one on channels-last activations, on plain (folded)
    weights in ``dtype`` (its input must be in ``dtype``; the output is too)."""

    def __init__(self, weight: Tensor, bias: Tensor | None, dilation: int = 1,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.register_buffer("weight", _cl(weight, dtype))
        self.register_buffer("bias", None if bias is None else bias.to(dtype))
        self.dilation, self.pad = dilation, dilation * (weight.shape[-1] - 1) // 2
        self.dtype = dtype

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=(0, self.pad),
                        dilation=(1, self.dilation))


class Upsample(nn.Module):
    """``ConvTranspose1d(cin, cout, 2s, stride=s, padding=ceil(s/2))`` as a 2-d transposed
    convolution on channels-last activations, weights in ``dtype``."""

    def __init__(self, weight: Tensor, bias: Tensor, stride: int,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.register_buffer("weight", _cl(weight, dtype))
        self.register_buffer("bias", bias.to(dtype))
        self.stride, self.pad, self.dtype = stride, math.ceil(stride / 2), dtype

    def forward(self, x: Tensor) -> Tensor:  # [b, cin, 1, t] -> [b, cout, 1, t * s]
        return F.conv_transpose2d(x, self.weight, self.bias, stride=(1, self.stride),
                                  padding=(0, self.pad))


class ResidualUnit(nn.Module):
    """``x + conv1x1(snake(conv7_dilated(snake(x))))``; the sum is written into ``x``."""

    def __init__(self, w: dict[str, Tensor], name: str, dilation: int,
                 dtype: torch.dtype) -> None:
        super().__init__()
        self.snake1 = Snake(w[f"{name}.0.alpha"], w[f"{name}.0.beta"], dtype)
        self.conv1 = Conv(w[f"{name}.1.weight"], w[f"{name}.1.bias"], dilation, dtype)
        self.snake2 = Snake(w[f"{name}.2.alpha"], w[f"{name}.2.beta"], dtype, dtype)
        self.conv2 = Conv(w[f"{name}.3.weight"], w[f"{name}.3.bias"], 1, dtype)

    def forward(self, x: Tensor) -> Tensor:  # float32 x, owned by the decoder: updated in place
        return x.add_(self.conv2(self.snake2(self.conv1(self.snake1(x)))).float())


class FastOobleckDecoder(nn.Module):
    """``forward(z [b, d, n]) -> float32 [b, c, n * hop]`` from :class:`DecoderWeights`.

    ``residual_dtype`` (default float32): the dtype of the residual units' convolutions (inputs
    and weights; oneDNN accumulates in float32), 86 % of the FLOPs, and of the Snake between
    them. The input, upsampling and output convolutions, the other Snakes and the residual
    stream always stay float32: measured on the full-size architecture, each upsampling
    convolution in bfloat16 adds 0.4-0.65 % audio error (and was not faster) and the input one
    0.7 %, the residual units together far less (docs/performance-log.md)."""

    #: ``forward`` takes ``keep=`` (``rhythmflow.vae`` passes each window's kept frames)
    crops_to_keep = True

    def __init__(self, weights: DecoderWeights, *,
                 residual_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        cfg, w = weights.config, weights.tensors
        f32 = torch.float32
        self.config: OobleckConfig = cfg
        self.hop = cfg.hop
        self.residual_dtype = residual_dtype
        #: relative RMS audio error against float32 on the load-time probe window (None: not
        #: measured; set by :func:`eager_decoder`)
        self.probe_error: float | None = None
        self.conv_in = Conv(w["layers.0.weight"], w["layers.0.bias"], 1, f32)
        blocks = []
        for k in range(len(cfg.strides)):
            blk = f"layers.{k + 1}.layers"
            blocks.append(nn.Sequential(
                Snake(w[f"{blk}.0.alpha"], w[f"{blk}.0.beta"]),
                Upsample(w[f"{blk}.1.weight"], w[f"{blk}.1.bias"], cfg.strides[-1 - k]),
                *(ResidualUnit(w, f"{blk}.{r}.layers", d, residual_dtype)
                  for r, d in zip((2, 3, 4), (1, 3, 9), strict=True)),
            ))
        self.blocks = nn.Sequential(*blocks)
        last = len(cfg.strides) + 1
        self.snake_out = Snake(w[f"layers.{last}.alpha"], w[f"layers.{last}.beta"])
        self.conv_out = Conv(w[f"layers.{last + 1}.weight"], None, 1, f32)

    def describe(self) -> str:
        """``"float32"`` or e.g. ``"bfloat16 residual convolutions"``, for logs and reports."""
        if self.residual_dtype == torch.float32:
            return "float32"
        what = f"{str(self.residual_dtype).removeprefix('torch.')} residual convolutions"
        if self.probe_error is not None:
            what += f", {100 * self.probe_error:.2g} % audio error on a probe window"
        return what

    @torch.no_grad()
    def forward(self, z: Tensor, keep: tuple[int, int] | None = None) -> Tensor:
        """``z [b, d, n] -> [b, c, n * hop]``; with ``keep = (a, b)`` only the audio of latent
        frames ``[a, b)``, ``[b, c, (b - a) * hop]``: the last blocks (most of the work) then
        run on those frames plus :data:`CROP_HALO` frames each side instead of the whole
        window — a chunked decode discards each window's edges. Same audio as slicing the
        whole decode, up to float32 rounding (the kernels' blocking depends on the length)."""
        x = z.float().unsqueeze(2).contiguous(memory_format=CL)  # [b, d, 1, n]
        x = self.blocks[:CROP_AFTER](self.conv_in(x))
        if keep is not None:
            n, (a, b) = z.shape[-1], keep
            per = x.shape[-1] // n
            lo, hi = max(0, a - CROP_HALO), min(n, b + CROP_HALO)
            x = x[..., lo * per:hi * per].contiguous(memory_format=CL)
        y = self.conv_out(self.snake_out(self.blocks[CROP_AFTER:](x))).squeeze(2)
        if keep is not None:
            y = y[..., (a - lo) * self.hop:(b - lo) * self.hop]
        return y.contiguous()  # [b, c, frames * hop]


#: The eager decoder must match the file's TorchScript this closely on the probe window
#: (max abs difference / max abs audio): float32 rounding is ~3e-6 at full size.
EAGER_TOLERANCE = 1e-4
EAGER_PROBE_FRAMES = 3
#: A reduced-precision decoder is kept only when its audio on the probe window differs from the
#: float32 decoder's by at most this relative RMS error, measured on the loaded weights (random
#: full-size weights: 0.39 % with the bfloat16 residual units; the DiT's bfloat16 velocity
#: error, the class ``--dtype auto`` accepts, is 0.9-1.3 %).
VAE_LOW_PRECISION_LIMIT = 1e-2
#: Latent frames of the window that error is measured on (wider than the receptive field of 10
#: frames, so most of it is away from the zero padding; ~0.3 s at full size on a 2-core CPU).
ACCURACY_PROBE_FRAMES = 12


def eager_decoder(module: torch.jit.ScriptModule, *,
                  residual_dtype: torch.dtype = torch.float32,
                  limit: float = VAE_LOW_PRECISION_LIMIT) -> FastOobleckDecoder | None:
    """An eager :class:`~rhythmflow.model.oobleck_fast.FastOobleckDecoder` built strictly from
    ``module``'s parameters when they are an Oobleck decoder's and its float32 decode of a
    random :data:`EAGER_PROBE_FRAMES`-frame window matches ``decode_export`` within
    :data:`EAGER_TOLERANCE`; else None, with the reason logged (the caller keeps TorchScript).

    With a ``residual_dtype`` other than float32 a random :data:`ACCURACY_PROBE_FRAMES`-frame
    window is decoded both ways and the reduced-precision decoder is returned only when its
    audio's relative RMS error against float32 is at most ``limit``; else the float32 decoder,
    with a warning naming the error.
    The measured error is the decoder's ``probe_error``."""
    params = dict(module.named_parameters())
    if any(t.device.type != "cpu" for t in params.values()):
        log.info("VAE decode stays TorchScript: the eager decoder is for CPU weights")
        return None
    found = find_decoder(params)
    if isinstance(found, str):
        log.info("VAE decode stays TorchScript: the file's decoder is not Oobleck (%s)", found)
        return None
    fast = FastOobleckDecoder(found).eval()
    z = torch.randn(1, found.config.latent_dim, EAGER_PROBE_FRAMES,
                    generator=torch.Generator().manual_seed(0)).to(next(iter(params.values())).dtype)
    with torch.no_grad():
        try:
            ref = module.decode_export(z).float()
        except Exception:  # already probed by probe_vae; be safe
            return None
        got = fast(z)
    diff = float((got - ref).abs().max()) if got.shape == ref.shape else float("inf")
    scale = float(ref.abs().max()) or 1.0
    if not diff <= EAGER_TOLERANCE * scale:
        log.warning("VAE decode stays TorchScript: the eager Oobleck decoder differs from the "
                    "file's decode_export by %.3g (max |audio| %.3g) on a probe window", diff,
                    scale)
        return None
    log.debug("eager Oobleck decoder matches TorchScript to %.3g (max |audio| %.3g)", diff, scale)
    if residual_dtype == torch.float32:
        return fast
    low = FastOobleckDecoder(found, residual_dtype=residual_dtype).eval()
    z = torch.randn(1, found.config.latent_dim, ACCURACY_PROBE_FRAMES,
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = fast(z)
        err = float((low(z) - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30))
    low.probe_error = fast.probe_error = err
    if not err <= limit:
        log.warning("VAE decode stays float32: %s changes the audio of a probe window by %.2g %% "
                    "(relative RMS) on these weights, over the %.2g %% limit", low.describe(),
                    100 * err, 100 * limit)
        return fast
    return low  # load_vae logs its describe(), the measured error included
