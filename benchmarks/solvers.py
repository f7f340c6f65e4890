"""ODE accuracy of the solvers at equal model evaluations, on a real (random-weight) velocity field.

    python benchmarks/solvers.py [--frames 64] [--depth 2] [--quick]

The field is the guided velocity (cfg 4, doubled batch) of a random DiT with the full width
(dim 2048, 32 heads, ff 8192) but reduced depth, on a short sequence — a full-depth, long run is
too slow on 2 cores. The reference is RK4 on a fine uniform grid; its own error is estimated
against RK4 with half the steps. Random weights say nothing about musical quality: this measures
ODE accuracy only and chooses no default. Prints one JSON line (tables go to stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from common import rel_rms
from rhythmflow.sampling import SamplerSpec, make_grid, prepare_inputs, sample
from rhythmflow.specs import PRESETS
from rhythmflow.testing import random_dit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--ref-steps", type=int, default=64)
    p.add_argument("--evals", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--quick", action="store_true", help="16 frames, depth 1, reference 16 steps")
    a = p.parse_args()
    if a.quick:
        a.frames, a.depth, a.ref_steps, a.evals = 16, 1, 16, [8, 16]
    cfg = dataclasses.replace(PRESETS["v1.2-base"], depth=a.depth)
    model = random_dit(cfg, seed=0)
    g = torch.Generator().manual_seed(5)
    n = a.frames
    inputs = prepare_inputs(
        model,
        text=torch.randint(0, cfg.text_num_embeds + 1, (1, n), generator=g),
        style=torch.nn.functional.normalize(torch.randn(1, 512, generator=g), dim=-1),
        negative_style=torch.nn.functional.normalize(torch.randn(1, 512, generator=g), dim=-1),
    )
    noise = torch.randn(1, n, cfg.mel_dim, generator=g)

    def run(solver: str, steps: int, schedule: str = "uniform") -> torch.Tensor:
        res = sample(
            model,
            inputs,
            make_grid(steps, schedule),
            SamplerSpec(solver=solver, cfg_strength=4.0),
            start=noise,
        )
        return res.latent

    t0 = time.perf_counter()
    ref = run("rk4", a.ref_steps)
    ref_half = run("rk4", a.ref_steps // 2)
    rows = []
    for evals in a.evals:
        for solver, per in (("euler", 1), ("midpoint", 2), ("heun", 2)):
            for schedule in ("uniform", "sway"):
                err = rel_rms(run(solver, evals // per, schedule), ref)
                rows.append(
                    {"evals": evals, "solver": solver, "schedule": schedule, "rel_rms": err}
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    out = {
        "frames": n,
        "depth": a.depth,
        "dim": cfg.dim,
        "cfg_strength": 4.0,
        "reference": f"rk4 {a.ref_steps} steps uniform ({4 * a.ref_steps} evaluations)",
        "reference_error_vs_half_steps": rel_rms(ref_half, ref),
        "rows": rows,
        "seconds": time.perf_counter() - t0,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
