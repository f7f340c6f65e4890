"""Forward-level parts of the machine probe: the guidance layout and the per-forward overhead.

Both are measured by :func:`rhythmflow.machine.probe.measure_cpu` after the dtype candidates, inside the
probe's time budget, and cached with it.

* **Guidance layout** (:func:`measure_layouts`): one guided evaluation as one forward on the
  doubled batch ("batched") against two batch-1 forwards ("split"), on ONE full-width decoder
  layer (dim 2048, 32 heads, SwiGLU 8192; the effect is per layer: docs/performance-log.md) in the
  chosen CPU dtype, with the residual stream in float32 as ``DiT.forward`` runs it. Lengths are
  measured in the order of :data:`LAYOUT_FRAMES` as alternating pairs (batched then split; a
  second pair split then batched), the first pair always and every later one only when its
  predicted cost still fits the budget, so a slow or busy machine measures fewer lengths
  instead of taking longer (:func:`measure_layouts`). Each layout keeps its fastest call. The
  layer reuses the probe's weight matrices (q/k/v/o share one, gate/up another, down its
  transpose): timing does not depend on the values.
* **Overhead** (:func:`measure_overhead`): the fixed cost of one forward that the FLOP-rate
  model cannot see (module dispatch, small kernels), from a width-64 DiT of depth 1 and 3 at 16
  frames, fitted as ``fixed + per_layer × depth`` (:func:`fit_overhead`).

Policies are pure functions of recorded data: :func:`choose_guidance_layout`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Lengths measured, in this order, as far as the budget allows: the cheapest, the default
#: 95 s song, then between (a full-width 2048-frame pair costs 1.24 TFLOP: ~1.8 s on a quiet
#: 2-core AMX CPU in bfloat16, so a 3 s probe there fits 256 and 1024 only; more cores fit all).
LAYOUT_FRAMES = (256, 2048, 1024)
#: "split" must be at least this much faster than "batched" to be chosen (a tie is "batched").
#: A noise guard like the dtype policy's: one full-width layer timed once or twice per length
#: varied by ±20 % between quiet probes here, and a layout that flips between refreshes changes
#: the bytes of a seed (the GEMM rounding differs); only a clear win switches.
LAYOUT_MARGIN = 1.15
#: Outside the measured lengths, the nearest one is used up to this factor away in length.
LAYOUT_REACH = 3.0
DIM, FF, HEADS, HEAD_DIM = 2048, 8192, 32, 64
#: Depths of the two tiny DiTs whose forward times give the overhead fit.
OVERHEAD_DEPTHS = (1, 3)
OVERHEAD_FRAMES = 16


@dataclass(frozen=True)
class LayoutTiming:
    """Measured seconds of one guided evaluation at ``frames``: one forward on the doubled batch
    ("batched") against two batch-``b`` forwards ("split"), same dtype, same machine."""

    frames: int
    batched: float
    split: float


def _log_ratio(t: LayoutTiming) -> float:
    """log(split / batched): below 0 split is faster."""
    return math.log(t.split / t.batched)


def choose_guidance_layout(frames: int, timings: Sequence[LayoutTiming] | None, *,
                           where: str = "on this CPU") -> tuple[str, str]:
    """"batched" or "split" for a guided evaluation at ``frames``, and why.

    The split/batched time ratio is interpolated (log ratio, log length) between the measured
    lengths around ``frames``; outside them the nearest measured length is used when it is at
    most :data:`LAYOUT_REACH` times longer or shorter. "split" needs to be :data:`LAYOUT_MARGIN`
    faster; a tie, or no measurement near ``frames``, is "batched" (one doubled forward, the
    original's layout). Both layouts compute the same maths; they differ by GEMM rounding.
    """
    ts = sorted((t for t in timings or () if t.batched > 0 and t.split > 0),
                key=lambda t: t.frames)
    if not ts:
        return "batched", "batched guidance (one doubled forward): no layout measurement"
    lo = [t for t in ts if t.frames <= frames]
    hi = [t for t in ts if t.frames >= frames]
    if lo and hi:
        a, b = lo[-1], hi[0]
        if a.frames == b.frames:
            log_r, at = _log_ratio(a), f"at {a.frames} frames"
        else:
            w = math.log(frames / a.frames) / math.log(b.frames / a.frames)
            log_r = (1 - w) * _log_ratio(a) + w * _log_ratio(b)
            at = f"at {frames} frames (interpolated between {a.frames} and {b.frames})"
    else:
        near = lo[-1] if lo else hi[0]
        if max(near.frames, frames) > LAYOUT_REACH * max(min(near.frames, frames), 1):
            measured = ", ".join(str(t.frames) for t in ts)
            return "batched", ("batched guidance (one doubled forward): no layout measurement "
                               f"near {frames} frames (measured at {measured})")
        log_r, at = _log_ratio(near), f"at {near.frames} frames"
    ratio = math.exp(log_r)  # split / batched
    if ratio * LAYOUT_MARGIN <= 1.0:
        return "split", (f"split guidance (two forwards): {1 / ratio:.2f}x faster than one "
                         f"doubled batch {at} {where}")
    if ratio >= 1.0:
        return "batched", (f"batched guidance (one doubled forward): {ratio:.2f}x faster than "
                           f"two forwards {at} {where}")
    return "batched", (f"batched guidance (one doubled forward): two forwards only "
                       f"{1 / ratio:.2f}x faster {at} {where}, within the "
                       f"{LAYOUT_MARGIN - 1:.0%} tie margin")


def layer_flops(frames: int, rows: int) -> int:
    """FLOPs of one full-width decoder layer on ``rows`` sequences of ``frames`` frames."""
    tok = rows * frames
    return 2 * tok * (4 * DIM * DIM + 3 * DIM * FF) + 4 * rows * frames * frames * DIM


def measure_layouts(call: Callable[[str, int], None], *, budget: float,
                    frames: Sequence[int] = LAYOUT_FRAMES,
                    clock: Callable[[], float]) -> tuple[LayoutTiming, ...]:
    """Time ``call(layout, frames)`` (one guided evaluation) for "batched" and "split".

    Pairs run in the order: the first length batched-then-split and split-then-batched (cheap;
    its second, warm pair makes the cost prediction sound), then every other length
    batched-then-split, then split-then-batched. The first pair always runs; every later one
    only when its predicted cost (twice :func:`layer_flops` × the seconds per FLOP of the
    faster call of the last pair) fits in what is left of ``budget`` seconds. Each layout keeps
    its fastest call; lengths never measured are left out.
    """
    ab, ba = ("batched", "split"), ("split", "batched")
    first, rest = list(frames[:1]), list(frames[1:])
    pairs = [(n, ab) for n in first] + [(n, ba) for n in first] + [(n, ab) for n in rest] + [
        (n, ba) for n in rest]
    start = clock()
    best: dict[tuple[int, str], float] = {}
    seconds_per_flop = 0.0
    for n, order in pairs:
        if best and clock() - start + 2 * layer_flops(n, 2) * seconds_per_flop > budget:
            continue
        took = []
        for layout in order:
            t0 = clock()
            call(layout, n)
            took.append(clock() - t0)
            best[n, layout] = min(best.get((n, layout), math.inf), took[-1])
        seconds_per_flop = min(took) / layer_flops(n, 2)  # a busy spell inflates one call
    return tuple(LayoutTiming(n, best[n, "batched"], best[n, "split"])
                 for n in sorted({n for n, _ in best}))


def layer_call(dtype: str, w_dd, w_fd) -> Callable[[str, int], None]:
    """A ``call(layout, frames)`` running one guided evaluation of a full-width decoder layer in
    ``dtype`` ("float32", "bfloat16", "float16"), built from the probe's [2048×2048] and
    [8192×2048] float32 weight matrices (shared between projections; values do not matter)."""
    import torch

    from rhythmflow.model.blocks import DecoderLayer, rope_tables

    d = getattr(torch, dtype)
    with torch.device("meta"):
        layer = DecoderLayer(DIM, HEADS, FF, 1e-5)
    dd, fd = w_dd.to(d), w_fd.to(d)
    state = {f"self_attn.{p}_proj.weight": dd for p in "qkvo"}
    state.update({"mlp.gate_proj.weight": fd, "mlp.up_proj.weight": fd,
                  "mlp.down_proj.weight": fd.t().contiguous(),
                  "input_layernorm.weight": torch.ones(DIM, dtype=d),
                  "post_attention_layernorm.weight": torch.ones(DIM, dtype=d)})
    layer.load_state_dict(state, assign=True)
    layer.eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    xs: dict[int, tuple] = {}

    def call(layout: str, frames: int) -> None:
        if frames not in xs:
            x = torch.randn(2, frames, DIM, generator=gen)  # float32 residual stream, as DiT
            xs.clear()
            xs[frames] = (x, *rope_tables(frames, HEAD_DIM, 10000.0, "cpu", d))
        x, cos, sin = xs[frames]
        with torch.inference_mode():
            if layout == "batched":
                layer(x, cos, sin)
            else:
                layer(x[:1], cos, sin)
                layer(x[1:], cos, sin)

    return call


def fastest_rounds(calls: Sequence[Callable[[], object]], *, budget: float, max_rounds: int,
                   min_rounds: int, clock: Callable[[], float]) -> list[float]:
    """The fastest seconds of each of ``calls``, run interleaved round by round (one call of
    each per round) until ``budget`` seconds have passed after at least ``min_rounds`` rounds,
    or ``max_rounds``: on a shared machine other work only ever adds time, and interleaving
    spreads a busy spell over every call instead of one."""
    best = [math.inf] * len(calls)
    start = clock()
    for r in range(max_rounds):
        if r >= min_rounds and clock() - start > budget:
            break
        for i, call in enumerate(calls):
            t0 = clock()
            call()
            best[i] = min(best[i], clock() - t0)
    return best


def fit_overhead(times: Sequence[float], depths: Sequence[int] = OVERHEAD_DEPTHS
                 ) -> tuple[float, float]:
    """(fixed seconds per forward, seconds per layer) from forward times of models that differ
    only in depth (least squares on two or more depths), both clamped at 0."""
    if len(times) != len(depths) or len(set(depths)) < 2:
        raise ValueError("fit_overhead needs one time per depth and at least two depths")
    md = sum(depths) / len(depths)
    mt = sum(times) / len(times)
    per_layer = (sum((d - md) * (t - mt) for d, t in zip(depths, times, strict=True))
                 / sum((d - md) ** 2 for d in depths))
    per_layer = max(per_layer, 0.0)
    return max(mt - per_layer * md, 0.0), per_layer


def measure_overhead(*, budget: float = 0.25, max_rounds: int = 9,
                     clock: Callable[[], float]) -> tuple[float, float]:
    """(fixed, per-layer) seconds of one forward that do not scale with FLOPs: width-64 DiTs of
    depth :data:`OVERHEAD_DEPTHS` at :data:`OVERHEAD_FRAMES` frames and batch 2, alternating
    round by round until ``budget`` seconds have passed (at least 2 rounds), fastest round
    each, fitted by :func:`fit_overhead`. On a loaded machine with several threads this is
    large (every small parallel region waits for a descheduled thread): it is what the run
    pays there too."""
    import dataclasses

    import torch

    from rhythmflow.model.dit import DiT
    from rhythmflow.model.inputs import model_inputs
    from rhythmflow.testing import TINY

    runs = []
    for depth in OVERHEAD_DEPTHS:
        # default initialisation on the CPU: random_dit builds on "meta", whose first use
        # imports torch._dynamo (seconds); the values do not matter here
        model = DiT(dataclasses.replace(TINY, depth=depth)).eval().requires_grad_(False)
        a = model_inputs(model, OVERHEAD_FRAMES, 2)
        x, t = a.pop("x"), a.pop("t")
        with torch.inference_mode():
            runs.append((model, x, t, model.prepare(**a)))
    with torch.inference_mode():
        best = fastest_rounds([functools.partial(*run) for run in runs], budget=budget,
                              max_rounds=max_rounds, min_rounds=2, clock=clock)
    return fit_overhead(best)
