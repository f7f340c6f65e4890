"""``rhythmflow diagnose``: system report, model size, a benchmark, estimates, recommendations.

Works offline: the benchmark builds the full-size architecture with random weights. ``--smoke``
runs the whole pipeline (lyrics → tiny random DiT → sampler → tiny VAE → audio file) in seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rhythmflow import specs
from rhythmflow.planner.cost import DIT_EFFICIENCY
from rhythmflow.specs import PRESETS

log = logging.getLogger("rhythmflow")
GB = 1024**3


def _cpu_info() -> dict[str, Any]:
    from rhythmflow.machine.host import cpu_facts

    model, flags = cpu_facts()
    return {"machine": platform.machine(), "model": model, "features": sorted(flags)}


def _espeak_report() -> dict[str, Any]:
    """The libespeak-ng the English G2P loads (the finder's choice, loaded as the G2P loads it:
    a system library or one bundled in a wheel), or why none could be."""
    from rhythmflow.errors import DependencyError, UsageError
    from rhythmflow.lyrics.g2p.english import VALIDATED_ESPEAK, espeak_info

    try:
        info = espeak_info()
    except (DependencyError, UsageError) as exc:
        return {"espeak_ng": None, "espeak_ng_problem": str(exc)}
    version = ".".join(map(str, info.version))
    return {"espeak_ng": f"{version} ({info.library.source}: {info.library.library})",
            "espeak_ng_golden": info.version[:2] == VALIDATED_ESPEAK}


def _module_version(name: str) -> str | None:
    if importlib.util.find_spec(name) is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "present"


def system_report() -> dict[str, Any]:
    import psutil
    import torch

    from rhythmflow.machine.host import physical_cores
    from rhythmflow.planner.core import resolve_runtime

    vm = psutil.virtual_memory()
    gpu = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpu.append({"name": p.name, "memory_gb": round(p.total_memory / GB, 1),
                        "bf16": torch.cuda.is_bf16_supported()})
    mps = getattr(torch.backends, "mps", None)
    runtime = resolve_runtime()
    return {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "cpu": _cpu_info(), "physical_cores": physical_cores(),
        "logical_cpus": psutil.cpu_count(logical=True),
        "ram_gb": round(vm.total / GB, 1), "ram_available_gb": round(vm.available / GB, 1),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cuda": gpu, "mps": bool(mps and mps.is_available()),
        **_espeak_report(),
        "onnxruntime": _module_version("onnxruntime"), "phonemizer": _module_version("phonemizer"),
        "muq": _module_version("muq"),
        "runtime": {"device": runtime.device, "dtype": runtime.dtype, "threads": runtime.threads,
                    "default_steps": runtime.default_steps, "reasons": list(runtime.reasons)},
    }


def model_report(duration: float) -> dict[str, Any]:
    from rhythmflow.machine.perf import forward_flops, param_count

    out = {}
    for name in (specs.BASE.name, specs.FULL.name):
        cfg, frames = PRESETS[name], _frames(name, duration)
        params = param_count(cfg)
        out[name] = {
            "parameters": params, "frames": frames,
            "memory_gb": {d: round(params * b / GB, 2) for d, b in specs.DTYPE_BYTES.items()},
            "tflop_per_eval": round(forward_flops(cfg, frames, 1)["total"] / 1e12, 2),
            "tflop_per_guided_eval": round(forward_flops(cfg, frames, 2)["total"] / 1e12, 2),
        }
    return out


def benchmark(frames: int) -> dict[str, Any]:
    """fp32 GEMM limit and a full-size random-weight forward at ``frames`` frames."""
    from rhythmflow.machine.perf import forward_flops, measure_gemm_gflops, time_forward
    from rhythmflow.testing import random_dit

    gemm = measure_gemm_gflops(1024, 2048, 8192, repeats=2)
    result: dict[str, Any] = {"gemm_gflops": round(gemm, 1)}
    if frames <= 0:
        return result
    cfg = PRESETS[specs.BASE.name]
    model = random_dit(cfg)  # speed does not depend on the values
    secs = time_forward(model, frames, 2, repeats=1, warmup_frames=16)
    gflops = forward_flops(cfg, frames, 2)["total"] / secs / 1e9
    result.update(bench_frames=frames, bench_seconds=round(secs, 2),
                  forward_gflops=round(gflops, 1), ratio_to_gemm=round(gflops / gemm, 2))
    return result


def _frames(name: str, duration: float) -> int:
    """Latent frames of a ``duration`` song on model ``name`` (full models: their longest song
    unless a duration they accept is asked for)."""
    spec = specs.get_spec(name)
    if not spec.min_seconds <= duration <= spec.max_seconds:
        duration = spec.default_seconds
    return specs.frames_for(spec.max_frames, duration)


def estimates(duration: float, gemm_gflops: float) -> dict[str, dict[str, float]]:
    """Whole-job seconds (load, lyrics, sampling, decode) for 4/8/16/32 guided Euler steps at
    this machine's float32 GEMM rate: the same cost model ``plan`` uses."""
    from rhythmflow.machine.perf import param_count
    from rhythmflow.planner.cost import estimate_job

    out = {}
    for name in (specs.BASE.name, specs.FULL.name):
        cfg, frames = PRESETS[name], _frames(name, duration)
        out[name] = {str(s): round(estimate_job(cfg, frames, steps=s, evals_per_step=1,
                                                gflops=gemm_gflops,
                                                weight_bytes=param_count(cfg) * 4).total, 1)
                     for s in (4, 8, 16, 32)}
    return out


