"""``generate --plan``: a plan as a readable table (the command line's rendering of it)."""

from __future__ import annotations

from rhythmflow.planner.core import Plan


def describe(p: Plan) -> str:
    """A readable table of a plan (``rhythmflow generate --plan`` without ``--json``)."""
    from rhythmflow.sampling.progress import format_seconds

    e = p.estimate
    rows = [
        ("model", p.model), ("duration", f"{p.duration:g} s ({p.frames} latent frames)"),
        ("device", f"{p.runtime.device} ({p.runtime.dtype}, {p.runtime.threads} threads, "
                   f"VAE on {p.runtime.vae_device}" + (
                       " in float32)" if p.runtime.vae_dtype == "float32" else
                       f" with {p.runtime.vae_dtype} residual convolutions)")),
        ("sampler", f"{p.steps} {p.request.solver} steps, {p.request.schedule} grid, "
                    f"cfg {p.request.cfg_strength:g}" +
                    (f" in {list(p.request.guidance_interval)}"
                     if p.request.guidance_interval else "")),
        ("seed", f"{p.seed} (batch {p.request.batch})"),
        ("memory", p.memory.describe()),
    ]
    if e.known:
        rows += [("time", f"~{format_seconds(e.total)} ({e.basis})"),
                 ("  load", format_seconds(e.load)), ("  lyrics", format_seconds(e.lyrics)),
                 ("  style", format_seconds(e.style)),
                 ("  sampling", f"{format_seconds(e.sampling)} ({e.evaluations} evaluations)"),
                 ("  decode", format_seconds(e.decode))]
    else:
        rows.append(("time", "unknown (no measurement of this machine)"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"- {r}" for r in p.reasons]
    return "\n".join(lines)
