"""The sampling driver: noise → guided velocity → solver over the time grid → final latent.

:func:`sample` is independent of the model class: it takes a ``forward(x, t, conditioning)``
callable and :class:`~rhythmflow.sampling.guidance.SamplingInputs` (built once per generation,
e.g. by :func:`~rhythmflow.sampling.guidance.prepare_inputs` from a DiT). The caller decides
everything else once and passes it as values: the time grid (a tensor, from
:func:`~rhythmflow.sampling.schedules.make_grid`), how to integrate (:class:`SamplerSpec`), where
to start (a seed, explicit noise or a :class:`SamplerState`) and how the run may be stopped
(:class:`SampleControl`). It observes a deadline and a cancel token before every model
evaluation, reports progress after every step, refuses NaN/Inf states and returns a typed
:class:`SampleResult` — never hangs on a timeout.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

import torch
from torch import Tensor

from rhythmflow.errors import NumericalError, UsageError
from rhythmflow.sampling.guidance import (
    GuidedVelocity,
    ModelForward,
    SamplingInputs,
    check_guidance,
)
from rhythmflow.sampling.progress import CancelLike, Deadline, ProgressTracker, SampleEvent
from rhythmflow.sampling.solvers import VelocityFn, get_solver
from rhythmflow.sampling.state import SamplerState, SampleSettings, check_resumable

log = logging.getLogger(__name__)

Status = Literal["completed", "timeout", "cancelled"]

#: Where a run starts: a seed (item i drawn with ``seed + i``), explicit noise [b, n, m], or a
#: stopped run's state to resume.
Start: TypeAlias = int | Tensor | SamplerState


@dataclass(frozen=True)
class SamplerSpec:
    """How to integrate — everything besides the grid that a saved state records and a resume
    must repeat.

    solver:            "euler", "midpoint", "heun" or "rk4"
    cfg_strength:      guidance strength s of ``v_c + s·(v_c − v_u)``; 0 = no unconditional pass
    guidance_interval: (lo, hi): guide only for lo <= t <= hi; None = at every step
    guidance_layout:   "batched" (one doubled forward) or "split" (two forwards): the same maths,
                       different GEMM rounding (see :class:`GuidedVelocity`)
    model_dtype:       dtype the model runs in; None = ``forward.dtype`` (else float32). The state
                       and every update stay float32
    tag:               a fingerprint of the inputs (lyrics, style, checkpoint …) chosen by the
                       caller; a resume with another tag is refused

    Contradictory or unknown values raise UsageError here, before any work.
    """

    solver: str = "euler"
    cfg_strength: float = 0.0
    guidance_interval: tuple[float, float] | None = None
    guidance_layout: str = "batched"
    model_dtype: torch.dtype | None = None
    tag: str = ""

    def __post_init__(self) -> None:
        get_solver(self.solver)
        check_guidance(self.cfg_strength, self.guidance_interval)
        if self.guidance_layout not in GuidedVelocity.LAYOUTS:
            raise UsageError(f"guidance_layout must be 'batched' or 'split', "
                             f"got {self.guidance_layout!r}")
        if self.model_dtype is not None and not isinstance(self.model_dtype, torch.dtype):
            raise UsageError(f"model_dtype must be a torch.dtype or None, got {self.model_dtype!r}")
        if not isinstance(self.tag, str):
            raise UsageError(f"tag must be a string, got {self.tag!r}")
        object.__setattr__(self, "cfg_strength", float(self.cfg_strength))
        if self.guidance_interval is not None:
            object.__setattr__(self, "guidance_interval", tuple(map(float,
                                                                    self.guidance_interval)))


@dataclass(frozen=True)
class SampleControl:
    """How a run may stop early, and what it leaves behind.

    deadline:   checked before every model evaluation; when passed the run stops ("timeout")
    cancel:     a token with ``is_set()`` (:class:`CancelToken`, ``threading.Event``), checked
                likewise ("cancelled")
    anytime:    on a timeout, still return a latent: one Euler jump to t = 1 from the last
                completed step (at most one evaluation past the deadline)
    checkpoint: a file path; the resumable state is saved there after every completed step but
                the last, before the step's event is reported (see :func:`sample`)
    """

    deadline: Deadline | None = None
    cancel: CancelLike | None = None
    anytime: bool = False
    checkpoint: str | os.PathLike | None = None


_NO_CONTROL = SampleControl()


@dataclass(frozen=True)
class SampleResult:
    """Outcome of :func:`sample`.

    status:      "completed", "timeout" (deadline passed) or "cancelled" (cancel token set)
    latent:      [b, n, m] float32 final latent with kept frames taken from the reference; None
                 when stopped early without ``anytime``
    anytime:     True when ``latent`` comes from the one-jump "anytime" finish after a timeout
    state:       the resumable state when stopped early (save it with ``state.save(path)``)
    steps_done:  solver steps completed (including those done before a resume)
    total_steps: solver steps of the whole run
    evaluations: velocity evaluations in this call (including an anytime jump)
    elapsed:     wall seconds of this call
    seed:        the seed of the initial noise (None when explicit noise was given)
    final_state: when completed, the state at the last step (``reason`` "completed"): saved
                 when a later stage fails, a resume from it only decodes (no model evaluation)
    """

    status: Status
    latent: Tensor | None
    state: SamplerState | None
    steps_done: int
    total_steps: int
    evaluations: int
    elapsed: float
    seed: int | None
    anytime: bool = False
    final_state: SamplerState | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"


def initial_noise(batch: int, frames: int, channels: int, seed: int) -> Tensor:
    """[batch, frames, channels] float32 standard normal noise on the CPU; item i is drawn from its
    own ``torch.Generator`` seeded ``seed + i``, so an item does not depend on the batch size."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed must be a whole number >= 0, got {seed!r}")
    items = [
        torch.randn(frames, channels, generator=torch.Generator().manual_seed(seed + i))
        for i in range(batch)
    ]
    return torch.stack(items)


