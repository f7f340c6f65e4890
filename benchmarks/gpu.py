"""rhythmflow on one CUDA GPU: the prepared check (about 3–6 minutes on one H100, at most 8).

    python benchmarks/gpu.py [--json gpu.json] [--budget 480] [--frames 2048 6144]
                             [--dtypes bfloat16 float16] [--steps 32] [--no-generate]

Needs only torch and numpy (safetensors if present) plus rhythmflow itself (``PYTHONPATH=src``
from a checkout, or the wheel). Without a CUDA GPU it prints a skip line and exits 0.

On the GPU, for the full-size DiT with random weights (``v1.2-base`` at 2048 frames,
``v1.2-full`` at 6144) in each dtype: one guided evaluation (batch 2, device synchronised,
median of 3), a whole ``--steps``-step guided Euler run through rhythmflow's sampler, peak GPU
memory, and the SDPA backend the attention ran on (from the profiler's kernel names). Then the
full-size Oobleck VAE decode of 2048 frames at rhythmflow's fixed geometry in float32 and
bfloat16, and a 2-step ``rhythmflow generate --device cuda`` end to end with a tiny checkpoint,
a tiny TorchScript VAE and a style embedding file (an instrumental: no lyrics front-end needed).
Every item runs only while the time budget lasts; skipped items are listed. Prints one table and
the JSON object (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _sync(device: str) -> None:
    from rhythmflow.perf import device_sync

    device_sync(device)


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0


def _sdpa_backend(model, frames: int) -> str:
    """Which SDPA kernel one forward used, from the CUDA kernel names the profiler saw."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from rhythmflow.perf import model_device, model_inputs

    if model_device(model).type != "cuda":
        return "cpu"

    a = model_inputs(model, frames, 2)
    x, t = a.pop("x"), a.pop("t")
    c = model.prepare(**a)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        model(x, t, c)
        torch.cuda.synchronize()
    names = " ".join(e.key.lower() for e in prof.key_averages())
    for key, label in (("flash", "flash"), ("cudnn", "cudnn"), ("fmha", "efficient"),
                       ("efficient", "efficient"), ("mem_eff", "efficient")):
        if key in names:
            return label
    return "math (no fused attention kernel seen)"


def dit_rows(frames_list, dtypes, steps, deadline, skipped, device="cuda", tiny=False):
    import torch

    from rhythmflow.config import PRESETS
    from rhythmflow.model.testing import TINY, random_dit
    from rhythmflow.perf import forward_flops, model_inputs, time_forward
    from rhythmflow.sampling import prepare_inputs, sample

    rows = []
    for frames in frames_list:
        name = "v1.2-base" if frames <= 2048 else "v1.2-full"
        cfg = PRESETS[name] if not tiny else dataclasses.replace(TINY, max_frames=frames)
        if time.monotonic() > deadline:
            skipped.append(f"DiT {frames} frames (budget)")
            continue
        cpu_model = random_dit(cfg)  # built once in float32 on the CPU, cast per dtype
        for dtype in dtypes:
            if time.monotonic() > deadline:
                skipped.append(f"DiT {frames} frames {dtype} (budget)")
                continue
            if dtype == "bfloat16" and device == "cuda" and not torch.cuda.is_bf16_supported():
                skipped.append(f"DiT {frames} frames bfloat16 (not supported)")
                continue
            model = copy.deepcopy(cpu_model).to(device, getattr(torch, dtype))
            _reset_peak(device)
            one = time_forward(model, frames, 2, repeats=3, warmup_frames=64)
            backend = _sdpa_backend(model, min(frames, 512))
            a = model_inputs(model, frames, 1)
            inputs = prepare_inputs(model, text=a["text"], style=a["style"],
                                    negative_style=-a["style"],
                                    song_duration=a["song_duration"])
            _sync(device)
            t0 = time.perf_counter()
            result = sample(model, inputs, steps=steps, cfg_strength=4.0, seed=0)
            _sync(device)
            run = time.perf_counter() - t0
            rows.append({
                "model": name, "frames": frames, "dtype": dtype, "eval_seconds": one,
                "tflops": forward_flops(cfg, frames, 2)["total"] / one / 1e12,
                "run_seconds": run, "steps": steps, "evaluations": result.evaluations,
                "peak_gib": _peak_gib(device), "sdpa": backend,
                "finite": bool(torch.isfinite(result.latent).all()),
            })
            del model, inputs, result
            if device == "cuda":
                torch.cuda.empty_cache()
        del cpu_model
    return rows


