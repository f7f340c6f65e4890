"""rhythmflow on one CUDA GPU: the prepared check (about 3–6 minutes on one H100, at most 8).

    python benchmarks/gpu.py [--json gpu.json] [--budget 480] [--frames 2048 6144]
                             [--dtypes bfloat16 float16] [--steps 32] [--no-generate]
                             [--no-compile] [--full-song]

Needs only torch and numpy (safetensors if present) plus rhythmflow itself (``PYTHONPATH=src``
from a checkout, or the wheel). Without a CUDA GPU it prints a skip line and exits 0.

On the GPU, for the full-size DiT with random weights (``v1.2-base`` at 2048 frames,
``v1.2-full`` at 6144) in each dtype: one guided evaluation (batch 2, device synchronised,
median of 3), a whole ``--steps``-step guided Euler run through rhythmflow's sampler, peak GPU
memory, and the SDPA backend the attention ran on (from the profiler's kernel names). Then the
full-size Oobleck VAE decode of 2048 frames at rhythmflow's fixed geometry in float32 and
bfloat16, the eager decoder against TorchScript (cold and warm), and a 2-step
``rhythmflow generate --device cuda`` end to end with a tiny checkpoint,
a tiny TorchScript VAE and a style embedding file (an instrumental: no lyrics front-end needed);
with ``--full-song`` also a 95 s song end to end at full size (random checkpoint and VAE files in
the official containers, the device's default steps) with the sidecar's stage timings. Last, the speed-ups at the shortest length in bfloat16, side by side: the doubled guidance batch
against two batch-1 forwards (the guidance layout), a CUDA-graph replay and ``torch.compile``.
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
    from rhythmflow.machine.perf import device_sync

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

    from rhythmflow.model.inputs import model_device, model_inputs

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

    from rhythmflow.machine.perf import forward_flops, time_forward
    from rhythmflow.model.inputs import model_inputs
    from rhythmflow.sampling import SamplerSpec, make_grid, prepare_inputs, sample
    from rhythmflow.specs import PRESETS
    from rhythmflow.testing import TINY, random_dit

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
            result = sample(model, inputs, make_grid(steps), SamplerSpec(cfg_strength=4.0),
                            start=0)
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


def _median_seconds(fn, device: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def speedup_rows(frames: int, dtype: str, deadline, skipped, device="cuda", tiny=False,
                 compile_model: bool = True):
    """One guided evaluation at ``frames`` in ``dtype`` four ways, side by side: eager doubled
    batch (rhythmflow's default), two eager batch-1 forwards (the split guidance layout), the
    doubled batch replayed from a CUDA graph, and ``torch.compile`` (its compile time too).
    Each variant that fails is recorded with its error, never fatal."""
    import torch

    from common import rel_rms  # beside this script; torch-importing, so not at module level
    from rhythmflow.model.inputs import model_inputs
    from rhythmflow.specs import PRESETS
    from rhythmflow.testing import TINY, random_dit

    if time.monotonic() > deadline:
        skipped.append("speed-ups (budget)")
        return []
    cfg = PRESETS["v1.2-base"] if not tiny else dataclasses.replace(TINY, max_frames=frames)
    model = random_dit(cfg).to(device, getattr(torch, dtype)).eval()
    rows: list[dict] = []
    with torch.inference_mode():
        a2 = model_inputs(model, frames, 2)
        x2, t2 = a2.pop("x"), a2.pop("t")
        c2 = model.prepare(**a2)
        a1 = model_inputs(model, frames, 1)
        x1, t1 = a1.pop("x"), a1.pop("t")
        c1 = model.prepare(**a1)
        model(x2, t2, c2)
        model(x1, t1, c1)
        base = _median_seconds(lambda: model(x2, t2, c2), device, 7)
        rows.append({"variant": "eager, doubled batch (default)", "seconds": base})
        split = _median_seconds(lambda: (model(x1, t1, c1), model(x1, t1, c1)), device, 7)
        rows.append({"variant": "eager, two batch-1 forwards (split)", "seconds": split})
        ref = model(x2, t2, c2).float()
    if device.startswith("cuda"):
        try:
            with torch.inference_mode():
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):
                        model(x2, t2, c2)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    out = model(x2, t2, c2)
                graph.replay()
                secs = _median_seconds(graph.replay, device, 7)
                err = rel_rms(out, ref)
            rows.append({"variant": "CUDA graph replay, doubled batch", "seconds": secs,
                         "rel_error_vs_eager": err})
            del graph, out
        except Exception as exc:  # noqa: BLE001 - a benchmark records what failed
            rows.append({"variant": "CUDA graph replay, doubled batch", "error": repr(exc)[:300]})
    else:
        skipped.append("CUDA graph (no CUDA)")
    if not compile_model:
        skipped.append("torch.compile (--no-compile)")
    elif time.monotonic() > deadline - 60:
        skipped.append("torch.compile (budget)")
    else:
        try:
            compiled = torch.compile(model)
            with torch.inference_mode():
                _sync(device)
                t0 = time.perf_counter()
                out = compiled(x2, t2, c2)
                _sync(device)
                compile_s = time.perf_counter() - t0
                compiled(x2, t2, c2)
                secs = _median_seconds(lambda: compiled(x2, t2, c2), device, 7)
                err = rel_rms(out, ref)
            rows.append({"variant": "torch.compile (default mode), doubled batch",
                         "seconds": secs, "compile_seconds": compile_s,
                         "rel_error_vs_eager": err})
        except Exception as exc:  # noqa: BLE001
            rows.append({"variant": "torch.compile (default mode), doubled batch",
                         "error": repr(exc)[:300]})
    for r in rows:
        r.update(frames=frames, dtype=dtype)
        if "seconds" in r:
            r["vs_default"] = base / r["seconds"]
    return rows


def vae_rows(deadline, skipped, device="cuda", tiny=False) -> list[dict]:
    import torch

    from common import rel_rms
    from rhythmflow.model.oobleck import FULL, SMALL, random_decoder
    from rhythmflow.vae.codec import TorchScriptVAE

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
        err = rel_rms(audio, ref)
        rows.append({"dtype": dtype, "frames": frames, "seconds": secs,
                     "geometry": vae.geometry().to_dict(), "rel_error_vs_float32": err,
                     "peak_gib": _peak_gib(device)})
    return rows


def vae_eager_rows(deadline, skipped, device="cuda", tiny=False) -> list[dict]:
    """The decode of a fresh process's first song on ``device``: rhythmflow's eager Oobleck
    decoder (built on the CPU from the TorchScript module's weights, checked there, then moved)
    against the TorchScript module, each timed on its first decode (cold: TorchScript optimises
    itself on its first calls) and its second (warm), after one untimed convolution that
    initialises the device's libraries. Output difference between the two, float32."""
    import torch

    from rhythmflow.model.oobleck import FULL, SMALL, random_decoder
    from rhythmflow.model.oobleck_fast import eager_decoder
    from rhythmflow.vae.codec import TorchScriptVAE

    if time.monotonic() > deadline:
        skipped.append("VAE eager vs TorchScript (budget)")
        return []
    cfg, frames = (SMALL, 40) if tiny else (FULL, 2048)
    scripted = torch.jit.script(random_decoder(cfg))
    fast = eager_decoder(scripted)
    if fast is None:
        skipped.append("VAE eager vs TorchScript (the eager decoder did not match)")
        return []
    torch.nn.functional.conv1d(torch.randn(1, 8, 64, device=device),
                               torch.randn(8, 8, 3, device=device))  # library start-up
    z = torch.randn(1, cfg.latent_dim, frames, generator=torch.Generator().manual_seed(0))
    rows, audio = [], {}
    for kind in ("eager", "torchscript"):
        module = scripted.to(device)
        vae = (TorchScriptVAE(module, device=device, decoder=fast.to(device),
                              decoder_kind="eager") if kind == "eager"
               else TorchScriptVAE(module, device=device))
        times = []
        for _ in range(2):
            _sync(device)
            t0 = time.perf_counter()
            audio[kind] = vae.decode(z)
            _sync(device)
            times.append(time.perf_counter() - t0)
        rows.append({"decoder": kind, "frames": frames, "cold_seconds": times[0],
                     "warm_seconds": times[1]})
    diff = float((audio["eager"] - audio["torchscript"]).abs().max())
    for r in rows:
        r["max_abs_diff_eager_vs_torchscript"] = diff
        r["max_abs_audio"] = float(audio["torchscript"].abs().max())
    return rows


def generate_row(deadline, skipped, device: str = "cuda", full: bool = False,
                 steps: int | None = None) -> dict | None:
    """``rhythmflow generate --device DEVICE`` of a 95 s song in a subprocess: for 2 steps with
    tiny assets, or (``full``) with a full-size random checkpoint (official ``.pt`` container,
    float16) and a full-size TorchScript Oobleck VAE at the device's default step count."""
    what = "full-size generate" if full else "generate"
    if time.monotonic() > deadline:
        skipped.append(f"{what} (budget)")
        return None
    import numpy as np

    from rhythmflow.model.oobleck import random_decoder, save_scripted
    from rhythmflow.specs import PRESETS
    from rhythmflow.testing import TINY, build_tiny_vae, random_dit, save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ckpt = save_checkpoint(random_dit(PRESETS["v1.2-base"] if full else TINY, seed=7),
                               d / "cfm_model.pt")
        vae = (save_scripted(random_decoder(), d / "vae_model.pt") if full
               else build_tiny_vae(d / "vae_model.pt"))
        style = d / "style.npy"
        np.save(style, np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32))
        negative = d / "negative.npy"  # no Hub on the GPU machine: a local negative style
        np.save(negative, np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32))
        out = d / "song.wav"
        cmd = [sys.executable, "-m", "rhythmflow", "generate", "--style-embedding", str(style),
               "--negative-style", str(negative), "--offline",
               "--checkpoint", str(ckpt), "--vae", str(vae), "--seed", "0",
               *(["--steps", str(steps or 2)] if steps or not full else []),
               "--device", device, "--duration", "95", "-o", str(out)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                                  timeout=max(30, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as exc:
            skipped.append(f"{what} (timed out after {exc.timeout:.0f} s)")
            return None
        secs = time.perf_counter() - t0
        meta = out.with_suffix(".json")
        row = {"what": what, "rc": proc.returncode, "seconds": secs, "wav": out.is_file(),
               "stderr_tail": proc.stderr[-1500:]}
        if meta.is_file():
            m = json.loads(meta.read_text(encoding="utf-8"))
            plan = m.get("plan") or {}
            row.update(runtime=m.get("runtime"), timings=m.get("timings"),
                       steps=plan.get("steps"), reasons=plan.get("reasons"),
                       estimate=plan.get("estimate"),
                       vae_decoder=(m.get("vae_decode") or {}).get("decoder"))
        return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[2048, 6144])
    p.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"])
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--budget", type=float, default=480.0, help="seconds for everything")
    p.add_argument("--no-generate", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--full-song", action="store_true",
                   help="also generate a 95 s song end to end with full-size random weights")
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

    def save() -> None:  # after every section: a run cut short still leaves its numbers
        if a.json:
            tmp = Path(a.json + ".tmp")
            tmp.write_text(json.dumps(res, indent=1), encoding="utf-8")
            tmp.replace(a.json)

    res["skipped"] = skipped
    res["dit"] = dit_rows(a.frames, a.dtypes, a.steps, deadline - 150, skipped, a.device,
                          a.tiny)
    save()
    res["vae"] = vae_rows(deadline - 120, skipped, a.device, a.tiny)
    save()
    res["vae_eager"] = vae_eager_rows(deadline - 110, skipped, a.device, a.tiny)
    save()
    res["generate"] = None if a.no_generate else generate_row(deadline - 90, skipped, a.device)
    save()
    res["generate_full"] = (generate_row(deadline - 60, skipped, a.device, full=True)
                            if a.full_song else None)
    save()
    sp_dtype = "bfloat16" if "bfloat16" in a.dtypes else a.dtypes[0]
    res["speedups"] = speedup_rows(min(a.frames), sp_dtype, deadline, skipped, a.device, a.tiny,
                                  not a.no_compile)
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
    for r in res["vae_eager"]:
        print(f"VAE decode {r['decoder']}, {r['frames']} frames, first song of the process: "
              f"cold {r['cold_seconds']:.2f} s, warm {r['warm_seconds']:.2f} s "
              f"(eager vs TorchScript max |diff| {r['max_abs_diff_eager_vs_torchscript']:.1e} of "
              f"{r['max_abs_audio']:.1f})")
    for g in (res["generate"], res["generate_full"]):
        if g is not None:
            print(f"{g['what']} --device {a.device}, {g.get('steps')} steps: rc {g['rc']}, "
                  f"{g['seconds']:.1f} s, stages {g.get('timings')}"
                  + ("" if g["rc"] == 0 else f"\n{g['stderr_tail']}"))
    if res["speedups"]:
        print("\n| speed-up variant (one guided evaluation) | frames | dtype | s | × default |"
              " note |\n|---|---:|---|---:|---:|---|")
    for r in res["speedups"]:
        if "error" in r:
            print(f"| {r['variant']} | {r['frames']} | {r['dtype']} | failed | | "
                  f"{r['error'][:120]} |")
            continue
        note = ""
        if "compile_seconds" in r:
            note += f"compile {r['compile_seconds']:.0f} s; "
        if "rel_error_vs_eager" in r:
            note += f"rel. error vs eager {r['rel_error_vs_eager']:.1e}"
        print(f"| {r['variant']} | {r['frames']} | {r['dtype']} | {r['seconds']:.4f} | "
              f"{r['vs_default']:.2f} | {note} |")
    if skipped:
        print("skipped: " + "; ".join(skipped))
    print(json.dumps(res))
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
