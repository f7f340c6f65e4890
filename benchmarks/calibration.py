"""Does the short-length calibration predict a real forward on this machine? (a timing check)

    python benchmarks/calibration.py [--dim 128 --depth 2 --frames 512 --rows 2 --rounds 3]

``rhythmflow.planner.cost.calibrate`` times two short forwards, fits fixed cost + seconds per FLOP
and extrapolates. This script compares that prediction (and the direct timing it falls back to
when cheap) with the median of real forwards at the target length, alternating the three in each
round so a busy machine slows them together. It prints one table and the JSON object of the run.
Its fitting maths is tested deterministically in ``tests/test_estimate.py``; the timing itself
belongs here because it depends on how busy the machine is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics

from common import machine, table
from rhythmflow.machine.perf import time_forward
from rhythmflow.planner.cost import calibrate
from rhythmflow.testing import TINY, random_dit


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--frames", type=int, default=512)
    p.add_argument("--rows", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    model = random_dit(dataclasses.replace(TINY, dim=a.dim, depth=a.depth))
    res: dict = {"predicted": [], "direct": [], "measured": []}
    for _ in range(a.rounds):
        res["predicted"].append(calibrate(model, a.frames, rows=a.rows, direct_below=0.0))
        res["direct"].append(calibrate(model, a.frames, rows=a.rows, direct_below=1e9))
        res["measured"].append(time_forward(model, a.frames, a.rows, repeats=3))
    med = {k: statistics.median(v) for k, v in res.items()}
    out = {
        "machine": machine(),
        "config": {"dim": a.dim, "depth": a.depth, "frames": a.frames, "rows": a.rows},
        "seconds": res,
        "ratio_predicted_to_measured": med["predicted"] / med["measured"],
        "ratio_direct_to_measured": med["direct"] / med["measured"],
    }
    print(table("calibration vs a real forward (median seconds)", ["", "seconds", "ratio"],
                [[k, med[k], med[k] / med["measured"]] for k in ("predicted", "direct", "measured")]))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
