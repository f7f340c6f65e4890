"""Shared helpers of the benchmark scripts: machine facts, GEMM brackets, tables, sub-processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from rhythmflow.machine.perf import measure_gemm_gflops

HERE = Path(__file__).resolve().parent
#: The model's dominant GEMM: [tokens × dim] · [dim × ff] (gate / up projections at 2048 frames).
REF_SHAPE = (2048, 2048, 8192)


def machine() -> dict:
    """CPU model, core count, the ISA flags that decide which arithmetic is fast (read as the
    machine probe reads them: :func:`rhythmflow.machine.probe.cpu_facts`), torch version and threads."""
    from rhythmflow.machine.host import cpu_facts

    model, isa = cpu_facts()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "isa": list(isa),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quantized_engine": torch.backends.quantized.engine,
    }


def rel_rms(a: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative RMS error of ``a`` against ``ref``, computed in float32."""
    a, ref = a.float(), ref.float()
    return float((a - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())


def ref_gemm(repeats: int = 2, clock_kind: str = "wall") -> float:
    """fp32 GFLOP/s at the reference shape (nn.Linear layout)."""
    return measure_gemm_gflops(*REF_SHAPE, repeats=repeats, warmup=1, clock_kind=clock_kind)


def table(title: str, header: list[str], rows: list[list]) -> str:
    """A plain-text table (also valid Markdown)."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)
    ]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    out = [f"\n### {title}\n", line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out)


def run_worker(script: str, args: list[str], timeout: float = 3600) -> dict:
    """Run ``benchmarks/<script>`` in a fresh process (clean peak memory, own malloc settings)
    and return the JSON object it prints on its last stdout line."""
    cmd = [sys.executable, str(HERE / script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
