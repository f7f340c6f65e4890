"""int8 variants against float32 and bfloat16, side by side in one process (full width).

    python benchmarks/int8.py --frames 512 --depth 4 --rounds 2 [--parts gemm model] [--json out.json]

``--parts model``: the full-width random DiT (v1.2-base, ``--depth`` layers) once per variant, one
evaluation each, interleaved over ``rounds`` (a shared machine drifts; a warm-up round first),
with the relative RMS velocity error against float32 and the ratio to float32 and bfloat16 from
the same rounds, and the setup seconds (copy, calibration, quantization):

* ``float32`` / ``bfloat16``           — the model as rhythmflow runs it in that dtype
* ``int8 fbgemm 7-bit``                — ``--quantize int8`` before this benchmark (per-channel
                                          weights, per-tensor 7-bit activations, fbgemm)
* ``int8 fbgemm 7-bit, per-tensor W``  — one weight scale per tensor (what per-channel buys)
* ``int8 fbgemm 8-bit``                — fbgemm without ``reduce_range``
* ``int8 onednn 8-bit``                — the oneDNN kernel (AMX int8 where the CPU has it)
* ``int8 onednn 8-bit + SmoothQuant max a`` — input channels rescaled first (the paper's
                                          per-channel maxima, alpha ``--alphas``)
* ``... SmoothQuant rms 0.25, fused qkv/gate-up`` — per-channel RMS, alpha 0.25, q/k/v and
                                          gate/up as one product each: ``--quantize int8`` now
                                          on AMX CPUs
* ``w8 bf16 (int8pack)``               — weight-only int8, bfloat16 activations
                                          (``torch._weight_int8pack_mm``), ``--weight-only``

``--parts gemm``: the same arithmetic on one [m×2048]·[2048×8192] product (plus ``torch._int_mm`` with
per-token activation scales), best of ``--repeats``, error against float32.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time
import warnings

import torch
from torch import nn

from common import machine, rel_rms, table
from rhythmflow.machine.host import cpu_facts
from rhythmflow.machine.process import keep_freed_memory
from rhythmflow.model.inputs import model_inputs
from rhythmflow.model.quantize import Int8DynamicLinear, default_kernel, quantize_int8
from rhythmflow.specs import PRESETS
from rhythmflow.testing import random_dit


class WeightOnlyInt8(nn.Module):
    """Weight-only int8 (per output channel), bfloat16 activations: ``_weight_int8pack_mm``."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().amax(1) / 127).clamp(min=1e-12)
        self.register_buffer("wq", torch.round(w / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]).to(torch.bfloat16), self.wq,
                                      self.scale)
        return y.reshape(*shape[:-1], -1)


def weight_only(model: nn.Module) -> nn.Module:
    for block in model.transformer_blocks:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    setattr(parent, name, WeightOnlyInt8(child))
    return model


def variants(ref: nn.Module, alphas: list[float], with_weight_only: bool) -> dict[str, nn.Module]:
    def q(smooth_alpha=None, fuse=False, **kw):
        kw.setdefault("kernel", default_kernel(cpu_facts()[1]))
        return quantize_int8(copy.deepcopy(ref), smooth_alpha=smooth_alpha, fuse=fuse, **kw)

    builders = {"float32": lambda: ref,
                "bfloat16": lambda: copy.deepcopy(ref).to(torch.bfloat16),
                "int8 fbgemm 7-bit (before)": lambda: q(kernel="fbgemm"),
                "int8 fbgemm 7-bit, per-tensor W": lambda: q(kernel="fbgemm", per_channel=False),
                "int8 fbgemm 8-bit": lambda: _eight_bit(q(kernel="fbgemm")),
                "int8 onednn 8-bit": lambda: q(kernel="onednn")}
    for a in alphas:
        builders[f"int8 onednn 8-bit + SmoothQuant max {a}"] = (
            lambda a=a: q(kernel="onednn", smooth_alpha=a, smooth_statistic="max"))
    builders["int8 onednn 8-bit + SmoothQuant rms 0.25, fused qkv/gate-up"] = (
        lambda: q(kernel="onednn", smooth_alpha=0.25, smooth_statistic="rms", fuse=True))
    if with_weight_only:
        builders["w8 bf16 (int8pack)"] = lambda: weight_only(copy.deepcopy(ref).to(torch.bfloat16))
    out, setup = {}, {}
    for k, build in builders.items():  # setup: copy + calibration + quantization
        t0 = time.perf_counter()
        out[k] = build()
        setup[k] = time.perf_counter() - t0
    return out, setup


def _eight_bit(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, Int8DynamicLinear):
            m.reduce_range = False
    return model


