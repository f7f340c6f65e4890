"""Whole sampling runs against the original CFM.sample's stored trajectories.

Works for any golden set in the `model/` format: every case ``sample_<name>_out`` in
golden_io.safetensors is run from its stored initial noise ``sample_<name>_y0``. The original's
``steps`` counts grid points; ours counts solver steps, so a stored grid of k points is steps=k-1.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from rhythmflow.model import load_checkpoint
from rhythmflow.sampling import (
    GuidedVelocity,
    prepare_inputs,
    sample,
    segments_to_mask,
    uniform_grid,
)
from tests.conftest import golden_subdir

STRICT = 2e-5  # README: max|impl - golden| <= 2e-5 * max|golden|
GOLDEN = golden_subdir("model")
_IO = safe_open(str(GOLDEN / "golden_io.safetensors"), "pt")
IO_KEYS = sorted(_IO.keys())
METADATA = _IO.metadata() or {}
CASES = [m.group(1) for k in IO_KEYS if (m := re.fullmatch(r"sample_(.+)_out", k))]
CHECKPOINTS = sorted(
    p
    for p in GOLDEN.iterdir()
    if p.suffix in (".pt", ".safetensors") and p.name != "golden_io.safetensors"
)


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "golden_io.safetensors")


@pytest.fixture(scope="module")
def config() -> dict:
    path = GOLDEN / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


@pytest.fixture(scope="module")
def model():
    # The official config (when the set has one) fixes max_frames exactly; shapes alone cannot.
    config_file = GOLDEN / "config.json"
    return load_checkpoint(CHECKPOINTS[0], dtype=torch.float32,
                           config=config_file if config_file.is_file() else None)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float = STRICT) -> None:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = (actual.double() - expected.double()).abs().max().item()
    scale = expected.abs().max().item()
    assert err <= tol * scale, f"max abs err {err:.3g} > {tol} * {scale:.3g}"


class Case:
    """One stored run: its inputs (per-case tensors override the shared ones) and settings."""

    def __init__(self, name: str, io: dict, config: dict) -> None:
        self.name, self.io = name, io
        self.meta = (config.get("sample") or {}).get(name) or {}
        self.y0 = self.get("y0")
        self.b, self.n, _ = self.y0.shape
        self.t = self.get("t")
        self.steps = self.t.numel() - 1
        cfg = self.meta.get(
            "cfg_strength",
            METADATA.get(f"sample_{name}_cfg_strength", METADATA.get("cfg_strength")),
        )
        assert cfg is not None, f"no cfg_strength for sample_{name} in metadata or config.json"
        self.cfg_strength = float(cfg)

    def get(self, key: str, shared: str | None = None) -> torch.Tensor | None:
        own = f"sample_{self.name}_{key}"
        if own in self.io:
            return self.io[own]
        return self.io.get(shared) if shared else None

    def mask(self) -> torch.Tensor:
        """[n] bool: pred_mask, else the segments (tensor or config.json), else every frame."""
        mask = self.get("pred_mask")
        if mask is not None:
            return mask.reshape(-1, self.n)[0].bool()
        segments = self.get("segments")
        if segments is None:
            segments = self.meta.get("latent_pred_segments", [[0, self.n]])
        return segments_to_mask(segments, self.n)

    def inputs(self, model):
        cond = self.get("cond")
        if cond is None:
            cond = torch.zeros(1, self.n, self.y0.shape[-1])
        return prepare_inputs(
            model,
            text=self.get("text", "text"),
            style=self.get("style_prompt", "style_prompt"),
            negative_style=self.get("negative_style_prompt", "negative_style_prompt"),
            start_time=self.get("start_time", "start_time"),
            song_duration=self.get("song_duration", "song_duration"),
            reference=cond,
            edit_mask=self.mask(),
            batch=self.b,
        )


def test_golden_set_has_sampling_runs():
    assert CASES, "golden_io.safetensors has no sample_<name>_out case"
    assert CHECKPOINTS, f"no checkpoint in {GOLDEN}"
    for name in CASES:
        for part in ("y0", "t"):
            assert f"sample_{name}_{part}" in IO_KEYS, f"sample_{name}_{part} is missing"


@pytest.mark.parametrize("name", CASES)
def test_time_grid_is_the_original_one(io, config, name):
    case = Case(name, io, config)
    grid = uniform_grid(case.steps)
    assert torch.equal(grid, case.t)  # bit-identical: the original's linspace
    dt = case.get("dt")
    if dt is not None:
        assert torch.equal(grid[1:] - grid[:-1], dt)


@pytest.mark.parametrize("name", CASES)
def test_model_sees_the_masked_reference(io, config, model, name):
    case = Case(name, io, config)
    step_cond = case.get("step_cond")
    if step_cond is None:
        step_cond = torch.zeros_like(case.y0[:1]) if case.mask().all() else None
    if step_cond is None:
        pytest.skip(f"sample_{name} stores no step_cond and edits part of the frames")
    inputs = case.inputs(model)
    expected = model.prepare(
        cond=step_cond.expand(case.b, -1, -1),
        text=inputs_text(case),
        style=case.get("style_prompt", "style_prompt").expand(case.b, -1),
        start_time=case.get("start_time", "start_time").expand(case.b),
        song_duration=case.get("song_duration", "song_duration").expand(case.b),
    )
    assert torch.equal(inputs.cond.static, expected.static)


def inputs_text(case: Case) -> torch.Tensor:
    return case.get("text", "text").reshape(-1, case.n).expand(case.b, -1)


class Capture:
    """The model's forward, keeping its last output (the raw [cond; uncond] rows)."""

    def __init__(self, model) -> None:
        self.model, self.dtype, self.out = model, model.dtype, None

    def __call__(self, x, t, cond):
        self.out = self.model(x, t, cond)
        return self.out


