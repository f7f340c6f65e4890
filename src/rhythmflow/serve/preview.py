"""Previews while sampling (worker side; imports torch lazily): the current estimate of the
finished song, x̂₁ = x_t + (1 − t)·v, decoded as a short, cheap excerpt.

The velocity comes from the last two states the sampler reported: v = (x_k − x_{k−1}) /
(t_k − t_{k−1}) is the velocity an Euler step used (for the other solvers the step's effective
velocity), so no model evaluation is added; at t = 1 the estimate is the state itself. Only item
0's first ``SECONDS`` seconds are decoded, mixed to mono, decimated to about 22 kHz and written as
Ogg Vorbis into ``jobs/<id>/previews/``. A preview reads the state and never changes it: the
final audio is byte-identical with or without previews.

When: a job's ``preview_every`` N → at every N-th step (and at the last step if none was made
before: a job that asks gets at least one). Without it (the server's default, ``auto``) a
preview is made when the previews so far plus the next one's expected cost stay within
``BUDGET`` of the sampling time elapsed, at most one per eighth of the steps, never at the last
step (the song itself comes next).
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
BUDGET = 0.05  # share of the sampling time the default previews may take
SECONDS = 10.0  # excerpt length
TARGET_RATE = 16000  # decimated to the first whole divisor of the VAE's rate at or above it


def measure(decode: Callable, clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds one preview decode takes (a silent excerpt decoded once, e.g. when a worker has
    loaded its model: the expected cost the default previews are budgeted with)."""
    import torch

    from rhythmflow.specs import FRAME_RATE, LATENT_CHANNELS

    x = torch.zeros(1, math.ceil(SECONDS * FRAME_RATE), LATENT_CHANNELS)
    t0 = clock()
    with torch.inference_mode():
        decode(x)
    return clock() - t0


class Previewer:
    """The ``on_sample`` hook of one job: decides, decodes, writes, reports.

    ``decode(latents [1, n, 64]) -> audio [1, 2, s]`` (the generator's VAE); ``emit(dict)``
    records the event ``{"event": "preview", "step", "file", "seconds", "took"}``;
    ``expected``: the expected seconds of one preview (:func:`measure`; None: unknown, a
    step's time is assumed), replaced by the measured one after each preview."""

    def __init__(self, every: int | None, folder: Path, decode: Callable, sample_rate: int,
                 frames_per_second: float, emit: Callable[[dict[str, Any]], None],
                 expected: float | None = None, clock: Callable[[], float] = time.perf_counter
                 ) -> None:
        self.every, self.folder, self.decode = every, Path(folder), decode
        self.sample_rate, self.emit, self.clock = sample_rate, emit, clock
        self.frames = max(1, math.ceil(SECONDS * frames_per_second))
        self.expected = expected
        self.spent = 0.0
        self.made = 0
        self.last_step = 0
        self.pending = False
        self._prev = None  # (x excerpt [1, f, m], t) of the last step

    def __call__(self, e) -> None:
        x = e.x[:1, : self.frames].detach()
        prev, self._prev = self._prev, (x.clone(), float(e.t))
        if self.every == 0 or not (self._due(e) or self.pending):
            return
        if e.t < 1.0 and (prev is None or prev[1] >= e.t):
            self.pending = True  # no velocity yet (the first step after a start or resume)
            return
        self.pending = False
        try:
            self._make(e, x, prev)
        except Exception as exc:  # a preview never fails the job
            log.warning("preview at step %d failed (%s: %s); no more previews for this job",
                        e.step, type(exc).__name__, exc)
            self.every = 0

    def _due(self, e) -> bool:
        if self.every is not None:
            return e.step % self.every == 0 or (e.step == e.total and self.made == 0)
        if e.step >= e.total or e.step - self.last_step < max(1, e.total // 8):
            return False
        expected = self.expected if self.expected is not None else e.sec_per_step
        return self.spent + expected <= BUDGET * e.elapsed

    def _make(self, e, x, prev) -> None:
        import soundfile as sf
        import torch

        from rhythmflow.audio.io import atomic_write_bytes

        t0 = self.clock()
        with torch.inference_mode():
            if e.t >= 1.0 or prev is None:
                x1 = x
            else:
                px, pt = prev
                x1 = x + (1.0 - e.t) * (x - px) / (e.t - pt)
            audio = self.decode(x1.float()).float().cpu()[0]  # [2, s]
            mono = audio.mean(0)
            factor = max(1, self.sample_rate // TARGET_RATE)
            n = mono.shape[-1] // factor * factor
            mono = mono[:n].reshape(-1, factor).mean(1).clamp(-1.0, 1.0).numpy()
        rate = self.sample_rate // factor
        buf = io.BytesIO()
        sf.write(buf, mono, rate, format="OGG", subtype="VORBIS")
        name = f"step-{e.step:04d}.ogg"
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.folder / name, buf.getvalue())
        took = self.clock() - t0
        self.spent += took
        self.expected = took
        self.made += 1
        self.last_step = e.step
        self.emit({"event": "preview", "step": e.step, "file": name,
                   "seconds": round(len(mono) / rate, 3), "took": round(took, 4)})
