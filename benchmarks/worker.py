"""Benchmark worker, run in its own process by run.py (clean peak-memory readings).

    python benchmarks/worker.py build  --ckpt PATH --preset NAME [--depth D]
    python benchmarks/worker.py model  --ckpt PATH --frames 256 512 ... [--batch2 2048]
                                       [--int8] [--malloc tuned|default]

``build`` writes a random full-width model as an fp16 ``.pt`` checkpoint (the release format).
``model`` loads it (timed, peak memory sampled), times forwards — each bracketed by the reference
GEMM, so the ratio survives a noisy machine — breaks the largest one down per module, samples
its peak memory and, with ``--int8``, times the quantized model and its velocity error.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict

import torch

from common import ref_gemm, rel_rms
from rhythmflow.machine.perf import PeakMemory, clock, forward_flops, param_bytes
from rhythmflow.machine.process import keep_freed_memory, release_freed_memory
from rhythmflow.model import load_checkpoint
from rhythmflow.model.inputs import model_inputs
from rhythmflow.specs import PRESETS
from rhythmflow.testing import random_dit, save_checkpoint

GiB = 1024**3


def build(args: argparse.Namespace) -> dict:
    cfg = PRESETS[args.preset]
    if args.depth:
        cfg = dataclasses.replace(cfg, depth=args.depth)
    t0 = time.perf_counter()
    model = random_dit(cfg, seed=0)
    save_checkpoint(model, args.ckpt, form="pt", dtype=torch.float16)
    return {"config": cfg.to_dict(), "seconds": time.perf_counter() - t0}


class ModuleTimer:
    """Wall time per module group via forward hooks (negligible cost at these sizes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._start: dict[int, float] = {}
        self._handles: list = []

    def attach(self, model: torch.nn.Module) -> None:
        groups = {
            "time_embed": "embeddings",
            "input_embed.conv_pos_embed": "convolutions",
            "norm_out": "output",
            "proj_out": "output",
        }
        for name, mod in model.named_modules():
            leaf = name.rsplit(".", 1)[-1]
            if name in groups:
                self._hook(mod, groups[name])
            elif leaf == "mlp":
                self._hook(mod, "mlp")
            elif leaf in ("q_proj", "k_proj", "v_proj", "o_proj"):
                self._hook(mod, "projections")
            elif leaf == "self_attn":
                self._hook(mod, "_self_attn")
            elif leaf in ("input_layernorm", "post_attention_layernorm"):
                self._hook(mod, "norms")

    def _hook(self, mod: torch.nn.Module, group: str) -> None:
        def pre(m, _):
            self._start[id(m)] = time.perf_counter()

        def post(m, _, __):
            self.seconds[group] += time.perf_counter() - self._start.pop(id(m))

        self._handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]

    def groups(self, total: float) -> dict[str, float]:
        s = dict(self.seconds)
        s["attention"] = s.pop("_self_attn", 0.0) - s.get("projections", 0.0)
        s["other"] = total - sum(s.values())
        return s

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def gemm_both() -> tuple[float, float]:
    """Reference GEMM GFLOP/s by wall clock and by CPU clock."""
    return ref_gemm(), ref_gemm(clock_kind="cpu")


@torch.inference_mode()
def bracketed(model, frames: int, batch: int, flops_cfg, timer: ModuleTimer | None = None) -> dict:
    """One forward between two reference-GEMM measurements, timed by wall and CPU clock.

    ``ratio_to_gemm`` compares wall-clock GFLOP/s with the mean wall-clock GEMM of the brackets;
    ``ratio_to_gemm_cpu`` does the same with CPU-clock numbers (steadier when the machine is
    shared). With ``timer`` the forward is also broken down per module (wall clock)."""
    w0, c0 = gemm_both()
    warm = model_inputs(model, min(frames, 64), batch)
    model(warm.pop("x"), warm.pop("t"), model.prepare(**warm))
    a = model_inputs(model, frames, batch)
    x, t = a.pop("x"), a.pop("t")
    cond = model.prepare(**a)
    if timer is not None:
        timer.attach(model)
    with PeakMemory() as mem:
        cpu0, wall0 = clock("cpu")(), time.perf_counter()
        v = model(x, t, cond)
        wall, cpu = time.perf_counter() - wall0, clock("cpu")() - cpu0
    if timer is not None:
        timer.remove()
    w1, c1 = gemm_both()
    flops = forward_flops(flops_cfg, frames, batch)["total"]
    rec = dict(
        frames=frames,
        batch=batch,
        dtype="float32",
        seconds=wall,
        gflop=flops / 1e9,
        gflops=flops / wall / 1e9,
        ratio_to_gemm=flops / wall / 1e9 / ((w0 + w1) / 2),
        cpu_seconds=cpu,
        gflops_cpu=flops / cpu / 1e9,
        ratio_to_gemm_cpu=flops / cpu / 1e9 / ((c0 + c1) / 2),
        gemm_before=w0,
        gemm_after=w1,
        gemm_cpu_before=c0,
        gemm_cpu_after=c1,
        peak_rss_gib=mem.peak_rss / GiB,
        peak_anon_gib=mem.peak_anon / GiB,
    )
    print(json.dumps(rec), flush=True, file=sys.stderr)
    rec["output"] = v
    return rec


