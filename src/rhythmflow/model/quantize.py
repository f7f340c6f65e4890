"""Dynamic int8 quantization of the DiT's big linear layers, for CPU inference.

Weights are quantized once per output channel (symmetric int8); activations are quantized per
call from their observed range (dynamic quantization) and the product runs in the x86/fbgemm
int8 GEMM kernel, returning float32. Only the transformer layers' projections (q/k/v/o and the
MLP — more than 99 % of the FLOPs) are converted; embeddings, convolutions, norms and the output
head stay float32.

Quantize *after* loading: official checkpoints load strictly into the float32 model, then
:func:`quantize_int8` swaps the modules in place. The quantized model cannot be saved back as an
official checkpoint (save the float32 weights instead).
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import Tensor, nn

from rhythmflow.errors import UsageError

log = logging.getLogger(__name__)

_ENGINES = ("x86", "fbgemm")


class Int8DynamicLinear(nn.Module):
    """``y = x·Wᵀ + b`` with W stored as per-channel int8 and x quantized per call (float32 out)."""

    def __init__(self, in_features: int, out_features: int, packed: object, bias: bool) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._packed = packed
        self.has_bias = bias

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear) -> Int8DynamicLinear:
        """Quantize a float32 ``nn.Linear`` (the source module is not modified)."""
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
        zero = torch.zeros(w.shape[0], dtype=torch.int64)
        bias = None if linear.bias is None else linear.bias.detach().float()
        with warnings.catch_warnings():  # torch warns its quantized-tensor API is deprecated
            warnings.simplefilter("ignore")
            qw = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(qw, bias)
        return cls(linear.in_features, linear.out_features, packed, bias is not None)

    def forward(self, x: Tensor) -> Tensor:
        # reduce_range=True: fbgemm's int16 accumulation needs 7-bit activations on AVX2.
        return torch.ops.quantized.linear_dynamic(x, self._packed, True)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def available() -> bool:
    """Whether the active quantized engine is x86/fbgemm (the only one supported here)."""
    return torch.backends.quantized.engine in _ENGINES


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``model.transformer_blocks`` by
    :class:`Int8DynamicLinear`, in place; returns the model.

    The model must be float32 on the CPU (a loaded :class:`~rhythmflow.model.dit.DiT`); otherwise
    UsageError. Expect a relative velocity error of the order of 1e-2 against float32.
    """
    params = list(model.parameters())
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
        raise UsageError(
            "int8 quantization needs a float32 model on the CPU; load it with "
            "dtype=torch.float32, device='cpu' (or drop --quantize int8)"
        )
    engine = torch.backends.quantized.engine
    if engine not in _ENGINES:
        raise UsageError(
            f"int8 quantization needs the x86/fbgemm engine, this process uses {engine!r}; "
            "set torch.backends.quantized.engine = 'x86' or drop --quantize int8"
        )
    count = 0
    for block in model.transformer_blocks:  # one block at a time: its fp32 weights go at once
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    setattr(parent, name, Int8DynamicLinear.from_linear(child))
                    count += 1
    log.info("quantized %d linear layers to int8 (%s engine)", count, engine)
    return model
