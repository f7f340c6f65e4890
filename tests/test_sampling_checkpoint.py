"""``SampleControl(checkpoint=path)``: the resumable state saved after every step, resumed
bit-identically."""

from __future__ import annotations

import shutil
import threading

import pytest
import torch

from rhythmflow.sampling import (
    SampleControl,
    SamplerSpec,
    SamplerState,
    make_grid,
    prepare_inputs,
    sample,
    segments_to_mask,
)
from rhythmflow.testing import random_dit

N = 16


@pytest.fixture(scope="module")
def model():
    return random_dit(seed=5)


def _song(model, batch=2):
    gen = torch.Generator().manual_seed(2)
    return prepare_inputs(
        model,
        text=torch.randint(0, 363, (1, N), generator=gen),
        style=torch.randn(1, 512, generator=gen),
        negative_style=torch.randn(1, 512, generator=gen),
        start_time=0.0,
        reference=torch.randn(1, N, 64, generator=gen),
        edit_mask=segments_to_mask([[4, 12]], N),
        batch=batch,
    )


@pytest.mark.parametrize("solver,cut", [("euler", 2), ("heun", 1), ("rk4", 3)])
def test_a_mid_run_checkpoint_resumes_to_the_uninterrupted_latent(model, tmp_path, solver, cut):
    grid, spec = make_grid(4), SamplerSpec(solver=solver, cfg_strength=3.0, tag="song-1")
    ckpt, snapshot = tmp_path / "job.state", tmp_path / "snapshot.state"
    seen = []

    def on_event(event):
        state = SamplerState.load(ckpt) if event.step < 4 else None
        seen.append(None if state is None else state.step)
        if event.step == cut:  # what a process killed right now would leave behind
            shutil.copy(ckpt, snapshot)

    full = sample(model, _song(model), grid, spec, start=21,
                  control=SampleControl(checkpoint=ckpt), on_step=on_event)
    assert full.completed
    # saved before each event is reported, never for the last step
    assert seen == [1, 2, 3, None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.state", "snapshot.state"]

    plain = sample(model, _song(model), grid, spec, start=21)
    assert torch.equal(plain.latent, full.latent)  # saving changes nothing

    state = SamplerState.load(snapshot)
    assert (state.step, state.reason, state.settings.seed) == (cut, "checkpoint", 21)
    events = []
    resumed = sample(model, _song(model), grid, spec, start=state,
                     control=SampleControl(checkpoint=ckpt), on_step=events.append)
    assert resumed.completed and torch.equal(resumed.latent, full.latent)
    assert [e.step for e in events] == list(range(cut + 1, 5))
    assert resumed.evaluations + state.evaluations == full.evaluations


def test_a_step_finished_after_cancel_is_neither_saved_nor_reported(model, tmp_path):
    ckpt = tmp_path / "job.state"
    cancel = threading.Event()
    calls = {"n": 0}

    def forward(x, t, cond):  # the token is set during the third step's evaluation
        calls["n"] += 1  # (one forward per batch item and evaluation: 2 items)
        if calls["n"] == 5:
            cancel.set()
        return model(x, t, cond)

    forward.dtype = model.dtype
    events = []
    grid, spec = make_grid(6), SamplerSpec(cfg_strength=3.0)
    r = sample(forward, _song(model), grid, spec, start=2,
               control=SampleControl(cancel=cancel, checkpoint=ckpt), on_step=events.append)
    assert r.status == "cancelled" and r.steps_done == r.state.step == 3
    # step 3 finished after the token was set: neither saved nor reported
    assert SamplerState.load(ckpt).step == 2 and [e.step for e in events] == [1, 2]
    resumed = sample(model, _song(model), grid, spec, start=SamplerState.load(ckpt))
    assert torch.equal(resumed.latent, sample(model, _song(model), grid, spec, start=2).latent)


def test_the_state_records_the_guidance_layout_and_a_resume_keeps_it(model, tmp_path):
    """Both layouts are the same maths with different GEMM rounding: the layout is a recorded
    setting, a resume with another one is refused, the recorded one resumes bit-identically."""
    from rhythmflow.errors import UsageError

    grid, batched_spec = make_grid(4), SamplerSpec(cfg_strength=3.0, tag="song-1")
    split_spec = SamplerSpec(cfg_strength=3.0, tag="song-1", guidance_layout="split")
    ckpt, snapshot = tmp_path / "job.state", tmp_path / "snapshot.state"

    def keep_step_2(event):
        if event.step == 2:
            shutil.copy(ckpt, snapshot)

    split = sample(model, _song(model), grid, split_spec, start=21,
                   control=SampleControl(checkpoint=ckpt), on_step=keep_step_2)
    batched = sample(model, _song(model), grid, batched_spec, start=21)
    assert not torch.equal(split.latent, batched.latent)  # the rounding differs here
    state = SamplerState.load(snapshot)
    assert state.settings.guidance_layout == "split"
    with pytest.raises(UsageError, match="guidance_layout: 'split' in the state, 'batched' now"):
        sample(model, _song(model), grid, batched_spec, start=state)
    resumed = sample(model, _song(model), grid, split_spec, start=state)
    assert torch.equal(resumed.latent, split.latent)


def test_a_state_saved_before_the_layout_was_recorded_reads_as_batched():
    from rhythmflow.sampling.state import SampleSettings

    d = SampleSettings(4, "euler", 3.0, None, 1, (1, N, 64), "float32").to_dict()
    del d["guidance_layout"]
    assert SampleSettings.from_dict(d).guidance_layout == "batched"


def test_a_state_saved_when_the_sampler_built_the_grid_still_resumes(model, tmp_path):
    """Older states also record the grid's schedule and sway_coef; the grid stored in the state
    holds them, so those keys are dropped on load and the state resumes as before."""
    grid, spec = make_grid(4, "sway"), SamplerSpec(cfg_strength=3.0, tag="song-1")
    ckpt, old = tmp_path / "job.state", tmp_path / "old.state"

    def keep_step_2(event):
        if event.step == 2:
            raw = torch.load(ckpt, weights_only=True)
            raw["settings"] = {**raw["settings"], "schedule": "sway", "sway_coef": -1.0}
            del raw["settings"]["guidance_layout"]  # and from before the layout was recorded
            torch.save(raw, old)

    full = sample(model, _song(model), grid, spec, start=21,
                  control=SampleControl(checkpoint=ckpt), on_step=keep_step_2)
    state = SamplerState.load(old)
    assert (state.step, state.settings.seed, state.settings.guidance_layout) == (2, 21, "batched")
    resumed = sample(model, _song(model), grid, spec, start=state)
    assert torch.equal(resumed.latent, full.latent)