@torch.inference_mode()
def model_run(args: argparse.Namespace) -> dict:
    tuned = args.malloc == "tuned" and keep_freed_memory()
    with PeakMemory() as load_mem:
        t0 = time.perf_counter()
        model = load_checkpoint(args.ckpt, dtype=torch.float32)
        load_s = time.perf_counter() - t0
    cfg = model.config
    out: dict = {
        "malloc_tuned": tuned,
        "config": cfg.to_dict(),
        "load": {
            "seconds": load_s,
            "peak_rss_gib": load_mem.peak_rss / GiB,
            "peak_anon_gib": load_mem.peak_anon / GiB,
            "start_rss_gib": load_mem.start_rss / GiB,
            "weights_fp32_gib": param_bytes(cfg) / GiB,
            "weights_fp16_gib": param_bytes(cfg, torch.float16) / GiB,
        },
    }
    big = max(args.frames)
    timer = ModuleTimer()
    forward = [bracketed(model, n, 1, cfg, timer if n == big else None) for n in args.frames]
    rec = next(f for f in forward if f["frames"] == big)
    fl = forward_flops(cfg, big, 1)
    out["breakdown"] = {
        "frames": big,
        "seconds": rec["seconds"],
        "gemm": (rec["gemm_before"] + rec["gemm_after"]) / 2,
        "groups": {
            g: {
                "seconds": s,
                "share": s / rec["seconds"],
                "gflop": fl.get(g, 0) / 1e9,
                "gflops": fl.get(g, 0) / s / 1e9 if s > 0 and g in fl else None,
            }
            for g, s in timer.groups(rec["seconds"]).items()
        },
    }
    out["forward_memory"] = {
        "frames": big,
        "peak_rss_gib": rec["peak_rss_gib"],
        "peak_anon_gib": rec["peak_anon_gib"],
        "weights_fp32_gib": param_bytes(cfg) / GiB,
    }
    for n in args.batch2:
        forward.append(bracketed(model, n, 2, cfg))
    if args.int8:
        out["int8"] = int8_run(model, cfg, rec)
    out["forward"] = [{k: v for k, v in f.items() if k != "output"} for f in forward]
    return out


@torch.inference_mode()
def int8_run(model, cfg, fp32: dict) -> dict:
    """Quantize in place, then time the same forward as the fp32 record ``fp32`` (same inputs,
    bracketed the same way) and compare the velocities (relative RMS)."""
    from rhythmflow.machine.host import cpu_facts
    from rhythmflow.model.quantize import default_kernel, quantize_int8

    quantize_int8(model, kernel=default_kernel(cpu_facts()[1]))
    release_freed_memory()  # the replaced fp32 weights stay resident under keep_freed_memory
    rec = bracketed(model, fp32["frames"], fp32["batch"], cfg)
    rec["dtype"] = "int8-dynamic"
    v, ref = rec.pop("output"), fp32.pop("output")
    rec["rel_rms_error"] = rel_rms(v, ref)
    rec["speedup_wall"] = fp32["seconds"] / rec["seconds"]
    rec["speedup_cpu"] = fp32["cpu_seconds"] / rec["cpu_seconds"]
    return rec


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["build", "model"])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--preset", default="v1.2-base")
    p.add_argument("--depth", type=int, default=0)
    p.add_argument("--frames", type=int, nargs="+", default=[256])
    p.add_argument("--batch2", type=int, nargs="*", default=[])
    p.add_argument("--int8", action="store_true")
    p.add_argument("--malloc", choices=["tuned", "default"], default="tuned")
    args = p.parse_args()
    result = build(args) if args.mode == "build" else model_run(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
