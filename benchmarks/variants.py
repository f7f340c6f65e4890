"""Side-by-side experiments on ONE full-width decoder layer (where 97 % of the FLOPs are).

Every comparison runs interleaved (A, B, A, B, ...) on the same weights and inputs, because a
shared 2-core machine drifts by up to 2× over minutes. Variants:

* current        — rhythmflow.model.blocks.DecoderLayer as shipped
* baseline       — the same maths written as before the allocation work (out-of-place SwiGLU,
                   RoPE via cat on [b, h, n, k] views, RMSNorm out of place)
* fused_qkv      — one [3d × d] projection for q, k, v
* fused_gate_up  — one [2f × d] projection for gate and up
* matmul_layout  — every projection as ``x @ W`` with W stored [in, out]

Also: float16 / bfloat16 vs float32, 1 vs 2 threads, ``torch.compile`` and glibc malloc
thresholds (separate processes). ``python benchmarks/variants.py layer --malloc tuned`` is the
per-process probe used for the latter.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from common import run_worker
from rhythmflow.machine.perf import clock
from rhythmflow.machine.process import keep_freed_memory
from rhythmflow.model.blocks import DecoderLayer, rope_tables

DIM, HEADS, FF = 2048, 32, 8192


def make_layer(seed: int = 0) -> DecoderLayer:
    g = torch.Generator().manual_seed(seed)
    layer = DecoderLayer(DIM, HEADS, FF, 1e-6)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(
                torch.randn(p.shape, generator=g) / (p.shape[-1] ** 0.5 if p.ndim > 1 else 10)
                + (p.ndim == 1)
            )
    return layer.eval().requires_grad_(False)


def _rms(x, norm):
    h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps)
    return norm.weight * h


def baseline(layer: DecoderLayer):
    a = layer.self_attn

    def rope(x, cos, sin):
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def fwd(x, cos, sin):
        b, n, d = x.shape
        s = lambda t: t.view(b, n, HEADS, d // HEADS).transpose(1, 2)  # noqa: E731
        h = _rms(x, layer.input_layernorm)
        q, k, v = rope(s(a.q_proj(h)), cos, sin), rope(s(a.k_proj(h)), cos, sin), s(a.v_proj(h))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        x = x + a.o_proj(o.transpose(1, 2).reshape(b, n, d))
        m = layer.mlp
        h = _rms(x, layer.post_attention_layernorm)
        return x + m.down_proj(F.silu(m.gate_proj(h)) * m.up_proj(h))

    return fwd


def fused_qkv(layer: DecoderLayer):
    a = layer.self_attn
    w = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
    from rhythmflow.model.blocks import apply_rope

    def fwd(x, cos, sin):
        b, n, d = x.shape
        h = layer.input_layernorm(x)
        q, k, v = F.linear(h, w).view(b, n, 3, HEADS, d // HEADS).unbind(2)
        c, s = cos[:, None], sin[:, None]
        q, k = apply_rope(q, c, s).transpose(1, 2), apply_rope(k, c, s).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v.transpose(1, 2), is_causal=False)
        x = x + a.o_proj(o.transpose(1, 2).reshape(b, n, d))
        return x + layer.mlp(layer.post_attention_layernorm(x))

    return fwd


def fused_gate_up(layer: DecoderLayer):
    m = layer.mlp
    w = torch.cat([m.gate_proj.weight, m.up_proj.weight])

    def fwd(x, cos, sin):
        x = x + layer.self_attn(layer.input_layernorm(x), cos, sin)
        g, u = F.linear(layer.post_attention_layernorm(x), w).chunk(2, dim=-1)
        return x + m.down_proj(F.silu(g, inplace=True).mul_(u))

    return fwd


def matmul_layout(layer: DecoderLayer):
    a, m = layer.self_attn, layer.mlp
    wt = {
        n: getattr(mod, n).weight.t().contiguous()
        for mod, names in (
            (a, ("q_proj", "k_proj", "v_proj", "o_proj")),
            (m, ("gate_proj", "up_proj", "down_proj")),
        )
        for n in names
    }
    from rhythmflow.model.blocks import apply_rope

    def fwd(x, cos, sin):
        b, n, d = x.shape
        h = layer.input_layernorm(x)
        c, s = cos[:, None], sin[:, None]
        q = apply_rope((h @ wt["q_proj"]).view(b, n, HEADS, -1), c, s).transpose(1, 2)
        k = apply_rope((h @ wt["k_proj"]).view(b, n, HEADS, -1), c, s).transpose(1, 2)
        v = (h @ wt["v_proj"]).view(b, n, HEADS, -1).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        x = x + o.transpose(1, 2).reshape(b, n, d) @ wt["o_proj"]
        h = layer.post_attention_layernorm(x)
        g = F.silu(h @ wt["gate_proj"], inplace=True).mul_(h @ wt["up_proj"])
        return x + g @ wt["down_proj"]

    return fwd


def inputs(frames: int, dtype=torch.float32):
    x = torch.randn(1, frames, DIM, generator=torch.Generator().manual_seed(1)).to(dtype)
    cos, sin = rope_tables(frames, DIM // HEADS, 10000.0, "cpu", dtype)
    return x, cos, sin


def interleave(fns: dict, args, rounds: int) -> dict:
    """Seconds per variant: warm each once, then ``rounds`` interleaved passes (the order rotates
    each round, so no variant always runs first). Wall and CPU
    clock (process CPU time / threads, steadier on a shared machine); medians and all runs."""
    wall, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    cpu_clock = clock("cpu")
    for f in fns.values():
        f(*args)
    names = list(fns)
    for r in range(rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
            f = fns[k]
            c0, t0 = cpu_clock(), time.perf_counter()
            f(*args)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(cpu_clock() - c0)
    return {
        k: {
            "median": statistics.median(wall[k]),
            "all": wall[k],
            "cpu_median": statistics.median(cpu[k]),
            "cpu_all": cpu[k],
        }
        for k in fns
    }


@torch.inference_mode()
def layer_variants(frames: int, rounds: int) -> dict:
    layer = make_layer()
    x, cos, sin = inputs(frames)
    fns = {
        "current": layer,
        "baseline": baseline(layer),
        "fused_qkv": fused_qkv(layer),
        "fused_gate_up": fused_gate_up(layer),
        "matmul_layout": matmul_layout(layer),
    }
    ref = layer(x, cos, sin)
    err = {k: ((f(x, cos, sin) - ref).abs().max() / ref.abs().max()).item() for k, f in fns.items()}
    res = interleave(fns, (x, cos, sin), rounds)
    for k in res:
        res[k]["max_rel_diff"] = err[k]
    return {"frames": frames, "variants": res}


@torch.inference_mode()
def dtypes(frames: int) -> dict:
    out = {}
    base = make_layer()
    for dt in (torch.float32, torch.bfloat16, torch.float16, torch.float32):
        layer = make_layer().to(dt) if dt != torch.float32 else base
        args = inputs(frames, dt)
        layer(*args)
        t0 = time.perf_counter()
        layer(*args)
        out.setdefault(str(dt).split(".")[-1], []).append(time.perf_counter() - t0)
    return {"frames": frames, "seconds": out}


@torch.inference_mode()
def threads(frames: int, rounds: int) -> dict:
    layer, args = make_layer(), inputs(frames)
    n0 = torch.get_num_threads()
    res: dict = {}
    try:
        layer(*args)
        for _ in range(rounds):
            for n in sorted({1, n0}):
                torch.set_num_threads(n)
                t0 = time.perf_counter()
                layer(*args)
                res.setdefault(str(n), []).append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(n0)
    return {"frames": frames, "seconds": res}


@torch.inference_mode()
def compiled(frames: int, rounds: int) -> dict:
    layer, args = make_layer(), inputs(frames)
    t0 = time.perf_counter()
    try:
        comp = torch.compile(layer)
        comp(*args)
    except Exception as exc:  # noqa: BLE001 - report, never fail the whole benchmark
        return {"frames": frames, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    compile_s = time.perf_counter() - t0
    res = interleave({"eager": layer, "compiled": comp}, args, rounds)
    return {"frames": frames, "compile_seconds": compile_s, "variants": res}


def malloc_ab(frames: int, rounds: int) -> dict:
    res: dict = {}
    for _ in range(rounds):
        for mode in ("default", "tuned"):
            r = run_worker("variants.py", ["layer", "--frames", str(frames), "--malloc", mode])
            res.setdefault(mode, []).extend(r["seconds"])
    return {"frames": frames, "seconds": res}


@torch.inference_mode()
def layer_probe(frames: int, malloc: str) -> dict:
    if malloc == "tuned":
        keep_freed_memory()
    layer, args = make_layer(), inputs(frames)
    layer(*args)
    secs = []
    for _ in range(2):
        t0 = time.perf_counter()
        layer(*args)
        secs.append(time.perf_counter() - t0)
    return {"seconds": secs}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["layer", "layers", "all"])
    p.add_argument("--frames", type=int, default=2048)
    p.add_argument("--malloc", default="default")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-compile", action="store_true")
    a = p.parse_args()
    if a.what == "layer":
        print(json.dumps(layer_probe(a.frames, a.malloc)))
        return
    if a.malloc == "tuned":
        keep_freed_memory()
    if a.what == "layers":
        print(json.dumps({"variants": layer_variants(a.frames, a.rounds)}))
        return
    out = {
        "variants": layer_variants(a.frames, a.rounds),
        "malloc": malloc_ab(a.frames, a.rounds),
        "threads": threads(a.frames // 2, a.rounds),
        "dtypes": dtypes(256),
    }
    if not a.no_compile:
        out["compile"] = compiled(a.frames // 2, a.rounds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
