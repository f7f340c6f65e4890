"""The sampling driver: noise, progress events, deadline, cancel, anytime, resume, NaN guard."""

from __future__ import annotations

import dataclasses
import math
import threading
import time

import pytest
import torch

from rhythmflow.errors import NumericalError, UsageError
from rhythmflow.sampling import (
    SOLVERS,
    CancelToken,
    Deadline,
    SampleControl,
    SamplerSpec,
    SamplerState,
    SamplingInputs,
    initial_noise,
    make_grid,
    prepare_inputs,
    sample,
    segments_to_mask,
)
from rhythmflow.sampling.progress import ProgressTracker, format_seconds
from rhythmflow.testing import random_dit

N = 16


@pytest.fixture(scope="module")
def model():
    return random_dit(seed=5)


def _song(model, batch=1, edit=False):
    gen = torch.Generator().manual_seed(2)
    kw = dict(
        text=torch.randint(0, 363, (1, N), generator=gen),
        style=torch.randn(1, 512, generator=gen),
        negative_style=torch.randn(1, 512, generator=gen),
        start_time=0.0,
    )
    if edit:
        kw.update(
            reference=torch.randn(1, N, 64, generator=gen), edit_mask=segments_to_mask([[4, 12]], N)
        )
    return prepare_inputs(model, **kw, batch=batch)


# A toy problem: conditioning is a target tensor c, v = c − x (x(t) = c + (x0 − c)·e^{−t}).
def toy_inputs(b=1, n=4, m=3, scale=1.0):
    c = torch.full((b, n, m), scale)
    return SamplingInputs(cond=c, both=torch.cat([c, -c]), shape=(b, n, m))


def toy_forward(x, t, c):
    return c - x


