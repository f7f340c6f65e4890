"""The machine probe: which arithmetic is fastest *and* accurate enough here, measured once.

A probe times the candidate arithmetic of the DiT — float32, bfloat16, float16 and dynamic int8
— on one transformer layer's GEMMs at model shapes (the q/k/v/o ``[n×2048]·[2048×2048]`` and the
gate/up/down ``[n×2048]·[2048×8192]`` products, n = 256 tokens) with the chosen thread count.
Candidates are interleaved round by round and keep their fastest round, so a busy spell does not
land on one candidate; one that is very slow on a tiny scout product is scaled from it rather
than repeated. It records, per candidate, seconds per layer, the speed-up over float32, the
relative RMS error of the product against float32, and the *error class* that error puts it in
(what the full-size velocity error of that class is, measured once on the full-size model, see
docs/performance-log.md). In the dtype ``auto`` picks it then measures the guidance layout per length
and the fixed per-forward overhead (:mod:`rhythmflow.machine.forward`). The whole probe aims at
:data:`TOTAL_BUDGET` seconds on a quiet machine: the layout pairs that do not fit are skipped.
The result is cached as JSON under the user's cache folder
(``RHYTHMFLOW_CACHE_DIR`` or ``$XDG_CACHE_HOME/rhythmflow``, ``probe/<key>.json``), keyed by CPU
model, relevant ISA flags, torch version and thread count, so ``generate``, ``serve`` and
``diagnose`` reuse it and ``rhythmflow diagnose --refresh`` re-measures.

The policies are pure functions of recorded data (unit-testable with recorded probes from other
machines), in :mod:`rhythmflow.machine.policy` and :mod:`rhythmflow.machine.forward`, re-exported
here: :func:`choose_cpu_dtype`, :func:`choose_gpu_dtype`, :func:`choose_dtype` and
:func:`choose_guidance_layout`. Nothing here runs at import; :func:`load_or_measure` is the only
function that measures, and only when no cached probe matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rhythmflow.machine.forward import LayoutTiming, choose_guidance_layout  # noqa: F401 (API)
from rhythmflow.machine.host import ISA_FLAGS, cpu_facts  # noqa: F401 (API)
from rhythmflow.machine.policy import (  # noqa: F401 (the policies are part of this module's API)
    AUTO_DTYPES,
    CANDIDATES,
    EXACT_LIMIT,
    FP16_MARGIN,
    LOW_PRECISION_LIMIT,
    MIN_SPEEDUP,
    choose_cpu_dtype,
    choose_dtype,
    choose_gpu_dtype,
    error_class,
)
from rhythmflow.machine.records import (  # noqa: F401 (the records are part of this module's API)
    DIM,
    FF,
    LAYER_SHAPES,
    PROBE_VERSION,
    TOKENS,
    Candidate,
    Probe,
    probe_gflops,
)

log = logging.getLogger(__name__)

#: A candidate whose layer on SCOUT_TOKENS tokens is more than SCOUT_SLOWER times slower than
#: float32's (float16 emulated on AVX2 CPUs: ~40x) is not timed further: its time is scaled from
#: the scout (``Candidate.scaled``), keeping the probe within a few seconds everywhere.
SCOUT_TOKENS = 8
SCOUT_SLOWER = 8.0
#: Rows of each product the error is computed on (a statistic: more rows only cost time).
ERROR_ROWS = 64
#: Seconds of interleaved dtype timing rounds (after at least 2 rounds the probe stops once
#: this much has passed).
PROBE_BUDGET = 0.5
#: Seconds the whole probe aims at (a quiet machine; it measured 2.2–3.0 s with this aim on the
#: quiet 2-core AMX Xeon, torch already imported); the layout pairs that would overrun it are
#: skipped, but the layout part always gets at least MIN_LAYOUT_BUDGET.
TOTAL_BUDGET = 2.7
MIN_LAYOUT_BUDGET = 0.8


# --------------------------------------------------------------------------- measuring


def machine_key(threads: int) -> str:
    """Cache key: CPU model + ISA flags + torch version + threads + probe version."""
    import torch

    name, flags = cpu_facts()
    text = json.dumps([name, flags, torch.__version__, threads, PROBE_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(threads: int) -> Path:
    """Where this machine's probe at ``threads`` threads is cached."""
    from rhythmflow.assets import cache_root

    return cache_root() / "probe" / f"cpu-{machine_key(threads)}.json"


