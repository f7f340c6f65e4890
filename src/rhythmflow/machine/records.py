"""The records of the machine probe: what one device measured (:class:`Probe`, one
:class:`Candidate` per arithmetic), as cached on disk and read by the policies
(:mod:`rhythmflow.machine.policy`). Data only: nothing here measures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rhythmflow.machine.forward import LayoutTiming

#: Bump when the measurement changes meaning (older cached probes are then re-measured).
#: 3: the guidance layout and the per-forward overhead are measured too.
#: 4: the int8 candidate runs the kernel ``--quantize int8`` uses (oneDNN 8-bit on AMX CPUs).
#: 5: the VAE decoder's convolution is timed per dtype (:mod:`rhythmflow.machine.vae_probe`).
PROBE_VERSION = 5
TOKENS = 256
DIM, FF = 2048, 8192
#: One layer: 4 products [n×d]·[d×d] (q, k, v, o) and 3 of [n×d]·[d×ff] size (gate, up, down).
LAYER_SHAPES = ((DIM, DIM, 4), (DIM, FF, 3))


@dataclass(frozen=True)
class Candidate:
    """One arithmetic measured on this machine."""

    dtype: str  # "float32" | "bfloat16" | "float16" | "int8"
    seconds: float  # one layer's GEMMs at TOKENS tokens
    speedup_vs_float32: float
    rel_error: float  # relative RMS error of the products against float32
    error_class: str  # "exact" | "low-precision" | "quantized"
    finite: bool = True  # no overflow (inf/nan) in the product
    scaled: bool = False  # timed on a shorter product and scaled (too slow to repeat)


@dataclass(frozen=True)
class Probe:
    """What a policy needs to know about one device of this machine.

    ``kind`` "cpu" | "cuda" | "mps"; ``name`` the CPU model or GPU name; ``flags`` the ISA flags
    of :data:`ISA_FLAGS` the CPU has; ``bf16_supported`` for GPUs; ``candidates`` the measured
    arithmetic (empty when nothing was timed).
    """

    kind: str
    name: str
    flags: tuple[str, ...] = ()
    torch_version: str = ""
    threads: int = 0
    bf16_supported: bool = False
    candidates: tuple[Candidate, ...] = ()
    measured_at: str = ""
    seconds_taken: float = 0.0
    version: int = PROBE_VERSION
    extra: dict = field(default_factory=dict)
    #: the guidance layout measured per length (:mod:`rhythmflow.machine.forward`) in this dtype
    layout_dtype: str = ""
    layouts: tuple[LayoutTiming, ...] = ()
    #: seconds of one forward beyond its FLOPs: fixed, and per decoder layer
    forward_overhead: float = 0.0
    layer_overhead: float = 0.0
    #: GFLOP/s of the VAE decoder's convolution per dtype (:mod:`rhythmflow.machine.vae_probe`)
    vae_gflops: dict = field(default_factory=dict)

    def candidate(self, dtype: str) -> Candidate | None:
        return next((c for c in self.candidates if c.dtype == dtype), None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Probe:
        d = dict(d)
        d["flags"] = tuple(d.get("flags", ()))
        d["candidates"] = tuple(Candidate(**c) for c in d.get("candidates", ()))
        d["layouts"] = tuple(LayoutTiming(**t) for t in d.get("layouts", ()))
        return cls(**d)


def probe_gflops(probe: Probe) -> dict[str, float]:
    """GFLOP/s of each measured candidate (one layer's products at :data:`TOKENS` tokens)."""
    flops = sum(2 * TOKENS * k * n * count for k, n, count in LAYER_SHAPES)
    return {c.dtype: round(flops / c.seconds / 1e9, 1) for c in probe.candidates if c.seconds > 0}