@torch.inference_mode()
def bench_model(frames: int, depth: int, rounds: int, alphas: list[float],
                with_weight_only: bool) -> dict:
    cfg = dataclasses.replace(PRESETS["v1.2-base"], depth=depth)
    ref = random_dit(cfg)
    models, setup = variants(ref, alphas, with_weight_only)
    a = model_inputs(ref, frames, 1)
    x, t = a.pop("x"), a.pop("t")
    conds = {k: m.prepare(**a) for k, m in models.items()}
    secs: dict[str, list[float]] = {k: [] for k in models}
    outs: dict[str, torch.Tensor] = {}
    for r in range(rounds + 1):  # round 0: warm-up (kernel selection, allocator)
        for k, m in models.items():
            t0 = time.perf_counter()
            y = m(x, t, conds[k])
            s = time.perf_counter() - t0
            if r:
                secs[k].append(s)
            outs[k] = y.float()
    med = {k: statistics.median(v) for k, v in secs.items()}
    rows = [{"variant": k, "seconds": secs[k], "median": med[k], "best": min(secs[k]),
             "speedup_vs_float32": med["float32"] / med[k],
             "speedup_vs_bfloat16": med["bfloat16"] / med[k],
             "velocity_rel_error": rel_rms(outs[k], outs["float32"]), "setup_s": setup[k]}
            for k in models]
    print(table(f"one evaluation, {frames} frames, depth {depth} (full width), batch 1, "
                f"median of {rounds} alternating rounds",
                ["variant", "median s", "best s", "x fp32", "x bf16", "velocity rel. RMS",
                 "setup s"],
                [[r["variant"], r["median"], r["best"], r["speedup_vs_float32"],
                  r["speedup_vs_bfloat16"], f"{100 * r['velocity_rel_error']:.2f} %", r["setup_s"]]
                 for r in rows]))
    return {"frames": frames, "depth": depth, "rounds": rounds, "rows": rows}


@torch.inference_mode()
def bench_gemm(m: int, repeats: int) -> dict:
    k, n = 2048, 8192
    g = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=g)
    lin = nn.Linear(k, n, bias=False)
    lin.weight.copy_(torch.randn(n, k, generator=g) / k**0.5)
    ref = lin(x)
    w = lin.weight
    wb = w.bfloat16()
    scale = (w.abs().amax(1) / 127).clamp(min=1e-12)
    wq = torch.round(w / scale[:, None]).to(torch.int8)
    wqt = wq.t().contiguous()

    def int_mm_per_token(x):
        s = x.abs().amax(1, keepdim=True).clamp(min=1e-12) / 127
        return torch._int_mm(torch.round(x / s).to(torch.int8), wqt).float() * s * scale

    fbgemm = Int8DynamicLinear.from_linear(lin, kernel="fbgemm")
    onednn = Int8DynamicLinear.from_linear(lin, kernel="onednn")
    fns = {"float32": lambda: lin(x),
           "bfloat16 (cast included)": lambda: torch.nn.functional.linear(x.bfloat16(), wb),
           "int8 fbgemm 7-bit": lambda: fbgemm(x),
           "int8 fbgemm 8-bit": lambda: torch.ops.quantized.linear_dynamic(x, fbgemm._packed,
                                                                           False),
           "int8 onednn 8-bit": lambda: onednn(x),
           "int8 _int_mm per-token": lambda: int_mm_per_token(x),
           "w8 bf16 (int8pack)": lambda: torch._weight_int8pack_mm(x.bfloat16(), wq,
                                                                   scale.bfloat16())}
    best = {}
    errs = {}
    for r in range(repeats + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            y = fn()
            s = time.perf_counter() - t0
            if r:
                best[name] = min(best.get(name, s), s)
            else:
                errs[name] = rel_rms(y, ref)
    flops = 2 * m * k * n
    rows = [{"variant": k_, "seconds": best[k_], "gflops": flops / best[k_] / 1e9,
             "speedup_vs_float32": best["float32"] / best[k_],
             "speedup_vs_bfloat16": best["bfloat16 (cast included)"] / best[k_],
             "rel_error": errs[k_]} for k_ in fns]
    print(table(f"one product [{m}x{k}]·[{k}x{n}], best of {repeats}",
                ["variant", "ms", "GFLOP/s", "x fp32", "x bf16", "rel. RMS error"],
                [[r["variant"], 1e3 * r["seconds"], r["gflops"], r["speedup_vs_float32"],
                  r["speedup_vs_bfloat16"], f"{100 * r['rel_error']:.2f} %"] for r in rows]))
    return {"m": m, "k": k, "n": n, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", choices=["gemm", "model"], default=["gemm", "model"])
    p.add_argument("--frames", type=int, default=512)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--alphas", type=float, nargs="*", default=[0.5])
    p.add_argument("--weight-only", action="store_true",
                   help="also the weight-only int8 model (slow kernel: ~10x a bf16 product)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*quantiz.*")
    keep_freed_memory()
    out: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"CPU: {out['machine']['cpu']}; flags: {' '.join(out['machine']['isa'])}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if "gemm" in a.parts:
        out["gemm"] = bench_gemm(a.frames, a.repeats)
    if "model" in a.parts:
        out["model"] = bench_model(a.frames, a.depth, a.rounds, a.alphas, a.weight_only)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