def _product(dtype: str, x, w, lin):
    import torch

    if dtype == "int8":
        from rhythmflow.model.quantize import Int8DynamicLinear

        q = Int8DynamicLinear.from_linear(lin)
        return lambda xs: q(xs)
    d = getattr(torch, dtype)
    wd = w.to(d)
    return lambda xs: torch.nn.functional.linear(xs.to(d), wd)


def measure_cpu(threads: int, *, budget: float = PROBE_BUDGET, max_rounds: int = 9,
                clock: Callable[[], float] = time.perf_counter,
                total_budget: float = TOTAL_BUDGET,
                layout_frames: Sequence[int] | None = None, overhead: bool = True,
                vae: bool = True) -> Probe:
    """Time and check every candidate on this CPU at ``threads`` threads, then the guidance
    layout and the per-forward overhead (about ``total_budget`` seconds on a quiet machine).

    The candidates are timed INTERLEAVED, round after round (float32, bfloat16, float16, int8,
    float32, …) until ``budget`` seconds of rounds have passed (at least 2 rounds), and each
    keeps its fastest round: on a shared machine other work only ever adds time, and interleaving
    spreads a busy spell over every candidate instead of one (the kernels were built by the
    scout's warm-up call, so round 0 counts). A candidate whose scout product on
    :data:`SCOUT_TOKENS` tokens (after a warm-up call) is :data:`SCOUT_SLOWER` times slower than
    float32's is not repeated: its time is scaled from the scout (``scaled=True``).

    Then, in the dtype ``--dtype auto`` would run (:func:`choose_cpu_dtype`), the guidance
    layout at ``layout_frames`` (default :data:`~rhythmflow.machine.forward.LAYOUT_FRAMES`; empty:
    not measured) within what is left of ``total_budget`` (at least :data:`MIN_LAYOUT_BUDGET`),
    and with ``overhead`` the fixed cost of a forward (:mod:`rhythmflow.machine.forward`); with
    ``vae`` the VAE decoder's convolution per dtype, before the layout (:mod:`rhythmflow.machine.vae_probe`,
    ~0.2 s).
    """
    import torch

    from rhythmflow.machine import forward as pf
    from rhythmflow.machine.vae_probe import measure_vae_convs
    from rhythmflow.model.quantize import available as int8_available

    start = clock()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(TOKENS, DIM, generator=gen)
        mats = []
        for k, n, count in LAYER_SHAPES:
            lin = torch.nn.Linear(k, n, bias=False, device="meta")  # no default init (0.1-0.3 s)
            lin.weight = torch.nn.Parameter(torch.randn(n, k, generator=gen) / k**0.5,
                                            requires_grad=False)
            mats.append((lin, count))
        names = [c for c in CANDIDATES if c != "int8" or int8_available()]
        with torch.inference_mode():
            out = _time_candidates(names, x, mats, budget, max_rounds, clock)
        base = out[0][1]
        cands = tuple(Candidate(d, sec, base / sec, rel, error_class(rel), fin, sc)
                      for d, sec, rel, fin, sc in out)
        name, flags = cpu_facts()
        probe = Probe("cpu", name, flags, torch.__version__, threads, "avx512_bf16" in flags
                      or "amx_bf16" in flags, cands)
        dtype, _ = choose_cpu_dtype(probe, dtypes=AUTO_DTYPES)
        with torch.inference_mode():
            vae_gflops = measure_vae_convs(clock=clock) if vae else {}
        layouts: tuple[LayoutTiming, ...] = ()
        frames = pf.LAYOUT_FRAMES if layout_frames is None else tuple(layout_frames)
        if frames:
            left = max(total_budget - (clock() - start), MIN_LAYOUT_BUDGET)
            call = pf.layer_call(dtype, mats[0][0].weight.detach(), mats[1][0].weight.detach())
            call("batched", SCOUT_TOKENS)  # kernel set-up on a short input
            call("split", SCOUT_TOKENS)
            layouts = pf.measure_layouts(call, budget=left, frames=frames, clock=clock)
        fixed, per_layer = pf.measure_overhead(clock=clock) if overhead else (0.0, 0.0)
    finally:
        torch.set_num_threads(before)
    taken = clock() - start
    probe = dataclasses.replace(
        probe, measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), seconds_taken=taken,
        layout_dtype=dtype if layouts else "", layouts=layouts, forward_overhead=fixed,
        layer_overhead=per_layer, vae_gflops=vae_gflops)
    log.info("machine probe (%d threads, %.1f s): %s; VAE convolution GFLOP/s %s; layout (%s) "
             "%s; overhead %.2g s + %.2g s/layer", threads, taken, ", ".join(
                 f"{c.dtype} {c.speedup_vs_float32:.2f}x err {c.rel_error:.1e}" for c in cands),
             vae_gflops or "not measured", dtype,
             ", ".join(f"{t.frames}: split/batched {t.split / max(t.batched, 1e-12):.2f}"
                       for t in layouts) or "not measured", fixed, per_layer)
    return probe


