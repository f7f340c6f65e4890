"""Dynamic int8 quantization of the DiT's big linear layers, for CPU inference.

Weights are quantized once per output channel (symmetric int8); activations are quantized per
call from their observed range (dynamic quantization, one scale per tensor) and the product runs
in an int8 GEMM kernel, returning float32. Only the transformer layers' projections (q/k/v/o and
the MLP — more than 99 % of the FLOPs) are converted; embeddings, convolutions, norms and the
output head stay float32.

Two kernels (``kernel=``), chosen per CPU by :func:`default_kernel`:

* ``"fbgemm"`` — torch's x86/fbgemm dynamic linear with 7-bit activations (``reduce_range``):
  fbgemm's AVX2 kernel without VNNI accumulates pairs in int16 and would saturate on 8 bits.
* ``"onednn"`` — the same operator prepacked for oneDNN, 8-bit activations: on a CPU with AMX
  its int8 ``brg_matmul:amx`` kernel runs; no int16 step, so the full 8 bits are safe. Measured
  on an AMX Xeon (docs/performance-log.md, "int8 on AMX"): faster than fbgemm and than bfloat16 per
  product, and the per-product error falls from 2.3 % to 1.35 % (the 8th bit).

By default :mod:`rhythmflow.model.smoothquant` first rescales input channels (SmoothQuant,
per-channel RMS, alpha 0.25), folded into the norms and the preceding projections: nothing is added per call;
and q/k/v, gate/up run as one int8 product each (:class:`Int8Attention`, :class:`Int8MLP`:
the shared input is quantized once; the same numbers as separate layers).

Quantize *after* loading: official checkpoints load strictly into the float32 model, then
:func:`quantize_int8` swaps the modules in place. The quantized model cannot be saved back as an
official checkpoint (save the float32 weights instead).
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rhythmflow.errors import UsageError
from rhythmflow.model.blocks import MLP, SelfAttention, attend

log = logging.getLogger(__name__)

_ENGINES = ("x86", "fbgemm")
KERNELS = ("fbgemm", "onednn")
#: SmoothQuant defaults: migration strength and calibration statistic. Measured on the random
#: full-width model (docs/performance-log.md): per-channel RMS with alpha 0.25 lowered the velocity
#: error by 15-17 % at 512 and 2048 frames; the paper's max with alpha 0.5, calibrated on 128
#: frames, helped at 512 frames but not at 2048 (maxima of few tokens are noisy estimates).
SMOOTH_ALPHA = 0.25
SMOOTH_STATISTIC = "rms"


@contextlib.contextmanager
def _engine(name: str | None):
    """Run the block with torch's quantized engine set to ``name`` (None: unchanged)."""
    saved = torch.backends.quantized.engine
    if name is not None:
        torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = saved


class Int8DynamicLinear(nn.Module):
    """``y = x·Wᵀ + b`` with W stored as int8 and x quantized per call (float32 out).

    ``reduce_range``: 7-bit activations (the fbgemm kernel's need); the prepacked weight carries
    its kernel (fbgemm or oneDNN), so the process-wide quantized engine does not matter at call
    time.
    """

    def __init__(self, in_features: int, out_features: int, packed: object, bias: bool,
                 reduce_range: bool = True, kernel: str = "fbgemm") -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._packed = packed
        self.has_bias = bias
        self.reduce_range = reduce_range
        self.kernel = kernel

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, *, kernel: str = "fbgemm",
                    per_channel: bool = True) -> Int8DynamicLinear:
        """Quantize a float32 ``nn.Linear`` (the source module is not modified).

        ``kernel`` "fbgemm" (7-bit activations), "onednn" (8-bit, AMX where the CPU has it) or
        (the plan picks per CPU with :func:`default_kernel`: ``Runtime.int8_kernel``);
        ``per_channel`` one weight scale per output channel (the default), else one per tensor.
        """
        if kernel not in KERNELS:
            raise ValueError(f"unknown int8 kernel {kernel!r}; use 'fbgemm' or 'onednn'")
        w = linear.weight.detach().float()
        bias = None if linear.bias is None else linear.bias.detach().float()
        with warnings.catch_warnings():  # torch warns its quantized-tensor API is deprecated
            warnings.simplefilter("ignore")
            if per_channel:
                scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
                zero = torch.zeros(w.shape[0], dtype=torch.int64)
                qw = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
            else:
                qw = torch.quantize_per_tensor(w, max(float(w.abs().max()) / 127.0, 1e-12), 0,
                                               torch.qint8)
            with _engine("onednn" if kernel == "onednn" else None):
                packed = torch.ops.quantized.linear_prepack(qw, bias)
        return cls(linear.in_features, linear.out_features, packed, bias is not None,
                   reduce_range=kernel == "fbgemm", kernel=kernel)

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.quantized.linear_dynamic(x, self._packed, self.reduce_range)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int8 "
                f"({self.kernel}, {7 if self.reduce_range else 8}-bit activations)")


def _concat(*linears: nn.Linear) -> nn.Linear:
    """One bias-free float32 ``nn.Linear`` whose output is the concatenation of ``linears``'."""
    out = nn.Linear(linears[0].in_features, sum(li.out_features for li in linears), bias=False)
    out.weight = nn.Parameter(torch.cat([li.weight.detach().float() for li in linears]),
                              requires_grad=False)
    return out


