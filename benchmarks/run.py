"""rhythmflow CPU benchmarks: GEMM limit, full-size forward vs that limit, memory, int8, variants.

    python benchmarks/run.py                    # full run (~20-30 min on 2 cores)
    python benchmarks/run.py --quick            # a few minutes: 128 frames, depth-2 full width
    python benchmarks/run.py --frames 256 2048 --json out.json [--solvers]
    python benchmarks/run.py --policy --frames 512 --json out.json   # what --dtype auto picks

Prints Markdown tables and writes a JSON file with at least ``gemm_gflops`` (fp32 GEMM limit at
the model's dominant shape, measured in this run) and ``forward`` (a list of
``{frames, batch, dtype, seconds, gflop, gflops, ratio_to_gemm}``). Every forward is bracketed by
the reference GEMM and its ratio uses the mean of both brackets, so a busy machine lowers both
numbers together instead of corrupting the ratio. The model parts run in sub-processes
(``worker.py``, ``variants.py``) so peak-memory readings start clean.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import REF_SHAPE, machine, run_worker, table
from rhythmflow.machine.perf import forward_flops, measure_gemm_gflops
from rhythmflow.machine.process import keep_freed_memory
from rhythmflow.planner.cost import DIT_EFFICIENCY, estimate_job
from rhythmflow.specs import PRESETS

GEMM_SHAPES = {
    "gate/up [2048x2048]x[2048x8192]": REF_SHAPE,
    "q/k/v/o [2048x2048]x[2048x2048]": (2048, 2048, 2048),
    "down [2048x8192]x[8192x2048]": (2048, 8192, 2048),
    "fused q|k|v [2048x2048]x[2048x6144]": (2048, 2048, 6144),
    "fused gate|up [2048x2048]x[2048x16384]": (2048, 2048, 16384),
}
QUICK_SHAPES = {"gate/up [128x2048]x[2048x8192]": (128, 2048, 8192)}


def gemm_section(shapes: dict, rounds: int) -> dict:
    """GFLOP/s per shape and layout (linear / matmul / int8), interleaved over ``rounds``."""
    res: dict = {}
    for _ in range(rounds):
        for name, (m, k, n) in shapes.items():
            for layout in ("linear", "matmul", "int8"):
                g = measure_gemm_gflops(m, k, n, layout=layout, repeats=2)
                res.setdefault(name, {}).setdefault(layout, []).append(g)
    threads: dict = {}
    n0 = torch.get_num_threads()
    m, k, n = next(iter(shapes.values()))
    try:
        for _ in range(rounds):
            for t in sorted({1, n0}):
                torch.set_num_threads(t)
                threads.setdefault(str(t), []).append(measure_gemm_gflops(m, k, n, repeats=2))
    finally:
        torch.set_num_threads(n0)
    return {"shapes": res, "threads": threads}


def guidance_section(steps_list=(8, 16, 32), intervals=((0.1, 0.9), (0.25, 0.75))) -> list[dict]:
    """Model row-evaluations per song counted on the real sampler (tiny model, counting wrapper)."""
    from rhythmflow.sampling import SamplerSpec, make_grid, prepare_inputs, sample
    from rhythmflow.testing import random_dit

    model = random_dit()
    n = 16
    inputs = prepare_inputs(
        model,
        text=torch.zeros(1, n, dtype=torch.long),
        style=torch.randn(1, 512),
        negative_style=torch.randn(1, 512),
    )
    rows = []
    for steps in steps_list:
        settings = [("cfg 4, always", 4.0, None)]
        settings += [(f"cfg 4, interval {iv}", 4.0, iv) for iv in intervals]
        settings += [("cfg 0", 0.0, None)]
        for label, cfg, iv in settings:
            calls = {"forwards": 0, "rows": 0}

            def counting(x, t, c, calls=calls):
                calls["forwards"] += 1
                calls["rows"] += x.shape[0]
                return model(x, t, c)

            sample(counting, inputs, make_grid(steps),
                   SamplerSpec(cfg_strength=cfg, guidance_interval=iv), start=0)
            rows.append(
                {
                    "steps": steps,
                    "guidance": label,
                    **calls,
                    "saved_vs_full_cfg": 1 - calls["rows"] / (2 * steps),
                }
            )
    return rows


def estimates(gflops: float) -> list[dict]:
    """Expected DiT seconds for a 95 s and a 285 s song at the achieved model GFLOP/s."""
    out = []
    for label, preset, frames in (("95 s", "v1.2-base", 2048), ("285 s", "v1.2-full", 6144)):
        cfg = PRESETS[preset]
        for steps in (8, 16, 32):
            for guided in (True, False):
                s = estimate_job(cfg, frames, steps=steps, evals_per_step=1, guided=guided,
                                 gflops=gflops / DIT_EFFICIENCY).sampling
                out.append(
                    {
                        "song": label,
                        "frames": frames,
                        "steps": steps,
                        "cfg": guided,
                        "seconds": s,
                        "minutes": s / 60,
                    }
                )
    return out


def print_tables(r: dict) -> None:
    print(f"machine: {r['machine']}")
    print(f"fp32 GEMM limit {r['gemm_gflops']:.1f} GFLOP/s, int8 {r['int8_gemm_gflops']:.1f}")
    print(
        table(
            "GEMM GFLOP/s (median of interleaved rounds)",
            ["shape", "F.linear", "x @ W", "int8 dyn"],
            [
                [
                    k,
                    statistics.median(v["linear"]),
                    statistics.median(v["matmul"]),
                    statistics.median(v["int8"]),
                ]
                for k, v in r["gemm"]["shapes"].items()
            ],
        )
    )
    print(
        table(
            "GEMM threads",
            ["threads", "GFLOP/s runs"],
            [[k, ", ".join(f"{x:.0f}" for x in v)] for k, v in r["gemm"]["threads"].items()],
        )
    )
    if "forward" in r:
        print(
            table(
                "Forward (one evaluation; ratio = GFLOP/s over the mean of the bracketing GEMMs)",
                [
                    "frames",
                    "batch",
                    "dtype",
                    "wall s",
                    "GFLOP",
                    "GFLOP/s",
                    "GEMM",
                    "ratio",
                    "cpu s",
                    "GFLOP/s cpu",
                    "GEMM cpu",
                    "ratio cpu",
                    "peak RSS GiB",
                ],
                [
                    [
                        f["frames"],
                        f["batch"],
                        f["dtype"],
                        f["seconds"],
                        f["gflop"],
                        f["gflops"],
                        f"{f['gemm_before']:.0f}/{f['gemm_after']:.0f}",
                        f["ratio_to_gemm"],
                        f["cpu_seconds"],
                        f["gflops_cpu"],
                        f"{f['gemm_cpu_before']:.0f}/{f['gemm_cpu_after']:.0f}",
                        f["ratio_to_gemm_cpu"],
                        f["peak_rss_gib"],
                    ]
                    for f in r["forward"] + ([r["int8"]] if "int8" in r else [])
                ],
            )
        )
        b = r["breakdown"]
        print(
            table(
                f"Breakdown at {b['frames']} frames ({b['seconds']:.1f} s, GEMM {b['gemm']:.0f})",
                ["module", "s", "share", "GFLOP", "GFLOP/s"],
                [
                    [k, v["seconds"], v["share"], v["gflop"], v["gflops"] or "-"]
                    for k, v in sorted(b["groups"].items(), key=lambda kv: -kv[1]["seconds"])
                ],
            )
        )
        ld, fm = r["load"], r["forward_memory"]
        print(
            table(
                "Memory (GiB)",
                ["phase", "peak RSS", "peak anon", "fp32 weights"],
                [
                    [
                        "load fp16 ckpt -> fp32",
                        ld["peak_rss_gib"],
                        ld["peak_anon_gib"],
                        ld["weights_fp32_gib"],
                    ],
                    [
                        f"forward {fm['frames']} frames",
                        fm["peak_rss_gib"],
                        fm["peak_anon_gib"],
                        ld["weights_fp32_gib"],
                    ],
                ],
            )
        )
        print(f"load time: {ld['seconds']:.1f} s")
    if "int8" in r:
        q = r["int8"]
        print(
            f"\nint8 dynamic at {q['frames']} frames: speed-up {q['speedup_wall']:.2f}x wall, "
            f"{q['speedup_cpu']:.2f}x cpu; velocity rel. RMS error {q['rel_rms_error']:.3g}"
        )
    if "variants" in r:
        v = r["variants"]
        print(
            table(
                f"Layer variants at {v['variants']['frames']} frames (median s)",
                ["variant", "median s", "runs", "max rel diff"],
                [
                    [k, x["median"], ", ".join(f"{t:.2f}" for t in x["all"]), x["max_rel_diff"]]
                    for k, x in v["variants"]["variants"].items()
                ],
            )
        )
        for key in ("malloc", "threads", "dtypes"):
            print(
                table(
                    f"{key} ({v[key]['frames']} frames, s)",
                    ["setting", "runs"],
                    [[k, ", ".join(f"{t:.2f}" for t in x)] for k, x in v[key]["seconds"].items()],
                )
            )
        if "compile" in v:
            print(f"\ntorch.compile: {json.dumps(v['compile'])}")
    if "guidance" in r:
        print(
            table(
                "Evaluations per song (real sampler, counted)",
                ["steps", "guidance", "forwards", "rows", "saved"],
                [
                    [g["steps"], g["guidance"], g["forwards"], g["rows"], g["saved_vs_full_cfg"]]
                    for g in r["guidance"]
                ],
            )
        )
    if "estimates" in r:
        wall, cpu = r["estimates"]["wall"], r["estimates"]["cpu"]
        print(
            table(
                "Expected DiT minutes (euler; at the 2048-frame GFLOP/s of this run, wall | cpu)",
                ["song", "frames", "steps", "cfg", "min (wall)", "min (cpu)"],
                [
                    [e["song"], e["frames"], e["steps"], e["cfg"], e["minutes"], c["minutes"]]
                    for e, c in zip(wall, cpu, strict=True)
                ],
            )
        )
    if "solvers" in r:
        sv = r["solvers"]
        print(
            table(
                f"ODE error vs {sv['reference']} (depth {sv['depth']}, {sv['frames']} frames)",
                ["evaluations", "solver", "grid", "rel RMS error"],
                [[x["evals"], x["solver"], x["schedule"], x["rel_rms"]] for x in sv["rows"]],
            )
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=None)
    p.add_argument("--batch2", type=int, nargs="*", default=None, help="frames run at batch 2")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default="benchmark.json")
    p.add_argument("--workdir", default=None, help="where the fp16 checkpoint is written")
    p.add_argument(
        "--skip", nargs="*", default=[], choices=["gemm", "model", "variants", "guidance"]
    )
    p.add_argument("--solvers", action="store_true", help="also run solvers.py (slow)")
    p.add_argument("--model-json", help="reuse a `worker.py model` result instead of running it")
    p.add_argument("--variants-json", help="reuse a `variants.py all` result instead of running it")
    p.add_argument("--solvers-json", help="reuse a `solvers.py` result instead of running it")
    p.add_argument("--render", metavar="JSON", help="only print the tables of an earlier run")
    p.add_argument("--malloc", choices=["tuned", "default"], default="tuned")
    p.add_argument("--policy", action="store_true", help="only the dtype policy check on the "
                   "full-size model and the 95 s VAE decode (benchmarks/policy.py)")
    a = p.parse_args(argv)
    if a.policy:
        import policy

        policy.main(["--frames", str((a.frames or [512])[0]), "--json", a.json])
        return
    if a.render:
        print_tables(json.loads(Path(a.render).read_text(encoding="utf-8")))
        return
    if a.malloc == "tuned":
        keep_freed_memory()
    frames = a.frames or ([128] if a.quick else [256, 512, 1024, 2048])
    batch2 = a.batch2 if a.batch2 is not None else ([] if a.quick else [max(frames)])
    r: dict = {
        "machine": machine(),
        "quick": a.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if "gemm" not in a.skip:
        r["gemm"] = gemm_section(QUICK_SHAPES if a.quick else GEMM_SHAPES, 1 if a.quick else 2)
        ref = next(iter(r["gemm"]["shapes"].values()))
        r["gemm_gflops"] = statistics.median(ref["linear"])
        r["int8_gemm_gflops"] = statistics.median(ref["int8"])
    if a.model_json:
        r.update(json.loads(Path(a.model_json).read_text(encoding="utf-8")))
    elif "model" not in a.skip:
        with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
            ckpt = str(Path(tmp) / "dit_fp16.pt")
            depth = ["--depth", "2"] if a.quick else []
            r["build"] = run_worker("worker.py", ["build", "--ckpt", ckpt, *depth])
            m = run_worker(
                "worker.py",
                [
                    "model",
                    "--ckpt",
                    ckpt,
                    "--frames",
                    *map(str, frames),
                    "--batch2",
                    *map(str, batch2),
                    "--int8",
                    "--malloc",
                    a.malloc,
                ],
            )
        r.update(m)
    if a.variants_json:
        r["variants"] = json.loads(Path(a.variants_json).read_text(encoding="utf-8"))
    elif "variants" not in a.skip:
        vf = (
            ["--frames", "256", "--rounds", "1", "--no-compile"]
            if a.quick
            else ["--frames", "2048"]
        )
        r["variants"] = run_worker("variants.py", ["all", *vf, "--malloc", a.malloc])
    if "guidance" not in a.skip:
        r["guidance"] = guidance_section()
    if "forward" in r and "gemm_gflops" in r:
        big = max(r["forward"], key=lambda f: (f["frames"], -f["batch"]))
        if not a.quick:
            r["estimates"] = {"wall": estimates(big["gflops"]), "cpu": estimates(big["gflops_cpu"])}
        r["forward_flops_2048"] = forward_flops(PRESETS["v1.2-base"], 2048)
    if a.solvers_json:
        r["solvers"] = json.loads(Path(a.solvers_json).read_text(encoding="utf-8"))
    elif a.solvers:
        r["solvers"] = run_worker("solvers.py", ["--quick"] if a.quick else [])
    Path(a.json).write_text(json.dumps(r, indent=1), encoding="utf-8")
    print_tables(r)
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