class CountingClock:
    """A clock that advances by one per model call: deadlines in 'evaluations'."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def forward(self, x, t, c):
        self.now += 1
        return toy_forward(x, t, c)


def test_noise_is_per_item_and_independent_of_batch_size():
    one, three = initial_noise(1, 8, 4, seed=7), initial_noise(3, 8, 4, seed=7)
    assert torch.equal(three[0], one[0]) and torch.equal(three[1], initial_noise(1, 8, 4, 8)[0])
    assert not torch.equal(three[0], three[1])
    state = torch.random.get_rng_state()
    initial_noise(2, 8, 4, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    with pytest.raises(UsageError):
        initial_noise(1, 8, 4, seed=-1)


def test_batch_size_does_not_change_a_song(model):
    grid, spec = make_grid(3), SamplerSpec(cfg_strength=2.0)
    single = sample(model, _song(model), grid, spec, start=40)
    batch = sample(model, _song(model, batch=3), grid, spec, start=39)
    assert batch.latent.shape == (3, N, 64)
    # equal up to GEMM rounding, which depends on the batch composition
    err = (batch.latent[1] - single.latent[0]).abs().max()
    assert err <= 2e-5 * single.latent.abs().max()
    other = sample(model, _song(model), grid, spec, start=41)
    assert (other.latent - single.latent).abs().max() > 0.1  # the seed does matter
    assert single.seed == 40


def test_explicit_noise_and_seeds(model):
    noise = torch.randn(1, N, 64, generator=torch.Generator().manual_seed(3))
    grid, spec = make_grid(2), SamplerSpec(cfg_strength=1.0)
    a = sample(model, _song(model), grid, spec, start=noise)
    b = sample(model, _song(model), grid, spec, start=noise.clone())
    assert a.seed is None and torch.equal(a.latent, b.latent)
    with pytest.raises(UsageError, match="noise"):
        sample(model, _song(model), grid, spec, start=torch.randn(1, N + 1, 64))
    r = sample(model, _song(model), make_grid(1), SamplerSpec(), start=17)
    assert r.seed == 17
    again = sample(model, _song(model), make_grid(1), SamplerSpec(), start=r.seed)
    assert torch.equal(r.latent, again.latent)
    # the sampler never draws a seed of its own: the caller (the plan) picks it
    for bad in (None, -1, True, 1.5, "7"):
        with pytest.raises(UsageError, match="start"):
            sample(model, _song(model), make_grid(1), SamplerSpec(), start=bad)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_progress_events(solver):
    events = []
    result = sample(
        toy_forward,
        toy_inputs(),
        make_grid(5, "sway"),
        SamplerSpec(solver=solver),
        start=0,
        on_step=events.append,
    )
    per = SOLVERS[solver].evals_per_step
    assert [e.step for e in events] == [1, 2, 3, 4, 5] and {e.total for e in events} == {5}
    assert [e.t for e in events] == make_grid(5, "sway")[1:].tolist()
    assert [e.evaluations for e in events] == [per * k for k in range(1, 6)]
    assert result.evaluations == 5 * per and result.steps_done == 5
    elapsed = [e.elapsed for e in events]
    assert elapsed == sorted(elapsed) and all(e.sec_per_step >= 0 and e.eta >= 0 for e in events)
    assert events[-1].eta == 0 and events[-1].fraction == 1
    assert torch.equal(events[-1].x, result.latent)
    assert "step 5/5" in events[-1].describe() and "ETA" in events[-1].describe()


def test_eta_uses_the_first_step_then_the_later_ones():
    now = [0.0]
    tracker = ProgressTracker(total=10, clock=lambda: now[0])
    now[0] = 5.0  # slow first step (warm-up)
    first = tracker.event(1, 0.1, 1, torch.zeros(1))
    assert first.sec_per_step == 5.0 and first.eta == 45.0
    now[0] = 7.0
    now[0] = 9.0
    third = tracker.event(3, 0.3, 3, torch.zeros(1))
    assert third.sec_per_step == 2.0 and third.eta == 14.0
    assert format_seconds(42) == "42 s" and format_seconds(185) == "3 min 05 s"
    assert format_seconds(3720) == "1 h 02 min"


def test_deadline_is_checked_before_every_evaluation_not_only_between_steps():
    clock = CountingClock()
    result = sample(
        clock.forward,
        toy_inputs(),
        make_grid(4),
        SamplerSpec(solver="rk4"),
        start=0,
        control=SampleControl(deadline=Deadline(at=6, clock=clock)),
    )
    # step 1 takes evaluations 1-4, step 2 is cut after evaluations 5 and 6
    assert result.status == "timeout" and result.latent is None
    assert result.steps_done == 1 and result.evaluations == 6 and clock.now == 6
    assert result.state.step == 1 and result.state.reason == "timeout"


def test_anytime_finish_is_one_jump_to_t1_from_the_last_state():
    clock = CountingClock()
    inputs = toy_inputs()
    events = []
    result = sample(
        clock.forward,
        inputs,
        make_grid(4),
        SamplerSpec(),
        start=0,
        control=SampleControl(deadline=Deadline(at=2, clock=clock), anytime=True),
        on_step=events.append,
    )
    assert result.status == "timeout" and result.anytime and result.steps_done == 2
    x2, t2 = events[-1].x, 0.5
    torch.testing.assert_close(result.latent, x2 + (1 - t2) * (inputs.cond - x2))
    assert result.evaluations == 3  # one evaluation past the deadline
    assert torch.equal(result.state.x, x2)  # resumable from the last completed step


def test_anytime_reuses_the_evaluation_at_the_step_start():
    clock = CountingClock()
    result = sample(
        clock.forward,
        toy_inputs(),
        make_grid(3),
        SamplerSpec(solver="rk4"),
        start=0,
        control=SampleControl(deadline=Deadline(at=6, clock=clock), anytime=True),
    )
    assert result.anytime and result.steps_done == 1 and result.evaluations == 6


def test_deadline_already_passed():
    clock = CountingClock()
    deadline = Deadline(at=0, clock=clock)
    r = sample(clock.forward, toy_inputs(), make_grid(3), SamplerSpec(), start=0,
               control=SampleControl(deadline=deadline))
    assert (r.status, r.steps_done, r.evaluations, r.latent) == ("timeout", 0, 0, None)
    r = sample(clock.forward, toy_inputs(), make_grid(3), SamplerSpec(), start=0,
               control=SampleControl(deadline=deadline, anytime=True))
    noise = initial_noise(1, 4, 3, 0)
    torch.testing.assert_close(r.latent, noise + (toy_inputs().cond - noise))  # one Euler step


def test_timeout_with_a_slow_model_stops_promptly():
    def slow(x, t, c):
        time.sleep(0.05)
        return toy_forward(x, t, c)

    started = time.monotonic()
    r = sample(slow, toy_inputs(), make_grid(200), SamplerSpec(), start=0,
               control=SampleControl(deadline=Deadline.after(0.3)))
    assert r.status == "timeout" and 0 < r.steps_done < 200
    assert time.monotonic() - started < 5  # far less than the 10 s an uninterrupted run takes


def test_cancel_from_another_thread_and_from_the_callback():
    token = CancelToken()

    def slow(x, t, c):
        time.sleep(0.02)
        return toy_forward(x, t, c)

    timer = threading.Timer(0.2, token.cancel)
    timer.start()
    r = sample(slow, toy_inputs(), make_grid(500), SamplerSpec(), start=0,
               control=SampleControl(cancel=token, anytime=True))
    timer.join()
    assert r.status == "cancelled" and r.latent is None and 0 < r.steps_done < 500
    assert token.cancelled and r.state.reason == "cancelled"

    event = threading.Event()  # a plain threading.Event works as a token too
    r = sample(
        toy_forward,
        toy_inputs(),
        make_grid(6),
        SamplerSpec(),
        start=0,
        control=SampleControl(cancel=event),
        on_step=lambda e: event.set() if e.step == 2 else None,
    )
    assert (r.status, r.steps_done, r.evaluations) == ("cancelled", 2, 2)


@pytest.mark.parametrize("solver,cut", [("euler", 3), ("rk4", 6), ("heun", 1)])
def test_resume_equals_an_uninterrupted_run_bit_for_bit(model, tmp_path, solver, cut):
    grid, spec = make_grid(4), SamplerSpec(solver=solver, cfg_strength=3.0, tag="song-1")
    full = sample(model, _song(model, batch=2, edit=True), grid, spec, start=21)
    clock = CountingClock()
    timed = sample(
        _patched_forward(model, clock),
        _song(model, batch=2, edit=True),
        grid,
        spec,
        start=21,
        control=SampleControl(deadline=Deadline(at=cut, clock=clock)),
    )
    assert timed.status == "timeout"

    path = timed.state.save(tmp_path / "run.state")
    assert [p.name for p in tmp_path.iterdir()] == ["run.state"]  # no temporary left behind
    raw = torch.load(path, weights_only=True)
    assert raw["step"] == timed.state.step and raw["settings"]["solver"] == solver
    state = SamplerState.load(path)
    events = []
    resumed = sample(
        model, _song(model, batch=2, edit=True), grid, spec, start=state, on_step=events.append
    )
    assert resumed.completed and torch.equal(resumed.latent, full.latent)
    assert events[0].step == state.step + 1 and resumed.steps_done == 4 and resumed.seed == 21


def _patched_forward(model, clock):
    def forward(x, t, cond):
        clock.now += 1
        return model(x, t, cond)

    forward.dtype = model.dtype
    return forward


def test_resume_with_the_real_model_cut_by_an_evaluation_clock(model):
    clock = CountingClock()
    grid, spec = make_grid(5), SamplerSpec(solver="midpoint", cfg_strength=2.0)
    full = sample(model, _song(model), grid, spec, start=4)
    timed = sample(_patched_forward(model, clock), _song(model), grid, spec, start=4,
                   control=SampleControl(deadline=Deadline(at=5, clock=clock)))
    assert timed.status == "timeout" and timed.steps_done == 2
    resumed = sample(model, _song(model), grid, spec, start=timed.state)
    assert torch.equal(resumed.latent, full.latent)
    assert resumed.evaluations == 6


@pytest.mark.parametrize(
    "grid,change,name",
    [
        (make_grid(6), {}, "steps"),
        (None, {"solver": "heun"}, "solver"),
        (None, {"cfg_strength": 1.0}, "cfg_strength"),
        (None, {"tag": "other"}, "tag"),
        (make_grid(4, "sway"), {}, "time grid"),
        (make_grid(4, "sway", 0.5), {}, "time grid"),
        (None, {"guidance_interval": (0.0, 0.5)}, "guidance_interval"),
        (None, {"guidance_layout": "split"}, "guidance_layout"),
        (None, {"model_dtype": torch.float64}, "model_dtype"),
    ],
)
def test_resume_with_other_settings_names_the_mismatch(grid, change, name):
    clock = CountingClock()
    spec = SamplerSpec(cfg_strength=2.0)
    stopped = _stopped_toy_run(clock, spec)
    with pytest.raises(UsageError, match=name):
        sample(toy_forward, toy_inputs(), make_grid(4) if grid is None else grid,
               dataclasses.replace(spec, **change), start=stopped.state)


def _stopped_toy_run(clock: CountingClock, spec: SamplerSpec | None = None):
    """A 4-step uniform toy run (cfg 0 unless ``spec`` says otherwise, seed 1) whose deadline
    stops it after 2 evaluations."""
    return sample(clock.forward, toy_inputs(), make_grid(4), spec or SamplerSpec(), start=1,
                  control=SampleControl(deadline=Deadline(at=2, clock=clock)))


def test_a_resume_takes_its_state_and_seed_from_the_saved_state():
    clock = CountingClock()
    stopped = _stopped_toy_run(clock)
    assert stopped.state.settings.seed == 1
    resumed = sample(toy_forward, toy_inputs(), make_grid(4), SamplerSpec(), start=stopped.state)
    full = sample(toy_forward, toy_inputs(), make_grid(4), SamplerSpec(), start=1)
    assert resumed.seed == 1 and torch.equal(resumed.latent, full.latent)


def test_resume_with_another_shape_or_mask_is_refused(model):
    clock = CountingClock()
    stopped = _stopped_toy_run(clock)
    with pytest.raises(UsageError, match="shape"):
        sample(toy_forward, toy_inputs(b=2), make_grid(4), SamplerSpec(), start=stopped.state)
    edit = sample(
        _patched_forward(model, clock),
        _song(model, edit=True),
        make_grid(3),
        SamplerSpec(),
        start=1,
        control=SampleControl(deadline=Deadline(at=clock.now + 1, clock=clock)),
    )
    with pytest.raises(UsageError, match="edit mask"):
        sample(model, _song(model), make_grid(3), SamplerSpec(), start=edit.state)


def test_bad_state_files(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        SamplerState.load(tmp_path / "missing")
    (tmp_path / "junk").write_bytes(b"not a state")
    with pytest.raises(UsageError, match="not a readable"):
        SamplerState.load(tmp_path / "junk")
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UsageError, match="not a rhythmflow sampler state"):
        SamplerState.load(tmp_path / "other.pt")


def test_nan_in_the_state_stops_with_the_step_named():
    calls = []

    def forward(x, t, c):
        calls.append(float(t))
        v = c - x
        return v * math.nan if len(calls) == 3 else v

    with pytest.raises(NumericalError, match="step 3/5"):
        sample(forward, toy_inputs(), make_grid(5), SamplerSpec(), start=0)
    assert len(calls) == 3  # stopped at once
    with pytest.raises(NumericalError, match="initial noise"):
        sample(toy_forward, toy_inputs(), make_grid(2), SamplerSpec(),
               start=torch.full((1, 4, 3), math.inf))


def test_unknown_solver_or_schedule_or_a_bad_grid_fails_before_any_work():
    def forward(x, t, c):
        raise AssertionError("must not be called")

    with pytest.raises(UsageError, match="euler, midpoint, heun, rk4"):
        sample(forward, toy_inputs(), make_grid(2), SamplerSpec(solver="ddim"), start=0)
    with pytest.raises(UsageError, match="schedule"):
        sample(forward, toy_inputs(), make_grid(2, "karras"), SamplerSpec(), start=0)
    with pytest.raises(UsageError, match="guidance_layout"):
        SamplerSpec(guidance_layout="interleaved")
    with pytest.raises(UsageError, match="cfg_strength"):
        SamplerSpec(cfg_strength=-1.0)
    bad_grids = [
        torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64),  # not float32
        torch.tensor([0.0]),  # no step
        make_grid(2)[None],  # not 1-D
        torch.tensor([0.0, 0.7, 0.5, 1.0]),  # not increasing
        torch.tensor([0.1, 0.5, 1.0]),  # does not start from noise
        torch.tensor([0.0, 0.5, 0.9]),  # does not end at data
        [0.0, 0.5, 1.0],  # not a tensor
    ]
    for grid in bad_grids:
        with pytest.raises(UsageError, match="make_grid"):
            sample(forward, toy_inputs(), grid, SamplerSpec(), start=0)
