"""The dtype policies of the machine probe: pure functions of a recorded :class:`Probe`.

Which arithmetic ``--dtype auto`` runs on a CPU (the fastest candidate whose measured error is
acceptable) or a GPU (bfloat16 where supported), and the sentence that says why. Unit-testable
with probes recorded on other machines; nothing here measures (see :mod:`rhythmflow.machine.probe`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rhythmflow.machine.records import Candidate, Probe

#: The arithmetic the probe measures, in its timing order.
CANDIDATES = ("float32", "bfloat16", "float16", "int8")
#: What ``--dtype auto`` may pick on a CPU (int8 is opt-in: ``--quantize int8``).
AUTO_DTYPES = ("float32", "bfloat16", "float16")
#: Relative RMS error of one probe product against float32, per error class. The velocity error
#: of the full-size model (random weights, 2048 frames, AMX Xeon) in each class: "exact" 0,
#: "low-precision" 1.3 % (bfloat16; float16 0.16 %) — the class every GPU user runs — and
#: "quantized" 4.6–4.9 % (per-tensor dynamic int8, 7-bit fbgemm; 2.2–2.4 % with the oneDNN 8-bit
#: kernel and SmoothQuant on AMX, product error 1.35 %: still this class, int8 stays opt-in).
EXACT_LIMIT = 1e-5
LOW_PRECISION_LIMIT = 1e-2
#: A lower precision must be at least this much faster than float32 to be chosen (noise guard).
MIN_SPEEDUP = 1.15
#: float16 is chosen over bfloat16 only when this much faster (bfloat16 has float32's range).
FP16_MARGIN = 1.10
#: What a dtype does to the *song*, not only to one velocity: relative RMS difference of a whole
#: 95 s song at 8 steps (audio) from the original's precision (float16 DiT + float32 TorchScript
#: VAE decode), identical random full-size weights, seed and noise (``benchmarks/song_dtype.py``,
#: Intel Xeon with AMX, docs/PERFORMANCE.md). Keyed by the DiT dtype (the VAE follows its
#: precision class by default: bfloat16 residual convolutions with a bfloat16 DiT).
SONG_ERROR = {"bfloat16": 0.046, "float32": 0.006}
SONG_ERROR_WHERE = "a 95 s song at 8 steps vs the original's float16 output"


def song_effect(dtype: str) -> str:
    """The measured effect of ``dtype`` on a whole song, for the plan's reason ("" if unknown)."""
    if dtype not in SONG_ERROR:
        return ""
    return f"{SONG_ERROR[dtype]:.1%} audio difference on {SONG_ERROR_WHERE}"


def error_class(rel_error: float) -> str:
    """The error class of a probe product's relative RMS error (see :data:`LOW_PRECISION_LIMIT`)."""
    if rel_error <= EXACT_LIMIT:
        return "exact"
    return "low-precision" if rel_error <= LOW_PRECISION_LIMIT else "quantized"


def _isa_note(probe: Probe, dtype: str) -> str:
    f = set(probe.flags)
    if dtype == "bfloat16":
        return "AMX" if "amx_bf16" in f else "AVX-512 BF16" if "avx512_bf16" in f else ""
    if dtype == "float16":
        return "AMX-FP16" if "amx_fp16" in f else "AVX-512 FP16" if "avx512_fp16" in f else ""
    if dtype == "int8":
        return "AMX" if "amx_int8" in f else "VNNI" if {"avx512_vnni", "avx_vnni"} & f else ""
    return ""


def _faster(c: Candidate, than: str, speed: float, isa: str) -> str:
    where = f"on this CPU ({isa})" if isa else "on this CPU"
    return f"{c.dtype}: {speed:.1f}x faster than {than} {where}"


def choose_cpu_dtype(probe: Probe | None, *, allow_int8: bool = False,
                     dtypes: Sequence[str] = CANDIDATES) -> tuple[str, str]:
    """The CPU dtype ``--dtype auto`` runs, and why: the fastest *acceptable* candidate.

    Acceptable: error class "exact" or "low-precision" and finite; float16 additionally only when
    it is the fastest by :data:`FP16_MARGIN` over every other acceptable candidate (bfloat16 has
    float32's range, float16 can overflow); "int8" only when ``allow_int8`` or when its measured
    error comes down into the low-precision class. A lower precision must beat float32 by
    :data:`MIN_SPEEDUP`. Without a probe (or without float32 in it): the measured-once rule,
    float32. Returns ``(dtype, reason)``; dtype is "float32", "bfloat16", "float16" or "int8"
    (int8 means: float32 model with dynamic int8 linear layers); only ``dtypes`` are considered.
    """
    if probe is None or probe.candidate("float32") is None:
        return "float32", "float32 on CPU (no machine probe; float16 is emulated on many CPUs)"
    ok = []
    for c in probe.candidates:
        if not c.finite or c.dtype == "float32" or c.dtype not in dtypes:
            continue
        if c.dtype == "int8" and not (allow_int8 or c.error_class != "quantized"):
            continue
        if c.dtype != "int8" and c.error_class == "quantized":
            continue
        if c.speedup_vs_float32 >= MIN_SPEEDUP:
            ok.append(c)
    fp16 = next((c for c in ok if c.dtype == "float16"), None)
    others = [c for c in ok if c.dtype != "float16"]
    if fp16 is not None and others:
        best_other = max(c.speedup_vs_float32 for c in others)
        if fp16.speedup_vs_float32 < FP16_MARGIN * best_other:
            ok.remove(fp16)
    if not ok:
        slow = ", ".join(f"{c.dtype} {c.speedup_vs_float32:.2f}x" for c in probe.candidates
                         if c.dtype != "float32")
        return "float32", f"float32: no faster acceptable arithmetic on this CPU ({slow})"
    best = max(ok, key=lambda c: c.speedup_vs_float32)
    reason = _faster(best, "float32", best.speedup_vs_float32, _isa_note(probe, best.dtype))
    if best.error_class != "exact":
        effect = song_effect(best.dtype)
        reason += (f" (product error {best.rel_error:.1e}, {best.error_class} class"
                   + (f"; {effect}" if effect else "") + ")")
    return best.dtype, reason


def choose_gpu_dtype(kind: str, bf16_supported: bool) -> tuple[str, str]:
    """The GPU dtype ``--dtype auto`` runs, and why: CUDA bfloat16 where supported, else float16;
    MPS float32 (the original runs MPS in float32)."""
    if kind == "cuda":
        if bf16_supported:
            return "bfloat16", "bfloat16: the GPU supports it (float16 range without overflow risk)"
        return "float16", "float16: the GPU has no bfloat16 support"
    if kind == "mps":
        return "float32", "float32 on MPS (the original also runs MPS in float32)"
    raise ValueError(f"choose_gpu_dtype: unknown GPU kind {kind!r}; use 'cuda' or 'mps'")


def choose_dtype(probe: Probe, *, allow_int8: bool = False) -> tuple[str, str]:
    """:func:`choose_cpu_dtype` or :func:`choose_gpu_dtype` by the probe's device kind."""
    if probe.kind == "cpu":
        return choose_cpu_dtype(probe, allow_int8=allow_int8)
    return choose_gpu_dtype(probe.kind, probe.bf16_supported)
