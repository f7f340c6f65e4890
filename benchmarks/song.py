"""A whole 95 s song end to end through ``rhythmflow generate`` at full size (random weights).

    python benchmarks/song.py [--device cpu] [--steps N] [--json song.json] [--tiny]

Builds a full-size random checkpoint (official ``.pt`` container) and a full-size TorchScript
Oobleck VAE file, runs ``rhythmflow generate --duration 95`` with every choice left to the plan
(dtype, threads, guidance layout, steps unless ``--steps``) in a subprocess, and prints the
machine, the stage times from the sidecar, and the decode's share of the run. The files are
rebuilt each time (a few GB of temporary disk); expect minutes on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import machine
from gpu import generate_row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=None, help="default: the plan's")
    p.add_argument("--json", default=None)
    p.add_argument("--tiny", action="store_true", help="tiny assets, 2 steps (a test of the script)")
    a = p.parse_args(argv)
    skipped: list[str] = []
    row = generate_row(time.monotonic() + 3 * 3600, skipped, a.device, full=not a.tiny,
                       steps=a.steps)
    res = {"machine": machine(), "song": row, "skipped": skipped}
    m = res["machine"]
    print(f"{m['cpu']}, {m.get('cores')} cores, flags {' '.join(m.get('isa', []))}")
    if row is None or row["rc"] != 0:
        print(f"generate failed: {skipped or row['stderr_tail']}")
        return 1
    t = row["timings"]
    print(f"| 95 s song | {row['runtime']} | steps {row['steps']} |")
    print("| stage | seconds |\n|---|---:|")
    for k in ("load", "lyrics", "style", "estimate", "sample", "decode", "total"):
        print(f"| {k} | {t.get(k, 0):.1f} |")
    print(f"VAE decoder: {row.get('vae_decoder')}")
    e = row.get("estimate") or {}
    print(f"plan estimate at start: sampling {e.get('sampling', 0):.1f} s, decode "
          f"{e.get('decode', 0):.1f} s")
    for reason in row.get("reasons") or []:
        print(f"- {reason}")
    print(f"process wall {row['seconds']:.1f} s; decode {100 * t['decode'] / t['total']:.0f} % "
          f"of the in-process total, {100 * t['decode'] / (t['decode'] + t['sample']):.0f} % of "
          "sampling + decode")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