class _Interrupted(Exception):
    def __init__(self, status: Status) -> None:
        super().__init__(status)
        self.status = status


class _Monitor:
    """Wraps the velocity: checks cancel and deadline before each evaluation and counts them.

    Remembers the evaluation at the start of the current step, (x_k, t_k), so an anytime finish
    can reuse it instead of evaluating again.
    """

    def __init__(
        self, velocity: VelocityFn, deadline: Deadline | None, cancel: CancelLike | None
    ) -> None:
        self.velocity, self.deadline, self.cancel = velocity, deadline, cancel
        self.evaluations = 0
        self.state_x: Tensor | None = None
        self.state_v: tuple[float, Tensor] | None = None

    def set_state(self, x: Tensor) -> None:
        self.state_x, self.state_v = x, None

    def evaluate(self, x: Tensor, t: Tensor) -> Tensor:
        v = self.velocity(x, t)
        self.evaluations += 1
        if x is self.state_x:
            self.state_v = (float(t), v)
        return v

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if self.cancel is not None and self.cancel.is_set():
            raise _Interrupted("cancelled")
        if self.deadline is not None and self.deadline.expired():
            raise _Interrupted("timeout")
        return self.evaluate(x, t)

    def velocity_at_state(self, t: Tensor) -> Tensor:
        """v(state_x, t), reused when already evaluated in the interrupted step."""
        if self.state_v is not None and self.state_v[0] == float(t):
            return self.state_v[1]
        return self.evaluate(self.state_x, t)


