"""The VAE decoder in the machine probe: its convolutions timed per dtype, and the decode policy.

The Oobleck decoder (``rhythmflow.model.oobleck_fast``) spends most of its time in its residual
units' ``1 × 7`` dilated convolutions. The probe times one of them at decoder shapes
(:data:`CONV_CHANNELS` channels, :data:`CONV_STEPS` time steps, channels-last, the decoder's own
:class:`~rhythmflow.model.oobleck_fast.Conv`) in float32 and bfloat16, interleaved round by round,
each keeping its fastest round, and records GFLOP/s per dtype. :func:`choose_vae_dtype` turns
that into the decode dtype of a job and the sentence that says why; :func:`decode_seconds` into
the decode time of the estimate. Whether bfloat16 is *accurate enough* is not decided here: that
depends on the weights, and ``load_vae`` measures it on the loaded file
(:data:`rhythmflow.model.oobleck_fast.VAE_LOW_PRECISION_LIMIT`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rhythmflow.machine.policy import MIN_SPEEDUP
from rhythmflow.request import VAE_DTYPES  # noqa: F401 (re-exported)

#: The probe convolution: a residual unit's ``1 × 7`` convolution (dilation 3) of the decoder's
#: third block (256 channels), on 4096 time steps (2 latent frames there): ~19 ms in float32
#: and ~4.5 ms in bfloat16 on the 2-core AMX Xeon measured.
CONV_CHANNELS, CONV_KERNEL, CONV_DILATION, CONV_STEPS = 256, 7, 3, 4096
CONV_FLOP = 2 * CONV_CHANNELS * CONV_CHANNELS * CONV_KERNEL * CONV_STEPS
#: The scout convolution's length, and how much slower than float32 a dtype may be there before
#: it is not run at full size (as the DiT probe's scout: emulated arithmetic can be 10-50x).
SCOUT_STEPS = 256
SCOUT_SLOWER = 8.0
#: Share of the eager float32 decode's time that the bfloat16 option speeds up (the residual
#: units' convolutions and the Snake between them; the upsampling convolutions, the other Snakes
#: and the casts stay float32). Fitted on the full-size decoder at the fixed 256/32 windows,
#: 2-core AMX Xeon (``benchmarks/run.py --policy``): a whole 95 s decode took 54.3 s in float32
#: and 25.9 s in bfloat16 with a probe convolution ratio of 6.8 (0.55 with an earlier decoder at
#: a ratio of 4.1; docs/performance-log.md).
RESIDUAL_TIME_SHARE = 0.6
#: Decoder FLOP rate / the probe convolution's float32 rate: 0.64 (214 / 333 GFLOP/s) and 0.95
#: (193 / 203) in two runs on that CPU — the short probe keeps its fastest round, so a quiet
#: spell lifts it; the middle is used.
DECODER_EFFICIENCY = 0.75


def measure_vae_convs(*, rounds: int = 3, budget: float = 0.3,
                      clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """GFLOP/s of the probe convolution per dtype of :data:`VAE_DTYPES` at torch's current
    thread count. A scout on :data:`SCOUT_STEPS` steps first (after a warm-up call that builds
    the kernel): a dtype :data:`SCOUT_SLOWER` times slower than float32 there (bfloat16
    emulated on CPUs without bf16 units) keeps its scout rate and is not run at full size, so
    the probe stays short everywhere. Then ``rounds`` interleaved rounds (fewer once ``budget``
    seconds have passed, at least one), the fastest kept."""
    import torch

    from rhythmflow.machine.forward import fastest_rounds
    from rhythmflow.model.oobleck_fast import CL, Conv

    gen = torch.Generator().manual_seed(0)
    c = CONV_CHANNELS
    w = torch.randn(c, c, CONV_KERNEL, generator=gen) / (c * CONV_KERNEL) ** 0.5
    x = torch.randn(1, c, 1, CONV_STEPS, generator=gen).contiguous(memory_format=CL)
    convs = {d: Conv(w, torch.zeros(c), CONV_DILATION, getattr(torch, d)) for d in VAE_DTYPES}
    inputs = {d: x.to(getattr(torch, d)) for d in VAE_DTYPES}
    rates: dict[str, float] = {}
    scout: dict[str, float] = {}
    with torch.inference_mode():
        for d in VAE_DTYPES:
            small = inputs[d][..., :SCOUT_STEPS]
            convs[d](small)
            t0 = clock()
            convs[d](small)
            scout[d] = max(clock() - t0, 1e-9)
            if d != "float32" and scout[d] > SCOUT_SLOWER * scout["float32"]:
                rates[d] = round(CONV_FLOP * SCOUT_STEPS / CONV_STEPS / scout[d] / 1e9, 1)
        timed = [d for d in VAE_DTYPES if d not in rates]
        for d in timed:
            convs[d](inputs[d])  # the full-size kernel
        best = fastest_rounds([lambda d=d: convs[d](inputs[d]) for d in timed], budget=budget,
                              max_rounds=rounds, min_rounds=1, clock=clock)
    rates.update({d: round(CONV_FLOP / s / 1e9, 1) for d, s in zip(timed, best, strict=True)
                  if 0 < s < float("inf")})
    return {d: rates[d] for d in VAE_DTYPES if d in rates}


def choose_vae_dtype(vae_device: str, dit_dtype: str, vae_gflops: dict[str, float],
                     requested: str = "auto") -> tuple[str, str]:
    """The dtype of the VAE decoder's residual convolutions for a job, and why.

    ``requested`` "float32" or "bfloat16" is kept (bfloat16 only where the eager decoder runs,
    on the CPU). ``"auto"``: bfloat16 on the CPU when the job's DiT runs in a low precision
    (the user or the probe accepted that error class) and the probe measured the bfloat16
    convolution at least :data:`~rhythmflow.machine.policy.MIN_SPEEDUP` times faster than
    float32; float32 otherwise. Raises ValueError for a bfloat16 request off the CPU (the caller
    words it for its field)."""
    kind = vae_device.split(":")[0]
    if requested == "float32":
        return "float32", "VAE decode float32: requested"
    if requested == "bfloat16":
        if kind != "cpu":
            raise ValueError(f"bfloat16 residual convolutions are an option of the CPU decoder; "
                             f"this VAE runs on {vae_device} (use float32 or auto)")
        return "bfloat16", ("VAE decode: bfloat16 residual convolutions: requested (kept only "
                            "if accurate on the loaded weights)")
    if kind != "cpu":
        return "float32", f"VAE decode float32: the file's TorchScript decoder on {kind}"
    if dit_dtype == "float32":
        return "float32", "VAE decode float32: the DiT runs float32 (no low precision accepted)"
    f32, b16 = vae_gflops.get("float32"), vae_gflops.get("bfloat16")
    if not f32 or not b16:
        return "float32", "VAE decode float32: its convolutions were not measured on this CPU"
    ratio = b16 / f32
    if ratio < MIN_SPEEDUP:
        return "float32", (f"VAE decode float32: bfloat16 convolutions measured {ratio:.2f}x "
                           "float32 on this CPU")
    return "bfloat16", (f"VAE decode: bfloat16 residual convolutions, measured {ratio:.1f}x "
                        f"faster than float32 on this CPU, as the DiT runs {dit_dtype} (kept "
                        "only if accurate on the loaded weights; the upsampling convolutions "
                        "and the residual stream stay float32)")


def decode_seconds(flop: float, vae_dtype: str, vae_gflops: dict[str, float]) -> float | None:
    """Seconds the eager CPU decoder takes for ``flop`` FLOPs of convolutions in ``vae_dtype``
    on a machine whose probe measured ``vae_gflops``; None when not measured."""
    f32 = vae_gflops.get("float32")
    if not f32:
        return None
    seconds = flop / (f32 * DECODER_EFFICIENCY * 1e9)
    b16 = vae_gflops.get("bfloat16")
    if vae_dtype == "bfloat16" and b16:
        seconds *= 1 - RESIDUAL_TIME_SHARE + RESIDUAL_TIME_SHARE * f32 / b16
    return seconds
