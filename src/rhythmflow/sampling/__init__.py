"""Flow-matching sampler: time grids, ODE solvers, guidance, progress/deadline/cancel, resume.

Conventions (as DiffRhythm):

* Time runs from t = 0 (pure noise x0 ~ N(0, I)) to t = 1 (data x1).
* The model predicts the velocity v = x1 − x0 of the straight path x_t = (1 − t)·x0 + t·x1;
  sampling integrates dx/dt = v(x, t). Euler: x ← x + (t₁ − t₀)·v(x, t₀).
* ``steps`` counts solver steps (grid intervals); a grid has ``steps + 1`` points. The original's
  ``steps=32`` meant 32 grid points, i.e. 31 Euler steps: ``make_grid(31)`` reproduces it. The
  caller builds the grid (a tensor) and passes it to :func:`sample`.
* Guidance: v = v_c + s·(v_c − v_u) with s = ``cfg_strength``; the unconditional pass drops the
  lyrics and the reference latent and uses the negative style embedding.
* The state and every update are float32, whatever dtype the model runs in.
* Editing: frames outside the segments to generate come from the reference latent; the model sees
  the reference only there (``where(mask, 0, reference)``), the output is
  ``where(mask, x_final, reference)``.

Typical use::

    inputs = prepare_inputs(model, text=tokens, style=style, negative_style=negative, batch=2)
    grid, spec = make_grid(31), SamplerSpec(cfg_strength=4.0)
    result = sample(model, inputs, grid, spec, start=0, on_step=on_event)
    if result.completed:
        latent = result.latent
    elif result.state is not None:
        result.state.save("song.resume")  # later: start=SamplerState.load("song.resume")

Shape legend: b - batch, n - latent frames, m - latent channels (64).
"""

from rhythmflow.sampling.engine import (
    SampleControl,
    SampleResult,
    SamplerSpec,
    Start,
    initial_noise,
    sample,
)
from rhythmflow.sampling.guidance import (
    GuidedVelocity,
    ModelForward,
    SamplingInputs,
    prepare_inputs,
    segments_to_mask,
)
from rhythmflow.sampling.progress import CancelToken, Deadline, ProgressTracker, SampleEvent
from rhythmflow.sampling.schedules import SCHEDULES, make_grid, sway_grid, uniform_grid
from rhythmflow.sampling.solvers import (
    SOLVERS,
    Solver,
    VelocityFn,
    euler,
    get_solver,
    heun,
    integrate,
    midpoint,
    rk4,
)
from rhythmflow.sampling.state import SamplerState, SampleSettings

__all__ = [
    "SCHEDULES",
    "SOLVERS",
    "CancelToken",
    "Deadline",
    "GuidedVelocity",
    "ModelForward",
    "ProgressTracker",
    "SampleControl",
    "SampleEvent",
    "SampleResult",
    "SampleSettings",
    "SamplerSpec",
    "SamplerState",
    "SamplingInputs",
    "Solver",
    "Start",
    "VelocityFn",
    "euler",
    "get_solver",
    "heun",
    "initial_noise",
    "integrate",
    "make_grid",
    "midpoint",
    "prepare_inputs",
    "rk4",
    "sample",
    "segments_to_mask",
    "sway_grid",
    "uniform_grid",
]
