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
    SamplerSpec,
    make_grid,
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
    """Each item's conditional velocity is the model's on the original's step_cond (the
    reference only on kept frames) — whatever way the engine lays out its forwards."""
    case = Case(name, io, config)
    step_cond = case.get("step_cond")
    if step_cond is None:
        step_cond = torch.zeros_like(case.y0[:1]) if case.mask().all() else None
    if step_cond is None:
        pytest.skip(f"sample_{name} stores no step_cond and edits part of the frames")
    step_cond = step_cond.reshape(-1, case.n, step_cond.shape[-1])
    x, t = case.y0, case.t[0]
    with torch.inference_mode():
        conditional = GuidedVelocity(model, case.inputs(model), 0.0)(x, t)  # no guidance
        for i in range(case.b):
            one = model.prepare(
                cond=_item(step_cond, i)[None],
                text=inputs_text(case)[i : i + 1],
                style=_item(case.get("style_prompt", "style_prompt"), i).reshape(1, -1),
                start_time=_item(case.get("start_time", "start_time"), i).reshape(1),
                song_duration=_item(case.get("song_duration", "song_duration"), i).reshape(1),
            )
            assert_close(conditional[i : i + 1], model(x[i : i + 1], t, one))


def _item(value: torch.Tensor, i: int) -> torch.Tensor:
    """Item ``i`` of an input stored once (shared by every item) or once per item."""
    return value[min(i, value.shape[0] - 1)] if value.dim() else value


def inputs_text(case: Case) -> torch.Tensor:
    return case.get("text", "text").reshape(-1, case.n).expand(case.b, -1)


@pytest.mark.parametrize("name", CASES)
def test_velocity_at_every_step(io, config, model, name):
    """At every stored state: the guided velocity, and its conditional / unconditional parts
    against the original's two forwards. The parts come from the engine's own velocity (without
    guidance: the conditional one; the unconditional one from v = (1 + s)·pred − s·null), so the
    test holds whatever way the engine lays out its forwards (batched, split, per item)."""
    case = Case(name, io, config)
    traj, stored = (
        case.get("trajectory"),
        {p: case.get(p) for p in ("velocity", "pred", "null_pred")},
    )
    if traj is None or all(v is None for v in stored.values()):
        pytest.skip(f"sample_{name} stores no per-step states and velocities")
    inputs = case.inputs(model)
    guided = GuidedVelocity(model, inputs, case.cfg_strength)
    conditional = GuidedVelocity(model, inputs, 0.0)
    s = case.cfg_strength
    for k in range(case.steps):
        with torch.inference_mode():
            v = guided(traj[k], case.t[k])
            pred = conditional(traj[k], case.t[k])
        parts = {"velocity": v, "pred": pred}
        if s > 0:  # derived: its error is ((1 + s)·err(pred) + err(v)) / s at most
            parts["null_pred"] = (((1 + s) * pred.double() - v.double()) / s).float()
        for part, actual in parts.items():
            if stored[part] is not None:
                tol = STRICT * (2 + 1 / s) if part == "null_pred" else STRICT
                assert_close(actual, stored[part][k], tol)


@pytest.mark.parametrize("name", CASES)
def test_whole_run_reproduces_the_original(io, config, model, name):
    case = Case(name, io, config)
    inputs = case.inputs(model)
    states = []
    result = sample(
        model,
        inputs,
        make_grid(case.steps),
        SamplerSpec(cfg_strength=case.cfg_strength),
        start=case.y0,
        on_step=lambda e: states.append(e.x),
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