def recommendations(system: dict, est: dict) -> list[str]:
    rec = []
    rt = system["runtime"]
    if rt["device"] == "cpu":
        base8 = est[specs.BASE.name]["8"]
        rec.append(f"CPU run: keep float32 (float16 is emulated on CPUs); use --steps 8 "
                   f"(~{base8 / 60:.0f} min for a {specs.BASE.max_seconds:g} s song) or --time-budget to let rhythmflow "
                   f"choose; --cfg-strength 0 halves the work at some loss of adherence.")
        rec.append(f"threads: {system['physical_cores']} (physical cores); more threads than "
                   "cores slows GEMMs down.")
        rec.append("set --timeout so a run never stalls unnoticed; Ctrl-C saves a resumable state.")
    else:
        rec.append(f"GPU run: {rt['dtype']}, 32 steps is the original quality.")
    if system["ram_available_gb"] < 8:
        rec.append("less than 8 GB free: close programs; the full-size model needs ~4.5 GB in "
                   "float32 plus activations.")
    rec.append("VAE decoding is chunked by default (--no-chunked needs several GB more).")
    if not system["espeak_ng"]:
        rec.append(f"English lyrics cannot be sung: {system.get('espeak_ng_problem')}")
    elif not system.get("espeak_ng_golden"):
        rec.append(f"espeak-ng {system['espeak_ng']} is not 1.51: English phonemes differ from the "
                   "reference on some words (oːɹ); pip install espeak-english==0.1.1 (Linux "
                   "x86_64) or install the system espeak-ng 1.51.")
    return rec


def smoke(workdir: Path, assets_dir: str | Path | None = None) -> dict[str, Any]:
    """The whole pipeline on a tiny random model: lyrics → DiT → sampler → VAE → wav. Never uses
    the network: the lyrics stage reads the G2P vocabulary from ``assets_dir`` or the local
    caches; without it (or without espeak-ng) the song is an instrumental and ``lyrics`` says
    why."""
    import torch

    from rhythmflow.audio.io import write_audio
    from rhythmflow.errors import AssetError
    from rhythmflow.pipeline import SongGenerator
    from rhythmflow.planner.core import resolve_runtime
    from rhythmflow.testing import TINY, build_tiny_vae, random_dit
    from rhythmflow.vae.codec import load_vae

    t0 = time.perf_counter()
    gen = SongGenerator(random_dit(TINY), load_vae(build_tiny_vae(workdir / "vae.pt")),
                        resolve_runtime("cpu"), identity={"model": "tiny-random"},
                        assets_dir=assets_dir, offline=True)
    lrc = "[00:01.00]Smoke test line one\n[00:03.00]And a second line\n[00:05.00]Last\n"
    g = torch.Generator().manual_seed(0)
    style, negative = torch.randn(1, 512, generator=g), torch.randn(1, 512, generator=g)
    lyrics = "sung"
    try:
        song = gen.generate(lrc, style=style, negative_style=negative, steps=2, seed=0,
                            estimate=False)
    except AssetError as exc:  # (DependencyError included) the G2P is not on this machine
        lyrics = f"skipped (instrumental): {str(exc).splitlines()[0]}"
        log.warning("smoke test without lyrics: %s", lyrics)
        song = gen.generate("", style=style, negative_style=negative, steps=2, seed=0,
                            estimate=False)
    path = write_audio(workdir / "smoke.wav", song.audio[0], song.sample_rate)
    return {"ok": True, "seconds": round(time.perf_counter() - t0, 2),
            "audio_seconds": song.audio.shape[-1] / song.sample_rate, "file": str(path),
            "lyrics": lyrics}


