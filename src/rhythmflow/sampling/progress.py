"""Observability and control of a sampling run: progress events, ETA, deadline, cancel token.

The engine checks the :class:`Deadline` and the cancel token before every model evaluation and
emits one :class:`SampleEvent` after every solver step. Nothing here draws anything: the CLI turns
events into a bar and a log line (:meth:`SampleEvent.describe`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor

Clock = Callable[[], float]


@dataclass(frozen=True)
class SampleEvent:
    """Progress after one completed solver step.

    step:         solver steps completed, 1..total (counts steps done before a resume)
    total:        solver steps of the whole run
    t:            flow time reached (0 = noise, 1 = data)
    elapsed:      seconds since this ``sample`` call started
    eta:          estimated seconds until the last step is done
    sec_per_step: current estimate of seconds per step (this call's steps)
    evaluations:  velocity evaluations in this call (a guided doubled-batch forward counts once)
    x:            the state after this step, [b, n, m] float32 — read it, do not modify it
    """

    step: int
    total: int
    t: float
    elapsed: float
    eta: float
    sec_per_step: float
    evaluations: int
    x: Tensor = field(repr=False, compare=False)

    @property
    def fraction(self) -> float:
        """Share of the steps done, in [0, 1]."""
        return self.step / self.total

    def describe(self) -> str:
        """A one-line log message, e.g. ``step 3/32 t=0.094 | 1.20 s/step | ETA 35 s | 3 evals``."""
        return (
            f"step {self.step}/{self.total} t={self.t:.3f} | {self.sec_per_step:.2f} s/step | "
            f"ETA {format_seconds(self.eta)} | {self.evaluations} evals"
        )


def format_seconds(seconds: float) -> str:
    """Compact duration: ``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class ProgressTracker:
    """Turns completed steps into :class:`SampleEvent` s with a running ETA.

    The first step's duration gives the first estimate; from the second step on, the estimate is
    the mean of the steps after the first (the first one carries one-off warm-up costs).
    """

    def __init__(self, total: int, start_step: int = 0, clock: Clock = time.perf_counter) -> None:
        self.total = total
        self.start_step = start_step
        self._clock = clock
        self._t0 = clock()
        self._t_first: float | None = None

    @property
    def elapsed(self) -> float:
        return self._clock() - self._t0

    def event(self, step: int, t: float, evaluations: int, x: Tensor) -> SampleEvent:
        """The event for ``step`` (global, 1-based) just completed at flow time ``t``."""
        now = self._clock()
        elapsed = now - self._t0
        done = step - self.start_step
        if self._t_first is None or done <= 1:
            self._t_first = now
            per_step = elapsed / max(done, 1)
        else:
            per_step = (now - self._t_first) / (done - 1)
        eta = per_step * (self.total - step)
        return SampleEvent(step, self.total, t, elapsed, eta, per_step, evaluations, x)


class Deadline:
    """A point in time (on a monotonic clock) after which the run must stop."""

    def __init__(self, at: float, clock: Clock = time.monotonic) -> None:
        self.at = at
        self._clock = clock

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left (negative once expired)."""
        return self.at - self._clock()

    def expired(self) -> bool:
        return self._clock() >= self.at

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.1f}s)"


class CancelLike(Protocol):
    """Anything with ``is_set()``: a :class:`CancelToken` or a plain ``threading.Event``."""

    def is_set(self) -> bool: ...


class CancelToken:
    """A cooperative cancel flag; safe to set from a signal handler or another thread.

    The run stops at the next model-evaluation boundary after :meth:`cancel`.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
