"""The velocity network against the original implementation's stored outputs.

Works for any golden set in the `model/` format: cases are discovered from golden_io.safetensors.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from rhythmflow.model import expected_shapes, load_checkpoint
from rhythmflow.specs import DiTConfig, load_config_file
from tests.conftest import golden_subdir

STRICT = 2e-5  # README: max|impl - golden| <= 2e-5 * max|golden|
GOLDEN = golden_subdir("model")
CHECKPOINTS = sorted(
    p.name
    for p in GOLDEN.iterdir()
    if p.suffix in (".pt", ".safetensors") and p.name != "golden_io.safetensors"
)
IO_KEYS = sorted(safe_open(str(GOLDEN / "golden_io.safetensors"), "pt").keys())
FWD_CASES = [k for k in IO_KEYS if k.startswith("fwd_")]
_FWD = re.compile(
    r"fwd_(gen|edit)_(cond|uncond|cfg)(?:_(drop_prompt|alt_start(?:_time)?|alt_(?:song_)?duration))?$"
)


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "golden_io.safetensors")


@pytest.fixture(scope="module")
def golden_config() -> dict:
    return json.loads((GOLDEN / "config.json").read_text())


@pytest.fixture(scope="module", params=CHECKPOINTS)
def model(request):
    # The architecture comes from the official config.json: shapes alone cannot tell max_frames
    # (it only shows whether the 6144-frame duration embedding exists).
    return load_checkpoint(GOLDEN / request.param, dtype=torch.float32,
                           config=GOLDEN / "config.json")


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float = STRICT) -> None:
    assert actual.shape == expected.shape
    err = (actual.double() - expected.double()).abs().max().item()
    scale = expected.abs().max().item()
    assert err <= tol * scale, f"max abs err {err:.3g} > {tol} * {scale:.3g}"


def test_golden_set_is_complete():
    assert CHECKPOINTS, f"no checkpoint in {GOLDEN}"
    assert FWD_CASES, "golden_io.safetensors has no fwd_* case"
    for name in FWD_CASES:
        assert _FWD.match(name), f"unknown forward case {name}: teach this test its inputs"


def test_config_inferred_from_checkpoint_matches_official_config(model, golden_config):
    official = DiTConfig.from_official(golden_config)
    assert model.config == official
    inferred = load_checkpoint(GOLDEN / CHECKPOINTS[0]).config
    expected_max = official.max_frames if official.max_frames in (2048, 6144) else 2048
    assert inferred == dataclasses.replace(official, max_frames=expected_max)
    assert sum(p.numel() for p in model.parameters()) == golden_config["effective"]["num_params"]
    assert model.config.heads == golden_config["effective"]["num_attention_heads"]
    assert model.config.head_dim == golden_config["effective"]["head_dim"]


def test_official_config_file_gives_same_model(golden_config, io):
    by_shape = load_checkpoint(GOLDEN / CHECKPOINTS[0])
    by_file = load_checkpoint(GOLDEN / CHECKPOINTS[0], config=GOLDEN / "config.json")
    assert by_file.config == by_shape.config == load_config_file(GOLDEN / "config.json")
    for (ka, va), (kb, vb) in zip(
        by_shape.state_dict().items(), by_file.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)


def _forward(model, io, golden_config, name: str) -> torch.Tensor:
    mode, kind, variant = _FWD.match(name).groups()
    variant = variant or ""
    cond = io["cond_gen"] if mode == "gen" else io["cond_edit"]
    start = io["alt_start_time"] if variant.startswith("alt_start") else io["start_time"]
    duration = io["alt_song_duration"] if "duration" in variant else io["song_duration"]

    def run(uncond: bool) -> torch.Tensor:
        c = model.prepare(
            cond=cond,
            text=io["text"],
            style=io["negative_style_prompt"] if uncond else io["style_prompt"],
            start_time=start,
            song_duration=duration,
            drop_audio_cond=uncond,
            drop_text=uncond,
            drop_prompt=variant == "drop_prompt",
        )
        return model(io["x"], io["time"], c)

    if kind == "cfg":
        s = golden_config["forward"]["cfg_strength_for_fwd_cfg"]
        v_c, v_u = run(False), run(True)
        return v_c + (v_c - v_u) * s
    return run(kind == "uncond")


@pytest.mark.parametrize("case", FWD_CASES)
def test_forward_matches_golden(model, io, golden_config, case):
    with torch.no_grad():
        out = _forward(model, io, golden_config, case)
    assert_close(out, io[case])


def test_float64_model_matches_golden_too(io, golden_config):
    """A float64 load is the reference the README measured against (≈1e-6 apart)."""
    model = load_checkpoint(GOLDEN / CHECKPOINTS[0], dtype=torch.float64)
    io64 = {k: v.double() if v.is_floating_point() else v for k, v in io.items()}
    with torch.no_grad():
        out = _forward(model, io64, golden_config, "fwd_gen_cond")
    assert out.dtype == torch.float64
    assert_close(out, io["fwd_gen_cond"])


def test_doubled_batch_equals_separate_forwards(io):
    """Conditioning.cat: one forward on [cond; uncond] rows equals two forwards (any batch the
    set stores, an edit case where it has one)."""
    from rhythmflow.model import Conditioning

    model = load_checkpoint(GOLDEN / CHECKPOINTS[0])
    mode = "edit" if "cond_edit" in io and "fwd_edit_cond" in io else "gen"
    kw = dict(
        cond=io[f"cond_{mode}"],
        text=io["text"],
        start_time=io["start_time"],
        song_duration=io["song_duration"],
    )
    c = model.prepare(style=io["style_prompt"], **kw)
    u = model.prepare(style=io["negative_style_prompt"], drop_audio_cond=True, drop_text=True, **kw)
    b = io["x"].shape[0]
    with torch.no_grad():
        both = model(io["x"].repeat(2, 1, 1), io["time"], Conditioning.cat([c, u]))
        assert_close(both[:b], model(io["x"], io["time"], c), 1e-6)
        assert_close(both[b:], model(io["x"], io["time"], u), 1e-6)
        assert_close(both[:b], io[f"fwd_{mode}_cond"])


@pytest.mark.parametrize("manifest", sorted(GOLDEN.glob("full_keys_*.json")), ids=lambda p: p.stem)
def test_full_size_presets_match_key_manifests(manifest: Path):
    from rhythmflow.specs import PRESETS

    data = json.loads(manifest.read_text())
    want = {k.removeprefix("transformer."): tuple(v) for k, v in data["state_dict"].items()}
    presets = [c for c in PRESETS.values() if c.max_frames == data["max_frames"]]
    assert presets, f"no preset with max_frames={data['max_frames']}"
    for cfg in presets:
        got = expected_shapes(cfg)
        assert got == want
        assert sum(torch.Size(s).numel() for s in got.values()) == data["total_params"]
        assert cfg.heads == data["effective_attention"]["num_attention_heads"]
        assert cfg.head_dim == data["effective_attention"]["head_dim"]
