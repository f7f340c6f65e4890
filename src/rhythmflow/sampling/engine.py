"""The sampling driver: noise → guided velocity → solver over the time grid → final latent.

:func:`sample` is independent of the model class: it takes a ``forward(x, t, conditioning)``
callable and :class:`~rhythmflow.sampling.guidance.SamplingInputs` (built once per generation,
e.g. by :func:`~rhythmflow.sampling.guidance.prepare_inputs` from a DiT). It observes a deadline
and a cancel token before every model evaluation, reports progress after every step, refuses
NaN/Inf states and returns a typed :class:`SampleResult` — never hangs on a timeout.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

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
from rhythmflow.sampling.schedules import DEFAULT_SWAY_COEF, make_grid
from rhythmflow.sampling.solvers import VelocityFn, get_solver
from rhythmflow.sampling.state import SamplerState, SampleSettings, check_resumable

log = logging.getLogger(__name__)

Status = Literal["completed", "timeout", "cancelled"]


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
            "decoded. Try float32 (--dtype float32), a lower cfg_strength or another seed, and "
            "check that the checkpoint is not corrupt"
        )


def _initial_state(
    inputs: SamplingInputs,
    settings: SampleSettings,
    grid: Tensor,
    noise: Tensor | None,
    resume_state: SamplerState | None,
) -> tuple[Tensor, int]:
    """(x, completed steps) to start from: the resume state, explicit noise or seeded noise."""
    shape, steps = settings.shape, settings.steps
    if resume_state is not None:
        if noise is not None:
            raise UsageError("noise and resume_state exclude each other: the state holds x already")
        check_resumable(resume_state, settings, grid, inputs.edit_mask)
        x, start, what = resume_state.x, resume_state.step, "loaded from the resume state"
    elif noise is not None:
        if tuple(noise.shape) != shape:
            raise UsageError(f"noise must be {list(shape)}, got {list(noise.shape)}")
        x, start, what = noise, 0, "given as initial noise"
    else:
        x, start, what = initial_noise(*shape, settings.seed), 0, "of the initial noise"
    x = x.to(inputs.device, torch.float32)
    _check_finite(x, start, steps, float(grid[start]), what)
    return x, start


def sample(
    forward: ModelForward,
    inputs: SamplingInputs,
    *,
    steps: int,
    cfg_strength: float,
    solver: str = "euler",
    schedule: str = "uniform",
    sway_coef: float | None = None,
    guidance_interval: tuple[float, float] | None = None,
    seed: int | None = None,
    noise: Tensor | None = None,
    model_dtype: torch.dtype | None = None,
    deadline: Deadline | None = None,
    cancel: CancelLike | None = None,
    callback: Callable[[SampleEvent], None] | None = None,
    anytime: bool = False,
    resume_state: SamplerState | None = None,
    tag: str = "",
    checkpoint: str | os.PathLike | None = None,
    guidance_layout: str = "batched",
) -> SampleResult:
    """Integrate the flow from noise (t = 0) to data (t = 1) and return a :class:`SampleResult`.

    ``steps`` solver steps over the ``schedule`` grid (the original's ``steps=N`` grid points are
    ``steps=N-1`` here); ``solver`` one of euler/midpoint/heun/rk4; guidance ``cfg_strength`` (0 =
    no unconditional pass) optionally only for t in ``guidance_interval``. Initial noise: ``noise``
    [b, n, m] if given, else item i drawn with seed ``seed + i`` (a random seed when None, reported
    in the result). ``model_dtype`` defaults to ``forward.dtype`` (else float32); the state is float32.

    Before every model evaluation the ``cancel`` token and the ``deadline`` are checked; when one
    fires the run stops with status "cancelled"/"timeout" and a resumable ``state`` (the last
    completed step). With ``anytime=True`` a timeout still yields a latent: one Euler jump to t = 1
    from that state (at most one evaluation past the deadline). ``resume_state`` continues a
    stopped run; the settings (and ``tag``, a fingerprint of the inputs chosen by the caller) must
    match, else UsageError; the final latent is bit-identical to an uninterrupted run. The
    ``guidance_layout`` ("batched" one doubled forward, "split" two forwards; the same maths,
    different GEMM rounding — see :class:`GuidedVelocity`) is one of those settings: it is
    recorded in the state, and a resume with another layout is refused.

    ``callback`` gets a :class:`SampleEvent` after every step. NaN/Inf in the state raises
    NumericalError naming the step.

    ``checkpoint``: a file path; after every completed step but the last, the resumable state is
    saved there atomically (:meth:`SamplerState.save`, reason "checkpoint") *before* the step's
    event is reported, so a process killed at any point leaves a state at least as far as the
    last event it reported; ``resume_state=SamplerState.load(checkpoint)`` continues it
    bit-identically. With a checkpoint, a step that completes after ``cancel`` was set is neither
    saved nor reported (a worker that lost its job writes nothing more; the file stays at the
    last reported step); the returned ``state`` still includes it.
    """
    started = time.perf_counter()
    spec = get_solver(solver)
    if schedule == "sway" and sway_coef is None:
        sway_coef = DEFAULT_SWAY_COEF
    grid = make_grid(steps, schedule, sway_coef)
    check_guidance(cfg_strength, guidance_interval)
    dtype = model_dtype or _model_dtype(forward)
    device = inputs.device
    if resume_state is not None and seed is None:
        seed = resume_state.settings.seed
    if resume_state is None and noise is None and seed is None:
        seed = secrets.randbelow(2**31)
    settings = SampleSettings(
        steps=steps,
        solver=solver,
        schedule=schedule,
        sway_coef=sway_coef,
        cfg_strength=float(cfg_strength),
        guidance_interval=None
        if guidance_interval is None
        else tuple(map(float, guidance_interval)),
        seed=seed,
        shape=tuple(inputs.shape),
        model_dtype=str(dtype).removeprefix("torch."),
        tag=tag,
        guidance_layout=guidance_layout,
    )
    velocity = GuidedVelocity(forward, inputs, cfg_strength, settings.guidance_interval, dtype,
                              layout=guidance_layout)
    x, start = _initial_state(inputs, settings, grid, noise, resume_state)
    grid = grid.to(device)

    monitor = _Monitor(velocity, deadline, cancel)
    tracker = ProgressTracker(steps, start)
    current = {"x": x, "step": start}
    monitor.set_state(x)
    prior_evals = 0 if resume_state is None else resume_state.evaluations
    prior_elapsed = 0.0 if resume_state is None else resume_state.elapsed

    def state_at(x_k: Tensor, k: int, reason: str) -> SamplerState:
        """The resumable state after ``k`` steps (counting evaluations and time of earlier
        calls)."""
        return SamplerState(x=x_k, step=k, grid=grid.cpu(), settings=settings,
                            edit_mask=inputs.edit_mask,
                            evaluations=prior_evals + monitor.evaluations,
                            elapsed=prior_elapsed + time.perf_counter() - started, reason=reason)

    def on_step(i: int, t: Tensor, x_new: Tensor) -> None:
        k = start + i + 1
        _check_finite(x_new, k, steps, float(t), "after a solver step")
        current.update(x=x_new, step=k)
        monitor.set_state(x_new)
        if checkpoint is not None and k < steps:
            if cancel is not None and cancel.is_set():
                return  # stopping: neither saved nor reported (the file = the last event)
            state_at(x_new, k, "checkpoint").save(checkpoint)
        event = tracker.event(k, float(t), monitor.evaluations, x_new)
        log.debug("%s", event.describe())
        if callback is not None:
            callback(event)

    log.debug(
        "sampling: %d %s steps from step %d, cfg=%s, shape=%s, model dtype %s",
        steps,
        solver,
        start,
        cfg_strength,
        list(inputs.shape),
        settings.model_dtype,
    )
    status: Status = "completed"
    with torch.inference_mode():
        try:
            x_final = spec(monitor, x, grid[start:], on_step)
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
        if anytime and status == "timeout":
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