def _model_dtype(forward: ModelForward) -> torch.dtype:
    dtype = getattr(forward, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def _check_finite(x: Tensor, step: int, total: int, t: float, what: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise NumericalError(
            f"NaN/Inf in the sampler state {what} (step {step}/{total}, t={t:.4f}); nothing was "
            "decoded. Try float32 (dtype=float32), a lower cfg_strength or another seed, and "
            "check that the checkpoint is not corrupt"
        )


def _check_grid(grid: Tensor) -> int:
    """The number of solver steps of ``grid``; UsageError unless it is a 1-D float32 tensor rising
    strictly from exactly 0 (noise) to exactly 1 (data)."""
    if not isinstance(grid, Tensor) or grid.ndim != 1 or grid.numel() < 2 \
            or grid.dtype != torch.float32:
        got = (f"shape {list(grid.shape)} {grid.dtype}" if isinstance(grid, Tensor)
               else type(grid).__name__)
        raise UsageError(f"grid must be a 1-D float32 tensor of at least 2 time points, got "
                         f"{got}; build it with make_grid(steps, schedule, sway_coef)")
    g = grid.detach().cpu()
    if not (float(g[0]) == 0.0 and float(g[-1]) == 1.0 and bool((g[1:] > g[:-1]).all())):
        raise UsageError("grid must rise strictly from exactly 0 (noise) to exactly 1 (data); "
                         "build it with make_grid(steps, schedule, sway_coef)")
    return g.numel() - 1


def _seed_of(start: Start) -> int | None:
    """The seed a run from ``start`` reports (and records in its state)."""
    if isinstance(start, SamplerState):
        return start.settings.seed
    if isinstance(start, Tensor):
        return None
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise UsageError(
            f"start must be a seed (a whole number >= 0), an initial noise tensor [b, n, m] or a "
            f"SamplerState to resume, got {start!r}; the sampler draws no random seed — pass the "
            "plan's seed"
        )
    return start


def _initial_state(
    inputs: SamplingInputs, settings: SampleSettings, grid: Tensor, start: Start
) -> tuple[Tensor, int]:
    """(x, completed steps) to start from: the resume state, explicit noise or seeded noise."""
    shape, steps = settings.shape, settings.steps
    if isinstance(start, SamplerState):
        check_resumable(start, settings, grid, inputs.edit_mask)
        x, step, what = start.x, start.step, "loaded from the resume state"
    elif isinstance(start, Tensor):
        if tuple(start.shape) != shape:
            raise UsageError(f"the initial noise (start) must be {list(shape)}, "
                             f"got {list(start.shape)}")
        x, step, what = start, 0, "given as initial noise"
    else:
        x, step, what = initial_noise(*shape, settings.seed), 0, "of the initial noise"
    x = x.to(inputs.device, torch.float32)
    _check_finite(x, step, steps, float(grid[step]), what)
    return x, step


def sample(
    forward: ModelForward,
    inputs: SamplingInputs,
    grid: Tensor,
    spec: SamplerSpec,
    start: Start,
    control: SampleControl | None = None,
    on_step: Callable[[SampleEvent], None] | None = None,
) -> SampleResult:
    """Integrate the flow over ``grid`` from noise (t = 0) to data (t = 1); a :class:`SampleResult`.

    ``grid``: the float32 time grid, ``steps + 1`` points from 0 to 1 (build it with
    :func:`~rhythmflow.sampling.schedules.make_grid`; the original's ``steps=N`` grid points are
    ``make_grid(N - 1)``). ``spec``: solver, guidance and model dtype (:class:`SamplerSpec`).
    ``start``: an int seed (item i drawn with ``seed + i``, reported in the result), explicit
    noise [b, n, m], or a :class:`SamplerState` to resume — its recorded settings, grid, shape
    and edit mask must match this run (``spec``, ``grid`` and ``inputs``), else UsageError naming
    every difference; the final latent is then bit-identical to an uninterrupted run. The
    ``guidance_layout`` is one of those settings: a resume with another layout is refused.

    ``control`` (:class:`SampleControl`, None = run to the end): the ``cancel`` token and the
    ``deadline`` are checked before every model evaluation; when one fires the run stops with
    status "cancelled"/"timeout" and a resumable ``state`` (the last completed step). With
    ``anytime`` a timeout still yields a latent: one Euler jump to t = 1 from that state.
    ``checkpoint``: after every completed step but the last, the resumable state is saved there
    atomically (:meth:`SamplerState.save`, reason "checkpoint") *before* the step's event is
    reported, so a process killed at any point leaves a state at least as far as the last event
    it reported; ``start=SamplerState.load(checkpoint)`` continues it bit-identically. With a
    checkpoint, a step that completes after ``cancel`` was set is neither saved nor reported (a
    worker that lost its job writes nothing more; the file stays at the last reported step); the
    returned ``state`` still includes it.

    ``on_step`` gets a :class:`SampleEvent` after every step. NaN/Inf in the state raises
    NumericalError naming the step.
    """
    started = time.perf_counter()
    if not isinstance(spec, SamplerSpec):
        raise UsageError(f"spec must be a SamplerSpec, got {type(spec).__name__}")
    control = _NO_CONTROL if control is None else control
    steps = _check_grid(grid)
    solve = get_solver(spec.solver)
    seed = _seed_of(start)
    dtype = spec.model_dtype or _model_dtype(forward)
    grid_cpu = grid.detach().to("cpu", copy=True)  # the state's own copy
    settings = SampleSettings(
        steps=steps,
        solver=spec.solver,
        cfg_strength=spec.cfg_strength,
        guidance_interval=spec.guidance_interval,
        seed=seed,
        shape=tuple(inputs.shape),
        model_dtype=str(dtype).removeprefix("torch."),
        tag=spec.tag,
        guidance_layout=spec.guidance_layout,
    )
    velocity = GuidedVelocity(forward, inputs, spec.cfg_strength, spec.guidance_interval, dtype,
                              layout=spec.guidance_layout)
    x, first = _initial_state(inputs, settings, grid_cpu, start)
    resumed = start if isinstance(start, SamplerState) else None
    grid = grid.to(inputs.device)
    cancel, checkpoint = control.cancel, control.checkpoint

    monitor = _Monitor(velocity, control.deadline, cancel)
    tracker = ProgressTracker(steps, first)
    current = {"x": x, "step": first}
    monitor.set_state(x)
    prior_evals = 0 if resumed is None else resumed.evaluations
    prior_elapsed = 0.0 if resumed is None else resumed.elapsed

    def state_at(x_k: Tensor, k: int, reason: str) -> SamplerState:
        """The resumable state after ``k`` steps (counting evaluations and time of earlier
        calls)."""
        return SamplerState(x=x_k, step=k, grid=grid_cpu, settings=settings,
                            edit_mask=inputs.edit_mask,
                            evaluations=prior_evals + monitor.evaluations,
                            elapsed=prior_elapsed + time.perf_counter() - started, reason=reason)

    def after_step(i: int, t: Tensor, x_new: Tensor) -> None:
        k = first + i + 1
        _check_finite(x_new, k, steps, float(t), "after a solver step")
        current.update(x=x_new, step=k)
        monitor.set_state(x_new)
        if checkpoint is not None and k < steps:
            if cancel is not None and cancel.is_set():
                return  # stopping: neither saved nor reported (the file = the last event)
            state_at(x_new, k, "checkpoint").save(checkpoint)
        event = tracker.event(k, float(t), monitor.evaluations, x_new)
        log.debug("%s", event.describe())
        if on_step is not None:
            on_step(event)

    log.debug(
        "sampling: %d %s steps from step %d, cfg=%s, shape=%s, model dtype %s",
        steps,
        spec.solver,
        first,
        spec.cfg_strength,
        list(inputs.shape),
        settings.model_dtype,
    )
    status: Status = "completed"
    with torch.inference_mode():
        try:
            x_final = solve(monitor, x, grid[first:], after_step)
        except _Interrupted as stop:
            status = stop.status
    x, k = current["x"], current["step"]
    final_state = None
    if status == "completed":
        latent, state, jumped = inputs.finish(x_final), None, False
        final_state = state_at(x_final, steps, "completed")
    else:
        state = state_at(x, k, status)
        latent, jumped = None, False
        if control.anytime and status == "timeout":
            with torch.inference_mode():
                t_k = grid[k]
                x_any = x + (grid[-1] - t_k) * monitor.velocity_at_state(t_k)
            _check_finite(x_any, k, steps, float(t_k), "after the anytime jump to t=1")
            latent, jumped = inputs.finish(x_any), True
    elapsed = time.perf_counter() - started
    log.debug(
        "sampling %s after %d/%d steps, %d evaluations, %.1f s%s",
        status,
        k,
        steps,
        monitor.evaluations,
        elapsed,
        " (anytime finish)" if jumped else "",
    )
    return SampleResult(status, latent, state, k, steps, monitor.evaluations, elapsed, seed, jumped,
                        final_state)
