"""Device / dtype / threads policy, resolved once per run with the reasons written down.

Nothing here runs at import. :func:`rhythmflow.planner.core.resolve_runtime` inspects the machine when called;
:func:`configure_process` is the only function with a process-wide effect, and only entry points
call it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from rhythmflow import specs
from rhythmflow.request import DTYPE_ALIASES

log = logging.getLogger(__name__)

DTYPES = DTYPE_ALIASES  # the request's vocabulary (rhythmflow.request owns it)
DEFAULT_STEPS = specs.DEFAULT_STEPS


@dataclass(frozen=True)
class Runtime:
    """Resolved execution settings; ``reasons`` says why each was chosen (printed by the CLI)."""

    device: str  # "cpu", "cuda", "cuda:1", "mps"
    dtype: str  # "float32" | "float16" | "bfloat16"
    threads: int
    vae_device: str
    default_steps: int
    reasons: tuple[str, ...] = field(default=())
    #: the VAE decoder's residual convolutions: "float32" or "bfloat16" (the eager CPU decoder;
    #: kept only where accurate on the loaded weights, see ``rhythmflow.vae.load_vae``)
    vae_dtype: str = "float32"
    #: the int8 kernel ``quantize int8`` uses on this CPU (:func:`rhythmflow.model.quantize.default_kernel`)
    int8_kernel: str = "fbgemm"

    @property
    def kind(self) -> str:
        return self.device.split(":")[0]

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def describe(self) -> str:
        return (f"device={self.device} dtype={self.dtype} threads={self.threads} "
                f"vae_device={self.vae_device} vae_dtype={self.vae_dtype} "
                f"default_steps={self.default_steps}")
