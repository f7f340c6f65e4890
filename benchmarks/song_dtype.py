"""What a dtype choice does to a song: the original's precision against rhythmflow's CPU choices.

    python benchmarks/song_dtype.py [--frames 2048] [--steps 8] [--seed 0] [--no-probe]
                                    [--tiny] [--json out.json]

One process, one set of random weights: a full-size DiT checkpoint (v1.2-base architecture,
official ``.pt`` container, float16 — :func:`rhythmflow.testing.random_dit`) and a full-size
TorchScript Oobleck VAE (:func:`rhythmflow.model.oobleck.random_decoder`), written once. The
same request (seed, LRC, style, steps; hence the same initial noise) is planned and run three
times through rhythmflow's own API (``GenerationRequest`` → ``plan`` → ``SongGenerator.for_plan``
→ ``run``), one variant after the other:

* ``reference`` — the original's precision: float16 DiT, the VAE file's own TorchScript decode
  in float32 (``--dtype float16``; the VAE loaded with ``decoder="torchscript"``);
* ``bfloat16`` — ``--dtype bfloat16 --vae-dtype bfloat16`` (what ``auto`` picks on a CPU with
  AMX / AVX-512 BF16: bfloat16 DiT, eager decoder with bfloat16 residual convolutions);
* ``float32`` — ``--dtype float32 --vae-dtype float32`` (``auto`` on an AVX2-only CPU).

It prints the CPU (model, AMX / AVX-512 / AVX2-only), what each plan chose (guidance layout,
VAE decoder), the sampling and decode seconds of each run, and the relative RMS error of the
final latents and of the decoded audio of each variant against ``reference`` — all measured side
by side in this one run. The time estimate before sampling is off (``estimate=False``): it would
add one timed evaluation per variant. ``--frames N`` (< 2048) runs the same architecture with
``max_frames = N`` so the script can be tried small; ``--tiny`` uses the tiny DiT and a width-4
Oobleck (a test of the script, not a measurement). Full size, 8 steps: a few GB of temporary
disk and 43 minutes on a busy 2-vCPU AMX Xeon (docs/PERFORMANCE.md; the float16 and float32
DiTs take most of it); ``--frames 64 --steps 2``: about 3 minutes there.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import machine, rel_rms, table

#: (name, --dtype, --vae-dtype, decode with the file's TorchScript)
VARIANTS = (
    ("reference", "float16", "float32", True),
    ("bfloat16", "bfloat16", "bfloat16", False),
    ("float32", "float32", "float32", False),
)
#: A few sung lines over the song (lines past ``--frames`` are dropped by the lyrics stage).
LRC = ("[00:00.50]Hold the light\n[00:02.00]Over the water\n[00:10.00]Every road goes home\n"
       "[00:30.00]Sing it again\n[00:55.00]Under the morning sky\n[01:20.00]Home again\n")


def start_run(*, measure: bool):
    """What a full-size benchmark does first: the machine probe (unless not ``measure``), the
    process settings the CLI makes, and the CPU line it prints; returns (the detected Machine,
    machine(), the line)."""
    from rhythmflow import Machine, configure_process

    host = Machine.detect(measure=measure)
    configure_process(host.cores)  # threads and malloc as the CLI sets them
    m = machine()
    cpu_line = (f"CPU: {m['cpu']} ({isa_class(m['isa'])}), {m['cores']} cores, "
                f"{torch.get_num_threads()} threads, torch {m['torch']}; "
                f"ISA: {' '.join(m['isa'])}")
    print(cpu_line, flush=True)
    return host, m, cpu_line


def isa_class(isa: list[str]) -> str:
    """The CPU's arithmetic class as the policies see it: AMX, AVX-512 (BF16), AVX2-only."""
    f = set(isa)
    if "amx_bf16" in f:
        return "AMX (amx_bf16, avx512_bf16)" if "avx512_bf16" in f else "AMX (amx_bf16)"
    if "avx512_bf16" in f:
        return "AVX-512 BF16, no AMX"
    if "avx512f" in f:
        return "AVX-512 without BF16"
    return "AVX2-only" if "avx2" in f else "no AVX2"


def build_files(d: Path, tiny: bool) -> dict[str, Path]:
    """The random DiT checkpoint, the TorchScript VAE and the style embeddings, under ``d``."""
    import numpy as np

    from rhythmflow.model.oobleck import FULL, SMALL, random_decoder, save_scripted
    from rhythmflow.specs import PRESETS
    from rhythmflow.testing import TINY, random_dit, save_checkpoint

    files = {"checkpoint": save_checkpoint(random_dit(TINY if tiny else PRESETS["v1.2-base"],
                                                      seed=7), d / "cfm_model.pt"),
             "vae": save_scripted(random_decoder(SMALL if tiny else FULL), d / "vae_model.pt"),
             "style": d / "style.npy", "negative": d / "negative.npy"}
    rng = np.random.default_rng(0)
    for key in ("style", "negative"):  # local embeddings: nothing is downloaded
        np.save(files[key], rng.standard_normal((1, 512)).astype(np.float32))
    return files


