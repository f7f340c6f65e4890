"""Edit mode: segment parsing and validation, frame conversion as upstream, the frame mask, and
reference latents from a real audio file through a tiny TorchScript VAE."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from rhythmflow.errors import UsageError
from rhythmflow.planner.edit import segments_to_frames
from rhythmflow.request import parse_segments
from rhythmflow.sampling import segments_to_mask as frame_mask
from rhythmflow.sampling.edit import EditPlan
from rhythmflow.sampling.edit import plan_edit as _plan_edit
from rhythmflow.testing import build_tiny_vae
from rhythmflow.vae.codec import load_vae
from rhythmflow.vae.reference import load_reference_song, reference_latents

FPS = 44100 / 2048


def plan_edit(reference, segments, n_frames):
    """The sampler's edit inputs for segments in seconds, as the plan converts them."""
    return _plan_edit(reference, segments_to_frames(parse_segments(segments), n_frames), n_frames)


def _upstream_frames(st: float, et: float, max_frames: int) -> tuple[int, int]:
    """infer_utils.get_reference_latent's conversion."""
    sf_ = 0 if st == -1 else int(st * 44100 / 2048)
    ef = max_frames if et == -1 else int(et * 44100 / 2048)
    return sf_, ef


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    return load_vae(
        build_tiny_vae(tmp_path_factory.mktemp("vae") / "vae.pt"), chunk_size=64, overlap=16
    )


def _song(path, seconds: float, sr: int = 44100, channels: int = 2, amp: float = 0.3):
    x = np.random.default_rng(0).standard_normal((int(seconds * sr), channels)) * amp
    sf.write(path, x.astype(np.float32), sr)
    return path


def test_parse_segments_accepts_json_and_lists():
    assert parse_segments("[[-1, 25], [50.0, -1]]") == [(-1.0, 25.0), (50.0, -1.0)]
    assert parse_segments([(1, 2.5)]) == [(1.0, 2.5)]


@pytest.mark.parametrize(
    "spec,match",
    [
        ("[[0, 10]", "not valid JSON"),
        ("[]", "non-empty list"),
        ('{"a": 1}', "non-empty list"),
        ("[[0, 10, 20]]", "not a \\[start, end\\] pair"),
        ('[["0", 10]]', "not a \\[start, end\\] pair"),
        ("[[true, 10]]", "not a \\[start, end\\] pair"),
        ("[[-2, 10]]", "-2 .* not a time"),
        ("[[0, NaN]]", "not a time"),
    ],
)
def test_parse_segments_errors(spec, match):
    with pytest.raises(UsageError, match=match):
        parse_segments(spec)


@pytest.mark.parametrize(
    "segments,n",
    [
        ([(-1, 25), (50.0, -1)], 2048),
        ([(0.1, 0.2), (3.3, 7.77), (90, 95)], 2048),
        ([(12.34, -1)], 6144),
        ([(-1, -1)], 96),
    ],
)
def test_frames_match_upstream_conversion(segments, n):
    expected = sorted(_upstream_frames(st, et, n) for st, et in segments)
    assert segments_to_frames(segments, n) == expected


def test_segments_are_sorted_and_may_touch():
    assert segments_to_frames([(10, 20), (0, 10)], 2048) == [
        _upstream_frames(0, 10, 2048),
        _upstream_frames(10, 20, 2048),
    ]


@pytest.mark.parametrize(
    "segments,match",
    [
        ([(20, 10)], "ends before it starts"),
        ([(80, 100)], "past the end of the 95.1. s song"),
        ([(96, -1)], "past the end"),
        ([(1.0, 1.01)], "empty: shorter than one latent frame \\(46 ms\\)"),
        ([(0, 10), (5, 20)], "overlap"),
        ([(30, -1), (-1, 31)], "overlap"),
    ],
)
def test_segment_errors(segments, match):
    with pytest.raises(UsageError, match=match):
        segments_to_frames(segments, 2048)


def test_frame_mask():
    mask = frame_mask([(2, 5), (7, 8)], 10)
    assert mask.dtype == torch.bool and mask.shape == (10,)
    assert mask.nonzero().flatten().tolist() == [2, 3, 4, 7]


def test_frame_mask_matches_upstream_golden(golden_model_dir):
    io = load_file(golden_model_dir / "golden_io.safetensors")
    segments = [tuple(s) for s in io["sample_edit_segments"].tolist()]
    golden = io["sample_edit_pred_mask"].bool()
    assert torch.equal(frame_mask(segments, golden.shape[0]), golden)


def test_reference_song_is_stereo_44k_at_minus_6_dbfs(tmp_path):
    ref = load_reference_song(_song(tmp_path / "mono.flac", 3.0, sr=22050, channels=1))
    assert ref.shape == (1, 2, 3 * 44100) and ref.dtype == torch.float32
    assert torch.equal(ref[0, 0], ref[0, 1])
    assert ref.abs().max().item() == pytest.approx(10 ** (-6 / 20), rel=1e-6)
    sf.write(tmp_path / "silent.wav", np.zeros((44100, 2), np.float32), 44100)
    with pytest.raises(UsageError, match="silent"):
        load_reference_song(tmp_path / "silent.wav")


def test_reference_latents_and_plan(tmp_path, vae):
    path = _song(tmp_path / "ref.wav", 5.0)  # 5 s → int(5 * 44100 / 2048) = 107 frames
    n_ref = int(5 * 44100) // 2048
    lat = reference_latents(path, vae, generator=torch.Generator().manual_seed(0))
    again = reference_latents(path, vae, generator=torch.Generator().manual_seed(0))
    assert lat.shape == (1, n_ref, 64) and torch.equal(lat, again)
    # upstream vae_sample on the whole prepared song: mean + randn * (softplus(scale) + 1e-4),
    # returned in the sampler's [1, n, d] layout
    song = load_reference_song(path)[..., : n_ref * 2048]
    mean, scale = vae.module.encode_export(song).chunk(2, dim=1)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
    expected = (mean + noise * (torch.nn.functional.softplus(scale) + 1e-4)).transpose(1, 2)
    torch.testing.assert_close(lat, expected, rtol=0, atol=1e-5)

    plan = plan_edit(lat, "[[1, 2], [3.5, -1]]", 100)
    assert isinstance(plan, EditPlan) and plan.ref_frames == n_ref
    assert plan.latent_pred_segments == [
        _upstream_frames(1, 2, 100),
        _upstream_frames(3.5, -1, 100),
    ]
    assert torch.equal(plan.mask, frame_mask(plan.latent_pred_segments, 100))
    assert torch.equal(plan.reference, lat[:, :100])  # cut to the generated length

    # a longer song than the reference: frames past its end must be regenerated
    with pytest.raises(UsageError, match="nothing to keep") as err:
        plan_edit(lat, [[1, 2]], 130)
    fix = re.search(r"add a segment \[([\d.]+), -1\]", str(err.value))
    assert fix, str(err.value)
    plan = plan_edit(lat, [[1, 2], [float(fix.group(1)), -1]], 130)
    assert plan.reference.shape == (1, 130, 64)
    assert torch.equal(plan.reference[:, :n_ref], lat) and not plan.reference[:, n_ref:].any()
    assert plan.mask[n_ref:].all()
    with pytest.raises(UsageError, match=r"\[1, n, d\]"):
        plan_edit(lat[0], [[1, 2]], 100)