@pytest.mark.parametrize("name", CASES)
def test_velocity_at_every_step(io, config, model, name):
    """At every stored state: the guided velocity from ONE doubled-batch forward, and the
    conditional / unconditional rows of that forward against the original's two forwards."""
    case = Case(name, io, config)
    traj, stored = (
        case.get("trajectory"),
        {p: case.get(p) for p in ("velocity", "pred", "null_pred")},
    )
    if traj is None or all(v is None for v in stored.values()):
        pytest.skip(f"sample_{name} stores no per-step states and velocities")
    inputs = case.inputs(model)
    forward = Capture(model)
    velocity = GuidedVelocity(forward, inputs, case.cfg_strength)
    b = case.b
    for k in range(case.steps):
        with torch.inference_mode():
            v = velocity(traj[k], case.t[k])
            rows = forward.out
            if rows.shape[0] == b:  # cfg = 0: no unconditional rows were computed
                rows = torch.cat(
                    [rows, model(traj[k], case.t[k], inputs.both.select(slice(b, 2 * b)))]
                )
        for part, actual in (("velocity", v), ("pred", rows[:b]), ("null_pred", rows[b:])):
            if stored[part] is not None:
                assert_close(actual, stored[part][k])


@pytest.mark.parametrize("name", CASES)
def test_whole_run_reproduces_the_original(io, config, model, name):
    case = Case(name, io, config)
    inputs = case.inputs(model)
    states = []
    result = sample(
        model,
        inputs,
        steps=case.steps,
        cfg_strength=case.cfg_strength,
        noise=case.y0,
        callback=lambda e: states.append(e.x),
    )
    assert result.completed and result.steps_done == case.steps
    assert result.evaluations == case.steps  # one (doubled-batch) forward per Euler step
    out = case.get("out")
    assert_close(result.latent, out)
    traj = case.get("trajectory")
    if traj is not None:
        assert len(states) == traj.shape[0] - 1
        for k, x in enumerate(states):
            assert_close(x, traj[k + 1])
    keep = ~case.mask()
    cond = case.get("cond")
    if keep.any() and cond is not None:  # kept frames are copied from the reference bit-exactly
        assert torch.equal(result.latent[:, keep], cond.expand(case.b, -1, -1)[:, keep])
