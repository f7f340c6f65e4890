"""Sampling-engine benchmark on the full-size architecture (random weights).

Measures, side by side in one run:
  * time per model evaluation (batch 1, conditional only),
  * one guided evaluation as a doubled-batch forward vs the two sequential forwards it replaces,
  * sampling overhead = total sampling time / time spent inside the model's forward during the
    same run (= evaluations × time per evaluation), for a guided run (cfg > 0) and an unguided
    one (cfg = 0); the target is <= 1.03.

    python benchmarks/bench_sampling.py                 # full size, 64 frames, 2 steps
    python benchmarks/bench_sampling.py --frames 128 --steps 3
    python benchmarks/bench_sampling.py --preset tiny   # seconds: checks the script itself

The full model has 1.1 B parameters (≈4.4 GB in float32); one forward at 128 frames takes
several seconds on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rhythmflow.sampling import SamplerSpec, make_grid, prepare_inputs, sample
from rhythmflow.specs import PRESETS
from rhythmflow.testing import TINY, random_dit


def timed(fn) -> float:
    """Wall time of one ``fn()`` call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class TimedForward:
    """The model's forward, recording the wall time of every call."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.times = model, []
        self.dtype = model.dtype

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        start = time.perf_counter()
        v = self.model(x, t, cond)
        self.times.append(time.perf_counter() - start)
        return v

    @property
    def total(self) -> float:
        return sum(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64, help="latent frames (default 64)")
    parser.add_argument("--steps", type=int, default=2, help="solver steps (default 2)")
    parser.add_argument(
        "--repeats", type=int, default=2, help="A/B repeats of doubled vs two forwards (default 2)"
    )
    parser.add_argument("--preset", default="v1.2-base", choices=[*PRESETS, "tiny"])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--cfg", type=float, default=4.0, help="guidance strength (default 4)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    config = TINY if args.preset == "tiny" else PRESETS[args.preset]
    start = time.perf_counter()
    model = random_dit(config, seed=0)
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())

    n, gen = args.frames, torch.Generator().manual_seed(0)
    song = dict(
        text=torch.randint(0, config.text_num_embeds + 1, (1, n), generator=gen),
        style=torch.nn.functional.normalize(torch.randn(1, 512, generator=gen), dim=-1),
        negative_style=torch.nn.functional.normalize(torch.randn(1, 512, generator=gen), dim=-1),
        start_time=0.0,
        song_duration=n / config.max_frames,
    )
    start = time.perf_counter()
    inputs = prepare_inputs(model, **song)
    prepare_s = time.perf_counter() - start
    uncond = inputs.both.select(slice(1, 2))
    x, t = torch.randn(1, n, 64, generator=gen), torch.tensor(0.5)
    xx = torch.cat([x, x])

    with torch.inference_mode():  # warm up both shapes, then alternate the two variants
        model(x, t, inputs.cond), model(xx, t, inputs.both)
        pairs = [
            (
                timed(lambda: model(xx, t, inputs.both)),
                timed(lambda: (model(x, t, inputs.cond), model(x, t, uncond))),
            )
            for _ in range(args.repeats)
        ]
    doubled_ab = statistics.median(p[0] for p in pairs)
    two = statistics.median(p[1] for p in pairs)

    # The sampling runs time their own model calls: overhead = run time / time inside the model,
    # measured in the same run, so load from other processes does not skew the ratio.
    guided_fwd, plain_fwd = TimedForward(model), TimedForward(model)
    grid = make_grid(args.steps)
    guided = sample(guided_fwd, inputs, grid, SamplerSpec(cfg_strength=args.cfg), start=0)
    plain = sample(plain_fwd, inputs, grid, SamplerSpec(cfg_strength=0.0), start=0)
    assert guided.completed and plain.completed
    doubled, single = guided_fwd.median, plain_fwd.median

    rows = [
        ("model", f"{args.preset}: {params / 1e6:,.1f} M params, float32"),
        ("threads", f"{torch.get_num_threads()}"),
        ("shape", f"{n} frames, {args.steps} euler steps, cfg {args.cfg}"),
        ("build model (random weights)", f"{build_s:8.2f} s"),
        ("prepare conditioning (once)", f"{prepare_s:8.3f} s"),
        ("forward, batch 1 (cfg = 0)", f"{single:8.3f} s / evaluation"),
        ("guided: doubled batch", f"{doubled:8.3f} s / evaluation (in the run)"),
        ("A/B: doubled batch", f"{doubled_ab:8.3f} s / evaluation"),
        ("A/B: two sequential forwards", f"{two:8.3f} s / evaluation"),
        ("doubled-batch speed-up", f"{two / doubled_ab:8.3f} x"),
        ("sampling, guided", f"{guided.elapsed:8.3f} s, {guided.evaluations} evaluations"),
        ("  overhead (target <= 1.03)", f"{guided.elapsed / guided_fwd.total:8.4f}"),
        ("sampling, cfg = 0", f"{plain.elapsed:8.3f} s, {plain.evaluations} evaluations"),
        ("  overhead (target <= 1.03)", f"{plain.elapsed / plain_fwd.total:8.4f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}} | value")
    print(f"{'-' * width}-+-{'-' * 44}")
    for key, value in rows:
        print(f"{key:<{width}} | {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
