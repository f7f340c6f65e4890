"""The VAE decode on this machine: window size × dtype, receptive field, and a 95 s song.

    python benchmarks/vae_decode.py [--windows 128 256 512] [--dtypes float32 bfloat16]
                                    [--rounds 2] [--frames 2048] [--json out.json]

Builds the full-size Oobleck decoder of the official VAE with random weights
(:mod:`rhythmflow.model.oobleck`: 78.1 M parameters, 5.04 GFLOP per latent frame), saves it as
TorchScript and loads it back as rhythmflow does, once as is and once cast with
``module.to(dtype)``. Then:

* reach — how many latent frames away a change of one latent frame still moves the audio
  (> 1e-6 of its RMS): the overlap the fixed decode geometry must cover;
* seconds of one window per size and dtype, interleaved over ``rounds``; the decode of
  ``--frames`` frames is the window count of :func:`rhythmflow.vae.chunk_windows` × that;
* the relative RMS error of each dtype's audio against float32 on the same window.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import machine, table

from rhythmflow.model.oobleck import FULL, decode_flops, random_decoder, save_scripted
from rhythmflow.vae import DEFAULT_OVERLAP, chunk_windows


def _load(path: Path, dtype: str) -> torch.jit.ScriptModule:
    m = torch.jit.load(str(path)).eval()
    return m.to(getattr(torch, dtype)) if dtype != "float32" else m


@torch.inference_mode()
def reach(module, n: int = 40, threshold: float = 1e-6) -> int:
    """Largest distance (latent frames) at which perturbing frame n//2 changes a frame's audio
    by more than ``threshold`` × the audio RMS."""
    z = torch.randn(1, FULL.latent_dim, n, generator=torch.Generator().manual_seed(1))
    y0 = module.decode_export(z)
    z2 = z.clone()
    z2[..., n // 2] += 1.0
    d = (module.decode_export(z2) - y0).abs().amax(dim=1).reshape(n, FULL.hop).amax(dim=1)
    moved = (d > threshold * y0.pow(2).mean().sqrt()).nonzero().flatten().tolist()
    return max(abs(f - n // 2) for f in moved)


@torch.inference_mode()
def run(windows: list[int], dtypes: list[str], rounds: int, frames: int, overlap: int) -> dict:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = save_scripted(random_decoder(FULL), Path(tmp) / "oobleck.pt")
        mods = {d: _load(path, d) for d in dtypes}
    built = time.perf_counter() - t0
    out: dict = {"build_seconds": built, "gflop_per_frame": decode_flops(FULL) / 1e9,
                 "overlap": overlap}
    out["reach_frames"] = reach(mods[dtypes[0]])
    gen = torch.Generator().manual_seed(0)
    z = {c: torch.randn(1, FULL.latent_dim, c, generator=gen) for c in windows}
    for c in windows:  # TorchScript profiles the first calls of each shape: warm every pair
        for d in dtypes:
            for _ in range(2):
                mods[d].decode_export(z[c].to(getattr(torch, d)))
    secs: dict = {(c, d): [] for c in windows for d in dtypes}
    audio: dict = {}
    for _ in range(rounds):
        for c in windows:
            for d in dtypes:
                s = time.perf_counter()
                audio[c, d] = mods[d].decode_export(z[c].to(getattr(torch, d))).float()
                secs[c, d].append(time.perf_counter() - s)
    rows = []
    for c in windows:
        wins = len(chunk_windows(frames, c, overlap))
        for d in dtypes:
            med = statistics.median(secs[c, d])
            ref = audio[c, dtypes[0]]
            err = float((audio[c, d] - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())
            rows.append({"window": c, "dtype": d, "seconds": secs[c, d], "median": med,
                         "seconds_per_frame": med / c, "windows": wins,
                         "decoded_frames": wins * c, "decode_seconds": wins * med,
                         "rel_error_vs_float32": err})
    out["rows"] = rows
    print(table(f"VAE decode (random full-size Oobleck), {frames} frames, overlap {overlap}, "
                f"reach {out['reach_frames']} frames", ["window", "dtype", "s/window",
                                                         "ms/frame", "windows", "decode s",
                                                         "rel. err"],
                [[r["window"], r["dtype"], r["median"], 1e3 * r["seconds_per_frame"],
                  r["windows"], r["decode_seconds"], f"{r['rel_error_vs_float32']:.1e}"]
                 for r in rows]))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--windows", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--frames", type=int, default=2048)
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    res = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "vae": run(a.windows, a.dtypes, a.rounds, a.frames, a.overlap)}
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