def run_variant(variant: tuple, files: dict[str, Path], frames: int, steps: int, seed: int,
                host) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Plan and run one variant; returns (row, latents, audio)."""
    from rhythmflow import GenerationRequest, SongGenerator, plan, run
    from rhythmflow.machine.process import release_freed_memory
    from rhythmflow.model.checkpoint import read_config
    from rhythmflow.specs import BASE_FRAMES
    from rhythmflow.vae.codec import load_vae

    name, dtype, vae_dtype, torchscript = variant
    config = None
    if frames != BASE_FRAMES:  # a shorter song on the same architecture (a full-family model)
        import dataclasses

        config = dataclasses.replace(read_config(files["checkpoint"]), max_frames=frames)
    request = GenerationRequest(
        lrc=LRC, style_embedding_file=str(files["style"]), negative_style=str(files["negative"]),
        checkpoint=str(files["checkpoint"]), vae=str(files["vae"]),
        duration=95.0 if frames == BASE_FRAMES else 96.0, steps=steps, seed=seed,
        device="cpu", dtype=dtype, vae_dtype=vae_dtype, estimate=False)
    p = plan(request, host, config=config)
    gen = SongGenerator.for_plan(p)
    if torchscript:  # the original decodes with the file's TorchScript module
        t0 = time.perf_counter()
        gen.vae = load_vae(files["vae"], device=p.runtime.vae_device, chunked=request.chunked,
                           decoder="torchscript")
        gen.load_seconds += time.perf_counter() - t0
    song = run(p, gen)
    t = song.metadata["timings"]
    row = {"variant": name, "dtype": p.runtime.dtype, "vae_dtype": p.runtime.vae_dtype,
           "vae_decoder": song.metadata["vae_decode"]["decoder"],
           "guidance_layout": p.guidance_layout, "threads": p.runtime.threads,
           "frames": p.frames, "steps": p.steps, "evaluations": song.metadata["evaluations"],
           "load_seconds": t.get("load"), "sample_seconds": t.get("sample"),
           "decode_seconds": t.get("decode"), "total_seconds": t.get("total"),
           "finite": bool(torch.isfinite(song.audio).all() and torch.isfinite(song.latents).all()),
           "reasons": list(p.reasons)}
    latents, audio = song.latents.float().clone(), song.audio.float().clone()
    del song, gen
    gc.collect()
    release_freed_memory()  # the next variant loads its own copy of the weights
    return row, latents, audio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=2048, help="latent frames (2048 = a 95 s song)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-probe", action="store_true",
                   help="plan without the machine probe (batched guidance for every variant)")
    p.add_argument("--tiny", action="store_true", help="tiny DiT and width-4 VAE: a test")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if not 1 <= a.frames <= 2048:
        p.error(f"--frames {a.frames}: choose 1-2048 (2048 = a 95 s song)")

    host, m, cpu_line = start_run(measure=not a.no_probe)
    res: dict = {"machine": m, "isa_class": isa_class(m["isa"]), "frames": a.frames,
                 "steps": a.steps, "seed": a.seed, "tiny": a.tiny,
                 "started": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": []}
    t0 = time.perf_counter()
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = build_files(Path(tmp), a.tiny)
        res["build_seconds"] = time.perf_counter() - t0
        for variant in VARIANTS:
            row, latents, audio = run_variant(variant, files, a.frames, a.steps, a.seed, host)
            outputs[row["variant"]] = latents, audio
            res["rows"].append(row)
            print(f"{row['variant']}: sampling {row['sample_seconds']:.1f} s, decode "
                  f"{row['decode_seconds']:.1f} s ({row['vae_decoder']})", flush=True)
    ref_latents, ref_audio = outputs["reference"]
    for row in res["rows"]:  # against the reference; and against float32, the finest arithmetic
        latents, audio = outputs[row["variant"]]
        row["latent_rel_rms"] = rel_rms(latents, ref_latents)
        row["audio_rel_rms"] = rel_rms(audio, ref_audio)
        row["audio_rel_rms_vs_float32"] = rel_rms(audio, outputs["float32"][1])
    res["seconds"] = time.perf_counter() - t0
    print(table(f"{a.frames} frames ({a.frames * 2048 / 44100:.1f} s), {a.steps} steps, seed "
                f"{a.seed}, same weights and noise; errors against the reference (last column: "
                "against float32), measured side by side in this one run",
                ["variant", "DiT", "VAE decode", "guidance", "sampling s", "decode s",
                 "latent rel. RMS", "audio rel. RMS", "audio vs float32"],
                [[r["variant"], r["dtype"], r["vae_decoder"], r["guidance_layout"],
                  r["sample_seconds"], r["decode_seconds"], f"{100 * r['latent_rel_rms']:.2f} %",
                  f"{100 * r['audio_rel_rms']:.2f} %",
                  f"{100 * r['audio_rel_rms_vs_float32']:.2f} %"] for r in res["rows"]]))
    print(f"\n{cpu_line}\nwhole run {res['seconds']:.0f} s (building the random files "
          f"{res['build_seconds']:.0f} s)")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return 0 if all(r["finite"] for r in res["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
