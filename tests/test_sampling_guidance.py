"""Classifier-free guidance, prepared inputs and edit masks, with a tiny random-weight DiT."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rhythmflow.errors import UsageError
from rhythmflow.model import Conditioning
from rhythmflow.sampling import (
    GuidedVelocity,
    SamplerSpec,
    make_grid,
    prepare_inputs,
    sample,
    segments_to_mask,
)
from rhythmflow.testing import TINY, random_dit

N = 24


@pytest.fixture(scope="module")
def model():
    return random_dit(seed=3)


@pytest.fixture(scope="module")
def song():
    gen = torch.Generator().manual_seed(11)
    return dict(
        text=torch.randint(0, 363, (1, N), generator=gen),
        style=torch.nn.functional.normalize(torch.randn(1, 512, generator=gen), dim=-1),
        negative_style=torch.nn.functional.normalize(torch.randn(1, 512, generator=gen), dim=-1),
        start_time=0.25,
        reference=torch.randn(1, N, 64, generator=gen),
    )


def assert_rel_close(actual, expected, tol=2e-5):
    """max|actual − expected| <= tol·max|expected| (batch composition changes GEMM rounding)."""
    assert actual.shape == expected.shape
    err, scale = (actual - expected).abs().max().item(), expected.abs().max().item()
    assert err <= tol * scale, f"max abs err {err:.3g} > {tol} * {scale:.3g}"


def _plain(song):
    return {k: v for k, v in song.items() if k != "reference"}


class Recorder:
    """A model forward that records what each call received."""

    def __init__(self, model):
        self.model, self.calls = model, []

    @property
    def dtype(self):
        return self.model.dtype

    def __call__(self, x, t, cond):
        self.calls.append((x.shape[0], x.dtype, float(t)))
        return self.model(x, t, cond)


def test_zero_strength_is_the_conditional_velocity_without_an_unconditional_pass(model, song):
    inputs = prepare_inputs(model, **_plain(song), batch=2)
    rec = Recorder(model)
    x, t = torch.randn(2, N, 64), torch.tensor(0.3)
    v = GuidedVelocity(rec, inputs, cfg_strength=0.0)(x, t)
    expected = torch.cat([model(x[i : i + 1], t, inputs.cond.select(slice(i, i + 1)))
                          for i in range(2)])
    assert torch.equal(v, expected)
    assert [c[0] for c in rec.calls] == [1, 1]  # conditional rows only, item by item


def test_doubled_batch_equals_two_separate_forwards(model, song):
    inputs = prepare_inputs(model, **_plain(song), batch=2)
    uncond = model.prepare(
        cond=torch.zeros(2, N, 64),
        text=song["text"].expand(2, N),
        style=song["negative_style"].expand(2, 512),
        start_time=torch.full((2,), 0.25),
        drop_audio_cond=True,
        drop_text=True,
    )
    x, t, s = (
        torch.randn(2, N, 64, generator=torch.Generator().manual_seed(1)),
        torch.tensor(0.6),
        2.5,
    )
    rec = Recorder(model)
    v = GuidedVelocity(rec, inputs, cfg_strength=s)(x, t)
    assert [c[0] for c in rec.calls] == [2, 2]  # per item: one forward on [x_i; x_i]
    v_c, v_u = model(x, t, inputs.cond), model(x, t, uncond)
    assert_rel_close(v, v_c + s * (v_c - v_u))
    both = model(torch.cat([x, x]), t, inputs.both)
    assert_rel_close(both[:2], v_c)
    assert_rel_close(both[2:], v_u)


def test_guidance_interval_runs_the_unconditional_rows_only_inside(model, song):
    inputs = prepare_inputs(model, **_plain(song))
    rec = Recorder(model)
    gv = GuidedVelocity(rec, inputs, cfg_strength=3.0, interval=(0.2, 0.7))
    x = torch.randn(1, N, 64)
    for t in (0.0, 0.2, 0.5, 0.7, 0.9):
        v = gv(x, torch.tensor(t))
        if not 0.2 <= t <= 0.7:
            assert torch.equal(v, model(x, torch.tensor(t), inputs.cond))
    assert [c[0] for c in rec.calls] == [1, 2, 2, 2, 1]
    spec = SamplerSpec(cfg_strength=3.0, guidance_interval=(0.2, 0.7))
    result = sample(rec, inputs, make_grid(4), spec, start=1)
    assert result.completed and [c[0] for c in rec.calls[5:]] == [1, 2, 2, 1]  # t = 0, .25, .5, .75


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_strength_is_refused(model, song, bad):
    inputs = prepare_inputs(model, **_plain(song))
    with pytest.raises(UsageError, match="cfg_strength"):
        GuidedVelocity(model, inputs, cfg_strength=bad)


@pytest.mark.parametrize("bad", [(0.5, 0.2), (-0.1, 0.5), (0.2, 1.5), (0.3,)])
def test_bad_interval_is_refused(model, song, bad):
    inputs = prepare_inputs(model, **_plain(song))
    with pytest.raises(UsageError, match="guidance_interval"):
        GuidedVelocity(model, inputs, cfg_strength=1.0, interval=bad)


def test_guidance_without_a_negative_style_is_refused(model, song):
    inputs = prepare_inputs(model, **{**_plain(song), "negative_style": None})
    assert inputs.both is None
    with pytest.raises(UsageError, match="guidance=True|negative"):
        sample(model, inputs, make_grid(2), SamplerSpec(cfg_strength=4.0), start=0)
    assert sample(model, inputs, make_grid(2), SamplerSpec(cfg_strength=0.0), start=0).completed


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_model_keeps_a_float32_state(song, dtype):
    # no text ConvNeXt: CPU low-precision depthwise convolutions are very slow
    config = dataclasses.replace(TINY, conv_layers=0)
    low = random_dit(config, seed=3, dtype=dtype)
    inputs = prepare_inputs(low, **_plain(song))
    rec = Recorder(low)
    states = []
    result = sample(rec, inputs, make_grid(3), SamplerSpec(cfg_strength=2.0), start=5,
                    on_step=lambda e: states.append(e.x.dtype))
    assert {c[1] for c in rec.calls} == {dtype}  # x is cast for the call ...
    assert states == [torch.float32] * 3 and result.latent.dtype == torch.float32  # ... not stored
    full = random_dit(config, seed=3)
    ref = sample(full, prepare_inputs(full, **_plain(song)), make_grid(3),
                 SamplerSpec(cfg_strength=2.0), start=5)
    assert (result.latent - ref.latent).abs().max() < 0.05 * ref.latent.abs().max()


def test_segments_to_mask():
    mask = segments_to_mask([[2, 5], [8, 10]], 12)
    assert mask.tolist() == [i in (2, 3, 4, 8, 9) for i in range(12)]
    assert segments_to_mask(torch.tensor([[0, 12]]), 12).all()
    for bad in ([[5, 2]], [[-1, 3]], [[12, 14]], [[1, 2, 3]]):
        with pytest.raises(UsageError):
            segments_to_mask(bad, 12)


def test_edit_keeps_reference_frames_and_hides_generated_ones(model, song):
    mask = segments_to_mask([[6, 18]], N)
    inputs = prepare_inputs(model, **song, edit_mask=mask, batch=2)
    # what the model sees: the reference on kept frames, zeros on generated ones
    step_cond = torch.where(mask[None, :, None], 0.0, song["reference"]).expand(2, N, 64)
    expected = model.prepare(
        cond=step_cond,
        text=song["text"].expand(2, N),
        style=song["style"].expand(2, 512),
        start_time=torch.full((2,), 0.25),
    )
    # row by row, as a batch of 1 computes it (the same up to batch-dependent GEMM rounding)
    assert_rel_close(inputs.cond.static, expected.static)
    one = prepare_inputs(model, **song, edit_mask=mask, batch=1)
    assert torch.equal(inputs.cond.static[1:], one.cond.static)
    result = sample(model, inputs, make_grid(3), SamplerSpec(cfg_strength=2.0), start=9)
    ref = song["reference"].expand(2, N, 64)
    assert torch.equal(result.latent[:, ~mask], ref[:, ~mask])  # kept frames: bit-exact copies
    assert not torch.allclose(result.latent[:, mask], ref[:, mask])


def test_reference_and_mask_go_together(model, song):
    with pytest.raises(UsageError, match="edit_mask"):
        prepare_inputs(model, **song)
    with pytest.raises(UsageError):
        prepare_inputs(model, **_plain(song), edit_mask=torch.ones(N, dtype=torch.bool))


def test_reference_and_mask_must_match_the_frames(model, song):
    with pytest.raises(UsageError, match="reference latent"):
        prepare_inputs(
            model,
            **{**song, "reference": torch.randn(1, 2 * N, 64)},
            edit_mask=torch.ones(N, dtype=torch.bool),
            batch=2,
        )
    with pytest.raises(UsageError, match="edit_mask"):
        prepare_inputs(model, **song, edit_mask=torch.ones(N + 1, dtype=torch.bool))


def test_rows_must_be_one_or_the_batch(model, song):
    with pytest.raises(UsageError, match="style"):
        prepare_inputs(model, **{**_plain(song), "style": torch.randn(2, 512)}, batch=3)
    with pytest.raises(UsageError, match="batch"):
        prepare_inputs(model, **_plain(song), batch=0)


def test_conditioning_is_built_once_and_shared(model, song):
    inputs = prepare_inputs(model, **_plain(song), batch=2)
    assert isinstance(inputs.both, Conditioning) and inputs.both.batch == 4
    assert inputs.cond.static.data_ptr() == inputs.both.static.data_ptr()  # a view, not a copy


@pytest.mark.parametrize("batch", [1, 2])
def test_split_layout_equals_the_doubled_batch(model, song, batch):
    """Two forwards of b rows compute what one doubled forward does: the same rows of the same
    conditioning, combined the same way (equal up to GEMM rounding of the row count)."""
    inputs = prepare_inputs(model, **_plain(song), batch=batch)
    x = torch.randn(batch, N, 64, generator=torch.Generator().manual_seed(5))
    t = torch.tensor(0.4)
    rec_b, rec_s = Recorder(model), Recorder(model)
    batched = GuidedVelocity(rec_b, inputs, cfg_strength=2.0, layout="batched")(x, t)
    split = GuidedVelocity(rec_s, inputs, cfg_strength=2.0, layout="split")(x, t)
    assert [c[0] for c in rec_b.calls] == [2] * batch  # item by item
    assert [c[0] for c in rec_s.calls] == [1, 1] * batch
    assert_rel_close(split, batched)
    # the split passes are exactly the conditional and the unconditional rows, each alone
    for i in range(batch):
        xi = x[i : i + 1]
        v_c = model(xi, t, inputs.cond.select(slice(i, i + 1))).float()
        v_u = model(xi, t, inputs.both.select(slice(batch + i, batch + i + 1))).float()
        assert torch.equal(split[i : i + 1], v_c + (v_c - v_u) * 2.0)
    # outside a guidance interval both run the conditional rows once
    out_b = GuidedVelocity(model, inputs, 2.0, interval=(0.5, 0.6), layout="batched")(x, t)
    out_s = GuidedVelocity(model, inputs, 2.0, interval=(0.5, 0.6), layout="split")(x, t)
    assert torch.equal(out_b, out_s)


def test_unknown_guidance_layout_is_a_usage_error(model, song):
    inputs = prepare_inputs(model, **_plain(song))
    with pytest.raises(UsageError, match="layout"):
        GuidedVelocity(model, inputs, 1.0, layout="interleaved")


def test_sample_runs_either_guidance_layout(model, song):
    inputs = prepare_inputs(model, **_plain(song))
    runs = {lay: sample(model, inputs, make_grid(3),
                        SamplerSpec(cfg_strength=2.0, guidance_layout=lay), start=4)
            for lay in ("batched", "split")}
    assert runs["batched"].evaluations == runs["split"].evaluations == 3
    assert_rel_close(runs["split"].latent, runs["batched"].latent, tol=1e-4)