def vae_rows(deadline, skipped, device="cuda", tiny=False) -> list[dict]:
    import torch

    from rhythmflow.model.oobleck import FULL, SMALL, random_decoder
    from rhythmflow.vae import TorchScriptVAE

    rows = []
    cfg, frames = (SMALL, 40) if tiny else (FULL, 2048)
    dec = torch.jit.script(random_decoder(cfg)).to(device)
    z = torch.randn(1, cfg.latent_dim, frames, generator=torch.Generator().manual_seed(0))
    ref = None
    for dtype in ("float32", "bfloat16"):
        if time.monotonic() > deadline:
            skipped.append(f"VAE decode {dtype} (budget)")
            continue
        vae = TorchScriptVAE(dec.to(getattr(torch, dtype)), device=device)
        _reset_peak(device)
        vae.decode(z[..., : min(300, frames)])  # warm-up (TorchScript profiles the first calls)
        _sync(device)
        t0 = time.perf_counter()
        audio = vae.decode(z)
        _sync(device)
        secs = time.perf_counter() - t0
        ref = audio if ref is None else ref
        err = float((audio - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())
        rows.append({"dtype": dtype, "frames": frames, "seconds": secs,
                     "geometry": vae.geometry().to_dict(), "rel_error_vs_float32": err,
                     "peak_gib": _peak_gib(device)})
    return rows


def generate_row(deadline, skipped, device: str = "cuda") -> dict | None:
    """``rhythmflow generate --device cuda`` for 2 steps with tiny assets, in a subprocess."""
    if time.monotonic() > deadline:
        skipped.append("generate (budget)")
        return None
    import numpy as np

    from rhythmflow.model.testing import TINY, random_dit, save_checkpoint
    from rhythmflow.tiny import build_tiny_vae

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ckpt = save_checkpoint(random_dit(TINY, seed=7), d / "cfm_model.pt")
        vae = build_tiny_vae(d / "vae_model.pt")
        style = d / "style.npy"
        np.save(style, np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32))
        negative = d / "negative.npy"  # no Hub on the GPU machine: a local negative style
        np.save(negative, np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32))
        out = d / "song.wav"
        cmd = [sys.executable, "-m", "rhythmflow", "generate", "--style-embedding", str(style),
               "--negative-style", str(negative), "--offline",
               "--checkpoint", str(ckpt), "--vae", str(vae), "--steps", "2", "--seed", "0",
               "--device", device, "--duration", "95", "-o", str(out)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                              timeout=max(30, deadline - time.monotonic()))
        secs = time.perf_counter() - t0
        meta = out.with_suffix(".json")
        row = {"rc": proc.returncode, "seconds": secs, "wav": out.is_file(),
               "stderr_tail": proc.stderr[-1500:]}
        if meta.is_file():
            m = json.loads(meta.read_text(encoding="utf-8"))
            row.update(runtime=m.get("runtime"), timings=m.get("timings"))
        return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[2048, 6144])
    p.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"])
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--budget", type=float, default=480.0, help="seconds for everything")
    p.add_argument("--no-generate", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--device", default="cuda", help="cpu: a dry run of the script's code paths")
    p.add_argument("--tiny", action="store_true", help="tiny models (with --device cpu: a test)")
    a = p.parse_args(argv)
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU on this machine; nothing measured (skip)")
        return 0
    start = time.monotonic()
    deadline = start + a.budget
    if a.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        gpu, mem = props.name, props.total_memory / 2**30
    else:
        gpu, mem = f"no GPU ({a.device} dry run)", 0.0
    res: dict = {"gpu": gpu, "memory_gib": mem,
                 "torch": torch.__version__, "cuda": torch.version.cuda,
                 "bf16_supported": a.device == "cuda" and torch.cuda.is_bf16_supported(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    skipped: list[str] = []
    res["dit"] = dit_rows(a.frames, a.dtypes, a.steps, deadline - 120, skipped, a.device,
                          a.tiny)
    res["vae"] = vae_rows(deadline - 45, skipped, a.device, a.tiny)
    res["generate"] = None if a.no_generate else generate_row(deadline, skipped, a.device)
    res["skipped"] = skipped
    res["seconds"] = time.monotonic() - start
    print(f"\n{res['gpu']} ({res['memory_gib']:.0f} GiB), torch {res['torch']}, CUDA {res['cuda']}")
    print("| model | frames | dtype | 1 guided eval s | TFLOP/s | "
          f"{a.steps}-step guided run s | peak GiB | SDPA |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for r in res["dit"]:
        print(f"| {r['model']} | {r['frames']} | {r['dtype']} | {r['eval_seconds']:.3f} | "
              f"{r['tflops']:.0f} | {r['run_seconds']:.2f} | {r['peak_gib']:.1f} | {r['sdpa']} |")
    for r in res["vae"]:
        print(f"| VAE decode | {r['frames']} | {r['dtype']} | {r['seconds']:.2f} s | | | "
              f"{r['peak_gib']:.1f} | err {r['rel_error_vs_float32']:.1e} |")
    g = res["generate"]
    if g is not None:
        print(f"generate --device cuda, 2 steps: rc {g['rc']}, {g['seconds']:.1f} s"
              + ("" if g["rc"] == 0 else f"\n{g['stderr_tail']}"))
    if skipped:
        print("skipped: " + "; ".join(skipped))
    print(json.dumps(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