def _time_candidates(names, x, mats, budget, max_rounds, clock):
    """The interleaved dtype rounds of :func:`measure_cpu`: ``[(dtype, seconds per layer,
    relative error, finite, scaled)]`` in ``names`` order."""
    import torch

    fns = {d: [_product(d, x, lin.weight, lin) for lin, _ in mats] for d in names}
    best: dict[tuple[str, int], float] = {}
    outs: dict[tuple[str, int], torch.Tensor] = {}
    scaled: set[str] = set()
    scouts: dict[str, float] = {}
    for d in names:  # scout: kernel set-up, and the speed of a slow arithmetic
        scout = 0.0
        for i, fn in enumerate(fns[d]):
            fn(x[:SCOUT_TOKENS])  # the first call of a shape builds its kernel
            t0 = clock()
            outs[d, i] = fn(x[:SCOUT_TOKENS]).float()
            t = clock() - t0
            scout += t * mats[i][1]
            best[d, i] = t * TOKENS / SCOUT_TOKENS  # pessimistic: weights re-read
        scouts[d] = scout
        if d != "float32" and scout > SCOUT_SLOWER * scouts["float32"]:
            scaled.add(d)
    rounds_start = clock()
    for r in range(max_rounds):
        if r >= 2 and clock() - rounds_start > budget:
            break
        for d in names:
            if d in scaled:
                continue
            for i, fn in enumerate(fns[d]):
                t0 = clock()
                y = fn(x)
                t = clock() - t0
                if r == 0:  # replaces the scout's estimate; keeps the full output
                    best[d, i] = t
                    outs[d, i] = y[:ERROR_ROWS].float()
                else:
                    best[d, i] = min(best[d, i], t)
    out = []
    for d in names:
        err_num = err_den = 0.0
        finite = True
        for i in range(len(mats)):
            y, ref = outs[d, i], outs["float32", i]
            rows = min(y.shape[0], ref.shape[0], ERROR_ROWS)
            y, ref = y[:rows], ref[:rows]
            finite = finite and bool(torch.isfinite(y).all())
            err_num += float((y - ref).pow(2).sum())
            err_den += float(ref.pow(2).sum())
        seconds = sum(best[d, i] * mats[i][1] for i in range(len(mats)))
        rel = (err_num / err_den) ** 0.5 if err_den > 0 else 0.0
        out.append((d, seconds, rel, finite, d in scaled))
    return out


def load_or_measure(threads: int, refresh: bool = False) -> Probe:
    """This machine's CPU probe at ``threads`` threads: the cached one, or measured (and cached)
    when none matches or ``refresh``. A cache that cannot be read is re-measured; one that cannot
    be written is logged and skipped (the probe is still returned)."""
    path = cache_path(threads)
    if not refresh and path.is_file():
        try:
            probe = Probe.from_dict(json.loads(path.read_text(encoding="utf-8")))
            if probe.version == PROBE_VERSION and probe.threads == threads:
                return probe
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring unreadable machine probe %s (%s); measuring again", path, exc)
    probe = measure_cpu(threads)
    save(probe, path)
    return probe


def save(probe: Probe, path: Path) -> None:
    """Write ``probe`` to ``path`` atomically (:func:`rhythmflow.files.atomic_write_bytes`);
    failures are logged (the probe then runs again next time)."""
    from rhythmflow.errors import RhythmflowError
    from rhythmflow.files import atomic_write_bytes

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(probe.to_dict(), indent=1).encode("utf-8"))
    except (OSError, RhythmflowError) as exc:
        log.warning("could not cache the machine probe in %s (%s)", path, exc)
