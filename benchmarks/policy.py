"""What ``--dtype auto`` picks on this machine, checked on the full-size model, and the VAE.

    python benchmarks/run.py --policy --frames 512 --json out.json     (the usual entry)
    python benchmarks/policy.py --frames 512 [--rounds 2] [--depth 16] [--json out.json]

1. The machine probe (:func:`rhythmflow.machine.probe.measure_cpu`, not the cached one) and the dtype
   :func:`rhythmflow.machine.probe.choose_cpu_dtype` picks from it.
2. One full-size evaluation (random weights, batch 1, ``--frames``) per candidate — float32,
   bfloat16, float16, int8 dynamic — interleaved over ``rounds``, with its speed-up over float32
   and its relative RMS velocity error against float32: does the probe's ranking hold?
3. The VAE decode of a 95 s song (2048 latent frames) at the fixed geometry, as ``load_vae``
   runs it on the CPU (the eager decoder of a full-size random Oobleck file) with float32 and
   bfloat16 residual convolutions: the whole decode timed per dtype, against the estimate from
   the probe's convolution rates, and what ``auto`` picks.

JSON: ``{"policy": {"chosen", "reason", "probe": {...}, "candidates": [{"dtype", "seconds",
"speedup_vs_float32", "velocity_rel_error", "probe_speedup"}, ...]}, "vae": {...}}``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import machine, rel_rms, table
from rhythmflow.machine.probe import AUTO_DTYPES, Probe, choose_cpu_dtype, measure_cpu
from rhythmflow.machine.process import keep_freed_memory
from rhythmflow.model.inputs import model_inputs
from rhythmflow.specs import PRESETS
from rhythmflow.testing import random_dit

SONG_FRAMES = 2048  # 95 s


@torch.inference_mode()
def candidates_section(frames: int, rounds: int, depth: int, threads: int) -> dict:
    from rhythmflow.machine.host import cpu_facts
    from rhythmflow.model.quantize import default_kernel, quantize_int8

    probe = measure_cpu(threads)
    chosen, reason = choose_cpu_dtype(probe)
    cfg = dataclasses.replace(PRESETS["v1.2-base"], depth=depth)
    ref_model = random_dit(cfg)
    models = {"float32": ref_model,
              "bfloat16": copy.deepcopy(ref_model).to(torch.bfloat16),
              "float16": copy.deepcopy(ref_model).to(torch.float16),
              "int8": quantize_int8(copy.deepcopy(ref_model),
                                      kernel=default_kernel(cpu_facts()[1]))}
    a = model_inputs(ref_model, frames, 1)
    x, t = a.pop("x"), a.pop("t")
    conds = {d: m.prepare(**a) for d, m in models.items()}
    for m in models.values():  # warm-up at a short length
        w = model_inputs(m, 32, 1)
        wx, wt = w.pop("x"), w.pop("t")
        m(wx, wt, m.prepare(**w))
    secs: dict[str, list[float]] = {d: [] for d in models}
    outs: dict[str, torch.Tensor] = {}
    for _ in range(rounds):
        for d, m in models.items():
            s = time.perf_counter()
            outs[d] = m(x, t, conds[d]).float()
            secs[d].append(time.perf_counter() - s)
    base = statistics.median(secs["float32"])
    rows = []
    for d in models:
        med = statistics.median(secs[d])
        pc = probe.candidate(d)
        rows.append({"dtype": d, "seconds": med, "all_seconds": secs[d],
                     "speedup_vs_float32": base / med,
                     "velocity_rel_error": rel_rms(outs[d], outs["float32"]),
                     "probe_speedup": None if pc is None else pc.speedup_vs_float32,
                     "probe_error_class": None if pc is None else pc.error_class})
    print(table(f"candidates: one full-size evaluation, {frames} frames, depth {depth}, batch 1 "
                f"(auto picks {chosen})", ["dtype", "seconds", "x fp32", "velocity rel. error",
                                           "probe x fp32", "probe class"],
                [[r["dtype"], r["seconds"], r["speedup_vs_float32"],
                  f"{r['velocity_rel_error']:.2e}", r["probe_speedup"], r["probe_error_class"]]
                 for r in rows]))
    print(f"auto: {reason}")
    return {"chosen": chosen, "reason": reason, "frames": frames, "depth": depth,
            "probe": probe.to_dict(), "candidates": rows}


@torch.inference_mode()
def vae_section(probe, dit_dtype: str, rounds: int = 1) -> dict:
    """The decode of a 95 s song as ``load_vae`` runs it on this CPU — the eager decoder of a
    full-size random Oobleck file, float32 and bfloat16 residual convolutions — against the
    estimate from the probe's convolution rates, and which one ``--vae-dtype auto`` picks."""
    from rhythmflow.machine.vae_probe import VAE_DTYPES, choose_vae_dtype, decode_seconds
    from rhythmflow.model.oobleck import FULL, random_decoder, save_scripted
    from rhythmflow.planner.cost import VAE_FLOP_PER_FRAME
    from rhythmflow.vae.codec import DECODE_GEOMETRY, chunk_windows, decoded_frames, load_vae

    g = DECODE_GEOMETRY
    chosen, why = choose_vae_dtype("cpu", dit_dtype, probe.vae_gflops)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_scripted(random_decoder(FULL), Path(tmp) / "vae.pt")
        vaes = {d: load_vae(path, residual_dtype=getattr(torch, d)) for d in VAE_DTYPES}
    z = torch.randn(1, FULL.latent_dim, SONG_FRAMES, generator=torch.Generator().manual_seed(0))
    for v in vaes.values():
        v.decode(z[..., :16])  # kernel set-up
    secs: dict[str, list[float]] = {d: [] for d in vaes}
    outs = {}
    for _ in range(rounds):
        for d, v in vaes.items():
            s = time.perf_counter()
            outs[d] = v.decode(z)
            secs[d].append(time.perf_counter() - s)
    wins = len(chunk_windows(SONG_FRAMES, g.chunk, g.overlap))
    flop = decoded_frames(SONG_FRAMES) * VAE_FLOP_PER_FRAME
    rows = [{"dtype": d, "decoder": v.decoder_kind, "windows": wins,
             "seconds_95s": statistics.median(secs[d]), "all_seconds": secs[d],
             "estimate_95s": decode_seconds(flop, d, probe.vae_gflops),
             "rel_error_vs_float32": rel_rms(outs[d], outs["float32"])}
            for d, v in vaes.items()]
    base = rows[0]["seconds_95s"]
    print(table(f"VAE decode of 95 s ({SONG_FRAMES} frames, {wins} windows of {g.chunk}, overlap "
                f"{g.overlap}; whole decode timed; auto picks {chosen})",
                ["residual convs", "decode s", "x float32", "estimate s", "audio rel. err"],
                [[r["dtype"], r["seconds_95s"], base / r["seconds_95s"], r["estimate_95s"],
                  f"{r['rel_error_vs_float32']:.1e}"] for r in rows]))
    print(f"VAE: {why}; probe convolution GFLOP/s {probe.vae_gflops}")
    return {"geometry": g.to_dict(), "chosen": chosen, "reason": why,
            "probe_gflops": probe.vae_gflops, "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[512])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--no-vae", action="store_true")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    keep_freed_memory()
    res: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    res["policy"] = candidates_section(a.frames[0], a.rounds, a.depth, a.threads)
    if not a.no_vae:
        probe = Probe.from_dict(res["policy"]["probe"])
        auto, _ = choose_cpu_dtype(probe, dtypes=AUTO_DTYPES)
        res["vae"] = vae_section(probe, auto)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
