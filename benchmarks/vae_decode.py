"""The VAE decode on this machine: TorchScript against the eager decoder, per window and per song.

    python benchmarks/vae_decode.py [--windows 256] [--rounds 2] [--frames 2048]
                                    [--variants ts-float32 eager-float32 eager-bf16-residual]
                                    [--small] [--json out.json]

Builds the full-size Oobleck decoder of the official VAE with random weights
(:mod:`rhythmflow.model.oobleck`: 78.1 M parameters, 5.04 GFLOP per latent frame; ``--small``:
the same architecture at width 4, to check the script quickly), saves it as TorchScript and
loads it back as rhythmflow does, with freed memory kept for reuse as ``generate`` runs
(:func:`rhythmflow.machine.perf.keep_freed_memory`). Variants, all in one process, timed round-robin over
``rounds`` (the median kept), on the same latents:

* ``ts-float32`` — the file's ``decode_export`` (what rhythmflow ran before the eager decoder);
* ``ts-bfloat16`` — the same module cast with ``module.to(torch.bfloat16)``;
* ``eager-float32`` — :class:`rhythmflow.model.oobleck_fast.FastOobleckDecoder` built from the
  file's weights (``load_vae``'s default on the CPU);
* ``eager-bf16-residual`` — the same with the residual units in bfloat16 (what ``--vae-dtype
  auto`` picks where measured faster and accurate on the loaded weights).

Then prints, per window size, seconds per window and per latent frame, the decode of
``--frames`` frames (the window count of :func:`rhythmflow.vae.chunk_windows` × one window —
extrapolated), the speed-up against ``ts-float32`` and the audio's max abs difference and
relative RMS error against it; plus reach — how many latent frames away a change of one latent
frame still moves the audio (> 1e-6 of its RMS), which the fixed overlap must cover.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import machine, rel_rms, table
from rhythmflow.machine.process import keep_freed_memory
from rhythmflow.model.oobleck import FULL, SMALL, decode_flops, random_decoder, save_scripted
from rhythmflow.model.oobleck_fast import FastOobleckDecoder
from rhythmflow.model.oobleck_load import find_decoder
from rhythmflow.vae.codec import DEFAULT_OVERLAP, chunk_windows

VARIANTS = ("ts-float32", "ts-bfloat16", "eager-float32", "eager-bf16-residual")


def _decoders(path: Path, variants: list[str]) -> dict:
    """name -> callable(z float32) -> float32 audio."""
    script = torch.jit.load(str(path)).eval()
    weights = find_decoder(dict(script.named_parameters()))
    out = {}
    for v in variants:
        if v == "ts-float32":
            out[v] = script.decode_export
        elif v == "ts-bfloat16":
            m = torch.jit.load(str(path)).eval().to(torch.bfloat16)
            out[v] = lambda z, m=m: m.decode_export(z.bfloat16()).float()
        elif v == "eager-float32":
            out[v] = FastOobleckDecoder(weights).eval()
        elif v == "eager-bf16-residual":
            out[v] = FastOobleckDecoder(weights, residual_dtype=torch.bfloat16).eval()
        else:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    return out


@torch.inference_mode()
def reach(decode, latent_dim: int, hop: int, n: int = 40, threshold: float = 1e-6) -> int:
    """Largest distance (latent frames) at which perturbing frame n//2 changes a frame's audio
    by more than ``threshold`` × the audio RMS."""
    z = torch.randn(1, latent_dim, n, generator=torch.Generator().manual_seed(1))
    y0 = decode(z)
    z2 = z.clone()
    z2[..., n // 2] += 1.0
    d = (decode(z2) - y0).abs().amax(dim=1).reshape(n, hop).amax(dim=1)
    moved = (d > threshold * y0.pow(2).mean().sqrt()).nonzero().flatten().tolist()
    return max(abs(f - n // 2) for f in moved)


@torch.inference_mode()
def run(windows: list[int], variants: list[str], rounds: int, frames: int, overlap: int,
        small: bool = False) -> dict:
    cfg = SMALL if small else FULL
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = save_scripted(random_decoder(cfg), Path(tmp) / "oobleck.pt")
        decs = _decoders(path, variants)
    out: dict = {"build_seconds": time.perf_counter() - t0, "config": "small" if small else "full",
                 "gflop_per_frame": decode_flops(cfg) / 1e9, "overlap": overlap,
                 "variants": variants}
    first = decs.get("eager-float32", decs[variants[0]])
    out["reach_frames"] = reach(first, cfg.latent_dim, cfg.hop)
    gen = torch.Generator().manual_seed(0)
    z = {c: torch.randn(1, cfg.latent_dim, c, generator=gen) for c in windows}
    for c in windows:  # TorchScript profiles the first calls of each shape: warm every pair
        for f in decs.values():
            for _ in range(2):
                f(z[c][..., : min(c, 16)])
    secs: dict = {(c, v): [] for c in windows for v in variants}
    audio: dict = {}
    for _ in range(rounds):
        for c in windows:
            for v, f in decs.items():
                s = time.perf_counter()
                audio[c, v] = f(z[c]).float()
                secs[c, v].append(time.perf_counter() - s)
    rows = []
    for c in windows:
        wins = len(chunk_windows(frames, c, overlap))
        ref_v = "ts-float32" if "ts-float32" in variants else variants[0]
        ref, base = audio[c, ref_v], statistics.median(secs[c, ref_v])
        for v in variants:
            med = statistics.median(secs[c, v])
            diff = audio[c, v] - ref
            rows.append({"window": c, "variant": v, "seconds": secs[c, v], "median": med,
                         "seconds_per_frame": med / c, "windows": wins,
                         "decoded_frames": wins * c, "decode_seconds": wins * med,
                         "speedup_vs": ref_v, "speedup": base / med,
                         "max_abs_diff": float(diff.abs().max()),
                         "audio_max_abs": float(ref.abs().max()),
                         "rel_rms_error": rel_rms(audio[c, v], ref)})
    out["rows"] = rows
    m = machine()
    print(f"CPU: {m['cpu']}, {m['cores']} cores, {torch.get_num_threads()} threads, "
          f"ISA: {' '.join(m['isa'])}, torch {m['torch']}")
    print(table(f"VAE decode ({out['config']} random Oobleck), {frames} frames, overlap "
                f"{overlap}, reach {out['reach_frames']} frames; decode s = windows x one "
                f"window (extrapolated); {rounds} round(s), median",
                ["window", "variant", "s/window", "ms/frame", "windows", "decode s",
                 f"x {rows[0]['speedup_vs']}", "max abs diff", "rel. RMS err"],
                [[r["window"], r["variant"], r["median"], 1e3 * r["seconds_per_frame"],
                  r["windows"], r["decode_seconds"], f"{r['speedup']:.2f}",
                  f"{r['max_abs_diff']:.1e}", f"{r['rel_rms_error']:.1e}"] for r in rows]))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--windows", type=int, nargs="+", default=[256])
    p.add_argument("--variants", nargs="+", default=["ts-float32", "eager-float32",
                                                     "eager-bf16-residual"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--frames", type=int, default=2048)
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    p.add_argument("--small", action="store_true", help="width-4 decoder: a quick dry run")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    tuned = keep_freed_memory()  # as generate / serve run (runtime.configure_process)
    res = {"machine": machine(), "malloc_tuned": tuned, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "vae": run(a.windows, a.variants, a.rounds, a.frames, a.overlap, a.small)}
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
