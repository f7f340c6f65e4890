"""Which parts of the DiT stay float32 in a low-precision CPU run, and the guidance layout.

    python benchmarks/lowprec.py precision --frames 512 --rounds 2 [--depth 16]
    python benchmarks/lowprec.py layout --frames 256 1024 2048 --dtype bfloat16 --rounds 2

``precision``: the full-width random DiT in float32 (the reference) and in bfloat16 / float16,
one evaluation per variant, interleaved over ``rounds`` (a shared machine drifts), with the
relative RMS velocity error against float32:

* ``as-shipped``   — the model as rhythmflow runs it (norm statistics, RoPE and time sinusoids in
                     float32, position convolutions computed in float32, residual stream in
                     float32 since this benchmark chose it)
* ``bf16-residual`` — the residual stream in the model dtype (rhythmflow before)
* ``native-conv``  — the position convolutions in the model dtype (oneDNN kernel)
* ``f32-residual`` — the residual stream kept in float32, written out here (= as-shipped now)
* ``f32-output``   — the final AdaLN + output projection in float32 (residual in model dtype)

``layout``: one guided evaluation as one doubled-batch forward ("batched") against two
batch-1 forwards ("split"), the two alternating in every round; prints the ratio per length.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import statistics
import time

import torch

from common import machine, rel_rms, table
from rhythmflow.machine.process import keep_freed_memory
from rhythmflow.model import blocks
from rhythmflow.model.inputs import model_inputs
from rhythmflow.specs import PRESETS
from rhythmflow.testing import random_dit


@contextlib.contextmanager
def native_conv():
    saved = blocks.conv1d
    blocks.conv1d = lambda conv, x: conv(x)
    try:
        yield
    finally:
        blocks.conv1d = saved


def forward_f32_parts(model, x, t, cond, *, residual: bool, output: bool):
    """``DiT.forward`` with the residual stream and/or the output head in float32."""
    dt = model.dtype
    b, n, _ = x.shape
    x = x.to(dt)
    t = t.reshape(-1).expand(b) if t.numel() == 1 else t
    temb = model.time_embed(t)
    w_x, *_, w_c = model._proj_columns()
    h = torch.nn.functional.linear(x, w_x) + cond.static + torch.nn.functional.linear(temb, w_c)[:, None, :]
    h = h + model.input_embed.conv_pos_embed(h)
    cos, sin = blocks.rope_tables(n, model.config.head_dim, model.config.rope_theta, x.device, dt)
    if residual:
        h = h.float()
    for i, blk in enumerate(model.transformer_blocks):
        if residual:
            a = blk.self_attn(blk.input_layernorm(h).to(dt), cos, sin)
            h = h + a
            h = h + blk.mlp(blk.post_attention_layernorm(h).to(dt))
        else:
            h = blk(h, cos, sin)
        if i < len(cond.fusion):
            h = h + cond.fusion[i]
    c = temb + cond.c_static
    if output:
        lin, norm = model.norm_out.linear, model.norm_out.norm
        scale, shift = torch.nn.functional.linear(
            torch.nn.functional.silu(c.float()), lin.weight.float(), lin.bias.float()
        ).chunk(2, dim=-1)
        y = norm(h.float()) * (1 + scale[:, None, :]) + shift[:, None, :]
        return torch.nn.functional.linear(y, model.proj_out.weight.float(),
                                          model.proj_out.bias.float())
    return model.proj_out(model.norm_out(h.to(dt), c))


def timed(fn) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    y = fn()
    return time.perf_counter() - t0, y


@torch.inference_mode()
def precision(frames: int, rounds: int, depth: int, dtypes: list[str]) -> dict:
    cfg = dataclasses.replace(PRESETS["v1.2-base"], depth=depth)
    ref_model = random_dit(cfg)
    a = model_inputs(ref_model, frames, 1)
    x, t = a.pop("x"), a.pop("t")
    models = {"float32": ref_model}
    for d in dtypes:
        models[d] = copy.deepcopy(ref_model).to(getattr(torch, d))
    conds = {d: m.prepare(**a) for d, m in models.items()}
    variants = {"float32": lambda: models["float32"](x, t, conds["float32"])}
    for d in dtypes:
        m, c = models[d], conds[d]
        variants[f"{d} as-shipped"] = lambda m=m, c=c: m(x, t, c)
        variants[f"{d} bf16-residual"] = lambda m=m, c=c: forward_f32_parts(
            m, x, t, c, residual=False, output=False)

        def nat(m=m, c=c):
            with native_conv():
                return m(x, t, c)

        variants[f"{d} native-conv"] = nat
        variants[f"{d} f32-residual"] = lambda m=m, c=c: forward_f32_parts(
            m, x, t, c, residual=True, output=False)
        variants[f"{d} f32-output"] = lambda m=m, c=c: forward_f32_parts(
            m, x, t, c, residual=False, output=True)
        variants[f"{d} f32-residual+output"] = lambda m=m, c=c: forward_f32_parts(
            m, x, t, c, residual=True, output=True)
    for fn in variants.values():  # warm-up at this length (kernel selection, allocator)
        fn()
    secs: dict[str, list[float]] = {k: [] for k in variants}
    outs: dict[str, torch.Tensor] = {}
    for _ in range(rounds):
        for k, fn in variants.items():
            s, y = timed(fn)
            secs[k].append(s)
            outs[k] = y.float()
    ref = outs["float32"]
    base = statistics.median(secs["float32"])
    rows = []
    for k in variants:
        med = statistics.median(secs[k])
        rows.append({"variant": k, "seconds": secs[k], "median": med, "best": min(secs[k]),
                     "speedup_vs_float32": base / med,
                     "best_speedup_vs_float32": min(secs["float32"]) / min(secs[k]),
                     "velocity_rel_error": rel_rms(outs[k], ref)})
    print(table(f"low-precision variants, {frames} frames, depth {depth}, batch 1",
                ["variant", "median s", "x fp32", "best s", "best x fp32", "velocity rel. error"],
                [[r["variant"], r["median"], r["speedup_vs_float32"], r["best"],
                  r["best_speedup_vs_float32"], f"{r['velocity_rel_error']:.2e}"] for r in rows]))
    return {"frames": frames, "depth": depth, "rows": rows}


@torch.inference_mode()
def layout(frames_list: list[int], rounds: int, depth: int, dtype: str) -> dict:
    from rhythmflow.sampling.guidance import GuidedVelocity, prepare_inputs

    cfg = dataclasses.replace(PRESETS["v1.2-base"], depth=depth)
    model = random_dit(cfg, dtype=getattr(torch, dtype))
    rows = []
    for n in frames_list:
        a = model_inputs(model, n, 1)
        inputs = prepare_inputs(model, text=a["text"], style=a["style"],
                                negative_style=-a["style"], song_duration=a["song_duration"])
        x, t = a["x"], torch.tensor(0.37)
        fns = {lay: GuidedVelocity(model, inputs, 4.0, model_dtype=model.dtype, layout=lay)
               for lay in ("batched", "split")}
        for f in fns.values():
            f(x, t)
        secs: dict[str, list[float]] = {k: [] for k in fns}
        outs = {}
        for _ in range(rounds):
            for k, f in fns.items():
                s, outs[k] = timed(lambda f=f, x=x, t=t: f(x, t))
                secs[k].append(s)
        med = {k: statistics.median(v) for k, v in secs.items()}
        rows.append({"frames": n, "batched": med["batched"], "split": med["split"],
                     "seconds": secs, "identical": bool(torch.equal(outs["batched"],
                                                                    outs["split"]))})
    print(table(f"guidance layout, {dtype}, depth {depth}", ["frames", "batched s", "split s",
                                                             "split/batched", "identical"],
                [[r["frames"], r["batched"], r["split"], r["split"] / r["batched"],
                  r["identical"]] for r in rows]))
    return {"dtype": dtype, "depth": depth, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["precision", "layout"])
    p.add_argument("--frames", type=int, nargs="+", default=[512])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--dtypes", nargs="+", default=["bfloat16"])
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    keep_freed_memory()
    out = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if a.what == "precision":
        out["precision"] = precision(a.frames[0], a.rounds, a.depth, a.dtypes)
    else:
        out["layout"] = layout(a.frames, a.rounds, a.depth, a.dtype)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