class Int8Attention(nn.Module):
    """:class:`~rhythmflow.model.blocks.SelfAttention` with q, k and v as ONE int8 product: its
    input is quantized once instead of three times. The same maths as SelfAttention; the same
    numbers as three separate int8 layers (one activation scale for the shared input, weight
    scales per output channel; ``test_fused_equals_separate_int8_layers``)."""

    def __init__(self, attn: SelfAttention, kernel: str) -> None:
        super().__init__()
        if any(li.bias is not None for li in (attn.q_proj, attn.k_proj, attn.v_proj)):
            raise ValueError("Int8Attention: q/k/v projections with bias are not supported")
        self.heads = attn.heads
        self.qkv = Int8DynamicLinear.from_linear(
            _concat(attn.q_proj, attn.k_proj, attn.v_proj), kernel=kernel)
        self.o_proj = Int8DynamicLinear.from_linear(attn.o_proj, kernel=kernel)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:  # cos, sin [n, k]
        q, k, v = self.qkv(x).split(x.shape[-1], dim=-1)  # [b, n, d] views of one product
        return self.o_proj(attend(q, k, v, cos, sin, self.heads))


class Int8MLP(nn.Module):
    """:class:`~rhythmflow.model.blocks.MLP` (SwiGLU) with gate and up as ONE int8 product."""

    def __init__(self, mlp: MLP, kernel: str) -> None:
        super().__init__()
        if any(li.bias is not None for li in (mlp.gate_proj, mlp.up_proj)):
            raise ValueError("Int8MLP: gate/up projections with bias are not supported")
        self.gate_up = Int8DynamicLinear.from_linear(_concat(mlp.gate_proj, mlp.up_proj),
                                                     kernel=kernel)
        self.down_proj = Int8DynamicLinear.from_linear(mlp.down_proj, kernel=kernel)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # [b, n, hidden] views
        return self.down_proj(F.silu(gate).mul_(up))


def available() -> bool:
    """Whether the active quantized engine is x86/fbgemm (the only one supported here)."""
    return torch.backends.quantized.engine in _ENGINES


def default_kernel(flags: tuple[str, ...]) -> str:
    """The int8 kernel for this CPU: "onednn" where it has AMX int8 (``amx_int8``) and torch has
    the oneDNN quantized engine — measured faster and more accurate there —, else "fbgemm" (the
    kernel measured on AVX2; VNNI-only CPUs are not measured yet and keep it). ``flags``: the
    CPU's ISA flags (the caller reads them: :func:`rhythmflow.machine.host.cpu_facts`)."""
    if "amx_int8" in flags and "onednn" in torch.backends.quantized.supported_engines:
        return "onednn"
    return "fbgemm"


def quantize_int8(model: nn.Module, *, kernel: str = "fbgemm", per_channel: bool = True,
                  smooth_alpha: float | None = SMOOTH_ALPHA,
                  smooth_statistic: str = SMOOTH_STATISTIC, fuse: bool = True) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``model.transformer_blocks`` by
    :class:`Int8DynamicLinear`, in place; returns the model.

    ``fuse`` (default): each block's attention and MLP become :class:`Int8Attention` and
    :class:`Int8MLP` (q/k/v one product, gate/up one product: 4 int8 layers per block instead of
    7, the same numbers, fewer activation quantizations); requires per-channel weights.

    ``kernel`` "fbgemm" or "onednn" (the plan picks per CPU: :func:`default_kernel`); ``per_channel`` weight
    scales per output channel (else per tensor, for comparison); ``smooth_alpha`` (default
    :data:`SMOOTH_ALPHA`; None: off) first rescales input channels SmoothQuant-style
    (:func:`rhythmflow.model.smoothquant.smooth_dit` with ``smooth_statistic``, calibrated on
    two random-input forwards of 128 frames, deterministic) — exact in float32, it only moves
    range from the activations into the per-channel quantized weights.

    The model must be float32 on the CPU (a loaded :class:`~rhythmflow.model.dit.DiT`); otherwise
    UsageError. Expect a relative velocity error of a few 1e-2 against float32.
    """
    params = list(model.parameters())
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
        raise UsageError(
            "int8 quantization needs a float32 model on the CPU; load it with "
            "dtype=torch.float32, device='cpu' (or set quantize=none)"
        )
    engine = torch.backends.quantized.engine
    if engine not in _ENGINES:
        raise UsageError(
            f"int8 quantization needs the x86/fbgemm engine, this process uses {engine!r}; "
            "set torch.backends.quantized.engine = 'x86' or set quantize=none"
        )
    if kernel not in KERNELS:
        raise UsageError(f"int8 kernel {kernel!r} unknown; choose one of {', '.join(KERNELS)}")
    if smooth_alpha is not None:
        from rhythmflow.model.smoothquant import smooth_dit

        smooth_dit(model, smooth_alpha, statistic=smooth_statistic)
    count = 0
    for block in model.transformer_blocks:  # one block at a time: its fp32 weights go at once
        if fuse and per_channel and type(block.self_attn) is SelfAttention \
                and type(block.mlp) is MLP:
            block.self_attn = Int8Attention(block.self_attn, kernel)
            block.mlp = Int8MLP(block.mlp, kernel)
            count += 7
            continue
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    setattr(parent, name, Int8DynamicLinear.from_linear(
                        child, kernel=kernel, per_channel=per_channel))
                    count += 1
    log.info("quantized %d linear layers to int8 (%s kernel%s%s)", count, kernel,
             "" if smooth_alpha is None else
             f", SmoothQuant {smooth_statistic} alpha {smooth_alpha}",
             ", q/k/v and gate/up fused" if fuse and per_channel else "")
    return model