def probe_report(threads: int, refresh: bool) -> dict[str, Any]:
    """The cached (or, with ``refresh``, re-measured) machine probe, the CPU dtype it picks and
    the guidance layout it picks for a 95 s song (2048 frames), and the VAE decode dtype
    ``generate`` would pick with that dtype."""
    from rhythmflow.machine.forward import choose_guidance_layout
    from rhythmflow.machine.probe import AUTO_DTYPES, cache_path, choose_cpu_dtype, load_or_measure
    from rhythmflow.machine.vae_probe import choose_vae_dtype

    p = load_or_measure(threads, refresh=refresh)
    dtype, why = choose_cpu_dtype(p)
    _, layout = choose_guidance_layout(specs.BASE_FRAMES, p.layouts)
    auto, _ = choose_cpu_dtype(p, dtypes=AUTO_DTYPES)
    _, vae_why = choose_vae_dtype("cpu", auto, p.vae_gflops)
    return {**p.to_dict(), "chosen": dtype, "reason": why, "cache": str(cache_path(threads)),
            "layout_reason": f"{p.layout_dtype or 'not measured'}: {layout}",
            "vae_reason": vae_why}


def run_diagnose(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"system": system_report(), "model": model_report(args.duration)}
    if args.bench_frames > 0:
        log.info("benchmarking the full-size transformer (random weights, %d frames)…",
                 args.bench_frames)
    else:
        log.info("measuring this machine's GEMM throughput…")
    report["probe"] = probe_report(report["system"]["runtime"]["threads"],
                                   getattr(args, "refresh", False))
    report["benchmark"] = bench = benchmark(args.bench_frames)
    # A short benchmark forward runs below the full-length rate (fixed costs, small GEMMs); the
    # cost model uses the GEMM rate × the measured full-length efficiency. The short forward is
    # reported as a sanity check (``generate`` calibrates on the real model).
    report["estimate_basis"] = {"gemm_gflops": bench["gemm_gflops"],
                                "efficiency": DIT_EFFICIENCY}
    report["estimates_seconds"] = estimates(args.duration, bench["gemm_gflops"])
    report["recommendations"] = recommendations(report["system"], report["estimates_seconds"])
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            report["smoke"] = smoke(Path(tmp), getattr(args, "assets_dir", None))
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print_text(report)
    return 0


def _print_text(report: dict[str, Any]) -> None:
    s, b = report["system"], report["benchmark"]
    lines = [f"CPU: {s['cpu'].get('model')} ({s['physical_cores']} cores, features "
             f"{', '.join(s['cpu'].get('features', [])) or '?'}); RAM {s['ram_available_gb']}/"
             f"{s['ram_gb']} GB free; torch {s['torch']}; CUDA {s['cuda'] or 'no'}; "
             f"espeak-ng {s['espeak_ng'] or 'MISSING'}; onnxruntime {s['onnxruntime'] or 'missing'}",
             f"GEMM fp32: {b['gemm_gflops']} GFLOP/s"]
    if "forward_gflops" in b:
        lines.append(f"full-size forward (batch 2, {b['bench_frames']} frames): "
                     f"{b['bench_seconds']} s, {b['forward_gflops']} GFLOP/s "
                     f"({b['ratio_to_gemm']:.0%} of GEMM)")
    for name, m in report["model"].items():
        lines.append(f"{name}: {m['parameters'] / 1e9:.2f} B params, {m['memory_gb']['float32']} GB "
                     f"fp32, {m['tflop_per_guided_eval']} TFLOP per guided step at {m['frames']} frames")
    for name, e in report["estimates_seconds"].items():
        lines.append(f"estimate {name}: " + ", ".join(f"{k} steps {v / 60:.1f} min"
                                                       for k, v in e.items()))
    p = report["probe"]
    lines.append(f"arithmetic ({p['threads']} threads): " + ", ".join(
        f"{c['dtype']} {c['speedup_vs_float32']:.2f}x" for c in p["candidates"])
        + f" -> {p['reason']}")
    lines.append(f"guidance layout at {specs.BASE_FRAMES} frames ({p['layout_reason']}); "
                 f"forward overhead {p['forward_overhead'] * 1e3:.2g} ms + "
                 f"{p['layer_overhead'] * 1e3:.2g} ms per layer; probe took "
                 f"{p['seconds_taken']:.1f} s")
    lines.append(f"{p['vae_reason']} (convolution GFLOP/s: " + (", ".join(
        f"{d} {g:.0f}" for d, g in p["vae_gflops"].items()) or "not measured") + ")")
    lines += [f"- {r}" for r in report["recommendations"]]
    if "smoke" in report:
        lines.append(f"smoke test: OK in {report['smoke']['seconds']} s")
    sys.stdout.write("\n".join(lines) + "\n")
