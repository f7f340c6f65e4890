"""Unit tests of the DiT blocks, the conditioning split and the strict checkpoint loader."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest
import torch

from rhythmflow.errors import CheckpointError, UsageError
from rhythmflow.model import Conditioning, DiT, infer_config, load_checkpoint
from rhythmflow.model.blocks import GRN, RMSNorm, TimestepEmbedding, apply_rope, text_position_table
from rhythmflow.specs import PRESETS, DiTConfig, load_config_file, preset
from rhythmflow.testing import TINY, random_dit, save_checkpoint

N = 24


def inputs(cfg: DiTConfig, b: int = 1, n: int = N, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(b, n, cfg.mel_dim, generator=g),
        cond=torch.randn(b, n, cfg.mel_dim, generator=g),
        text=torch.randint(0, cfg.text_num_embeds + 1, (b, n), generator=g),
        style=torch.randn(b, 512, generator=g),
        start_time=torch.rand(b, generator=g),
        song_duration=torch.rand(b, generator=g),
        t=torch.tensor(0.3),
    )


def velocity(model: DiT, x, t, **kw) -> torch.Tensor:
    return model(x, t, model.prepare(**kw))


# ---- blocks -------------------------------------------------------------------------------


def test_timestep_embedding_is_sin_then_cos_of_scaled_time():
    emb = TimestepEmbedding(8)
    with torch.no_grad():
        emb.time_mlp[0].weight.copy_(torch.eye(8, 256))
        emb.time_mlp[0].bias.zero_()
    captured = {}
    emb.time_mlp[0].register_forward_hook(lambda m, i, o: captured.update({"in": i[0]}))
    emb(torch.tensor([0.5]))
    f = torch.exp(torch.arange(128) * -(math.log(10000) / 127))
    assert torch.allclose(captured["in"][0, :128], torch.sin(500 * f))
    assert torch.allclose(captured["in"][0, 128:], torch.cos(500 * f))


def test_text_position_table_layout():
    table = text_position_table(16, 8)
    w = 1 / 10000 ** (torch.arange(0, 8, 2) / 8)
    assert torch.allclose(table[5, :4], torch.cos(5 * w)) and torch.allclose(
        table[5, 4:], torch.sin(5 * w)
    )


def test_grn_normalises_over_time_axis():
    grn = GRN(4)
    with torch.no_grad():
        grn.gamma.fill_(1.0)
    x = torch.randn(2, 7, 4)
    g = x.norm(dim=1, keepdim=True)
    expected = x * (g / (g.mean(-1, keepdim=True) + 1e-6)) + x
    assert torch.allclose(grn(x), expected)


def test_rmsnorm_statistics_in_float32():
    norm = RMSNorm(8, 1e-6)
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    ref = (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)).bfloat16()
    assert torch.equal(norm(x), ref)


def test_rope_rotates_pairs_half_apart():
    x = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]])  # k = 4: pairs (0, 2), (1, 3)
    ang = torch.tensor([0.7, 0.1])
    cos, sin = torch.cat([ang, ang]).cos(), torch.cat([ang, ang]).sin()
    out = apply_rope(x, cos, sin)
    assert torch.allclose(out[0, 0, 0], torch.tensor([math.cos(0.7), 0.0, math.sin(0.7), 0.0]))


def test_attention_is_non_causal_and_uses_no_mask(monkeypatch):
    """Changing the last frame changes the first frame's output (full attention), and SDPA is
    called without a mask so fast kernels apply."""
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kw):
        calls.append(kw)
        assert kw.get("attn_mask") is None and len(args) == 3
        return real(*args, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model = random_dit()
    a = inputs(TINY)
    t, x = a.pop("t"), a.pop("x")
    out = velocity(model, x, t, **a)
    x2 = x.clone()
    x2[:, -1] += 1.0
    out2 = velocity(model, x2, t, **a)
    assert calls and all(c.get("is_causal") is False for c in calls)
    assert not torch.allclose(out[:, 0], out2[:, 0])


# ---- conditioning split ---------------------------------------------------------------------


def test_prepare_runs_time_invariant_work_once_per_generation():
    model = random_dit()
    counts = {"text": 0, "start": 0}
    model.text_embed.register_forward_hook(
        lambda *_: counts.__setitem__("text", counts["text"] + 1)
    )
    model.start_time_embed.register_forward_hook(
        lambda *_: counts.__setitem__("start", counts["start"] + 1)
    )
    a = inputs(TINY)
    _t, x = a.pop("t"), a.pop("x")
    c = model.prepare(**a)
    for step in range(5):
        model(x, torch.tensor(step / 5), c)
    assert counts == {"text": 1, "start": 1}


def test_conditioning_cat_and_select_roundtrip():
    model = random_dit()
    a, b = inputs(TINY, seed=1), inputs(TINY, seed=2)
    ca = model.prepare(**{k: v for k, v in a.items() if k not in ("x", "t")})
    cb = model.prepare(**{k: v for k, v in b.items() if k not in ("x", "t")})
    both = Conditioning.cat([ca, cb])
    assert both.batch == 2 and both.frames == N
    assert torch.equal(both.select(slice(1, 2)).static, cb.static)
    out = model(torch.cat([a["x"], b["x"]]), torch.tensor(0.5), both)
    assert torch.allclose(out[1:], model(b["x"], torch.tensor(0.5), cb), atol=1e-5)


def test_drop_flags_match_their_meaning():
    model = random_dit()
    a = inputs(TINY)
    t, x = a.pop("t"), a.pop("x")
    ref = velocity(model, x, t, **{**a, "text": torch.zeros_like(a["text"])})
    assert torch.allclose(velocity(model, x, t, **a, drop_text=True), ref)
    ref = velocity(model, x, t, **{**a, "cond": torch.zeros_like(a["cond"])})
    assert torch.allclose(velocity(model, x, t, **a, drop_audio_cond=True), ref)
    ref = velocity(model, x, t, **{**a, "style": torch.zeros_like(a["style"])})
    assert torch.allclose(velocity(model, x, t, **a, drop_prompt=True), ref)


def test_duration_embedding_only_for_6144_frame_models():
    base = random_dit()
    a = inputs(TINY)
    t, x = a.pop("t"), a.pop("x")
    other = {**a, "song_duration": a["song_duration"] + 0.5}
    assert torch.equal(velocity(base, x, t, **a), velocity(base, x, t, **other))
    full = random_dit(dataclasses.replace(TINY, max_frames=6144))
    assert hasattr(full, "duration_time_embed") and not hasattr(base, "duration_time_embed")
    assert not torch.allclose(velocity(full, x, t, **a), velocity(full, x, t, **other))
    with pytest.raises(ValueError, match="song_duration"):
        full.prepare(**{**a, "song_duration": None})


def test_text_positions_clamp_at_max_frames():
    cfg = dataclasses.replace(TINY, max_frames=16)
    model = random_dit(cfg)
    tokens = torch.full((1, 20), 5)
    e = (
        model.text_embed.text_embed(tokens)
        + model.text_embed.freqs_cis[torch.arange(20).clamp(max=15)]
    )
    for block in model.text_embed.text_blocks:
        e = block(e)
    assert torch.equal(model.text_embed(tokens), e)


def test_text_must_match_latent_length():
    model = random_dit()
    a = inputs(TINY)
    a.pop("t"), a.pop("x")
    with pytest.raises(ValueError, match="text must be"):
        model.prepare(**{**a, "text": a["text"][:, :-1]})


def test_residual_stream_stays_contiguous():
    model = random_dit()
    seen = []
    for block in model.transformer_blocks:
        block.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    a = inputs(TINY)
    t, x = a.pop("t"), a.pop("x")
    velocity(model, x, t, **a)
    assert seen and all(seen)


def test_bfloat16_model_close_to_float32():
    m32 = random_dit()
    m16 = random_dit(dtype=torch.bfloat16)
    a = inputs(TINY)
    t, x = a.pop("t"), a.pop("x")
    v32, v16 = velocity(m32, x, t, **a), velocity(m16, x, t, **a)
    assert v16.dtype == torch.bfloat16
    assert (v16.float() - v32).norm() / v32.norm() < 0.05


# ---- config ---------------------------------------------------------------------------------


def test_config_from_dict_rejects_unknown_keys():
    assert DiTConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(UsageError, match="unknown DiTConfig keys.*'heads_x'"):
        DiTConfig.from_dict({**TINY.to_dict(), "heads_x": 1})
    with pytest.raises(UsageError, match="unknown keys"):
        DiTConfig.from_official({"model": {"dim": 64, "bogus": 1}})


def test_official_config_ignores_heads_argument(tmp_path):
    path = tmp_path / "diffrhythm-1b.json"
    path.write_text(
        '{"model_type": "diffrhythm", "model": {"dim": 2048, "depth": 16, "heads": 32,'
        ' "ff_mult": 4, "text_dim": 512, "conv_layers": 4}}'
    )
    assert load_config_file(path, max_frames=6144) == PRESETS["v1.2-full"]
    cfg = DiTConfig.from_official({"dim": 256, "heads": 8, "depth": 2})
    assert cfg.heads == 32 and cfg.head_dim == 8


def test_presets_and_aliases():
    assert preset("base") == PRESETS["v1.2-base"] and preset("full").max_frames == 6144
    assert {c.max_frames for c in PRESETS.values()} == {2048, 6144}
    with pytest.raises(UsageError, match="unknown model 'v9'"):
        preset("v9")
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.dim = 3  # type: ignore[misc]


# ---- checkpoint loading ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    return random_dit(seed=3)


@pytest.mark.parametrize("form", ["pt", "ema", "safetensors"])
@pytest.mark.parametrize("max_frames", [2048, 6144])
def test_every_container_form_loads_and_infers_architecture(tmp_path, form, max_frames):
    cfg = dataclasses.replace(TINY, max_frames=max_frames, depth=3, conv_layers=2)
    model = random_dit(cfg, seed=4)
    path = save_checkpoint(
        model, tmp_path / f"m.{'safetensors' if form == 'safetensors' else 'pt'}", form=form
    )
    loaded = load_checkpoint(path)
    assert loaded.config == cfg
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in loaded.parameters())
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    for (k, v), (k2, v2) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v.half().float(), v2)  # saved as fp16, upcast exactly
    assert torch.equal(loaded.text_embed.freqs_cis, text_position_table(max_frames, 512))


def test_load_casts_to_requested_dtype(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.pt")
    loaded = load_checkpoint(path, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}


def _write_sd(tmp_path, sd):
    path = tmp_path / "bad.pt"
    torch.save({"model_state_dict": sd}, path)
    return path


def test_missing_key_reported(tmp_path, tiny_model):
    sd = {"transformer." + k: v for k, v in tiny_model.state_dict().items()}
    del sd["transformer.proj_out.bias"]
    with pytest.raises(CheckpointError, match=r"1 missing: transformer\.proj_out\.bias"):
        load_checkpoint(_write_sd(tmp_path, sd))


def test_unexpected_key_reported(tmp_path, tiny_model):
    sd = {"transformer." + k: v for k, v in tiny_model.state_dict().items()}
    sd["transformer.extra.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match=r"1 unexpected: transformer\.extra\.weight"):
        load_checkpoint(_write_sd(tmp_path, sd))


def test_wrong_shape_reported_with_config(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.pt")
    other = dataclasses.replace(TINY, ff_mult=4)
    with pytest.raises(
        CheckpointError, match=r"wrong shape: .*gate_proj.weight \[128, 64\] \(model \[256, 64\]\)"
    ):
        load_checkpoint(path, config=other)


def test_report_is_short_for_many_mismatches(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, config=dataclasses.replace(TINY, depth=16))
    msg = str(err.value)
    assert "missing" in msg and "(+" in msg and len(msg) < 1200


def test_truncated_checkpoint(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        load_checkpoint(path)


def test_truncated_safetensors(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors", form="safetensors")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n"])
def test_non_checkpoint_files(tmp_path, content):
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="empty|truncated or not a PyTorch"):
        load_checkpoint(path)


def test_pickle_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model_state_dict": {"x": object()}}, f)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_missing_file_and_wrong_container(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    path = tmp_path / "opt.pt"
    torch.save({"optimizer_state_dict": {"lr": torch.tensor(1.0)}, "step": 3}, path)
    with pytest.raises(CheckpointError, match="neither 'model_state_dict' nor"):
        load_checkpoint(path)
    path = tmp_path / "other.pt"
    torch.save({"model_state_dict": {"encoder.weight": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match="not a DiffRhythm DiT checkpoint"):
        load_checkpoint(path)


def test_infer_config_reads_every_dimension(tiny_model):
    cfg = dataclasses.replace(TINY, dim=128, depth=3, ff_mult=3, conv_layers=2, text_num_embeds=100)
    model = random_dit(cfg)
    assert infer_config(model.state_dict()) == cfg


def test_low_precision_cpu_convolutions_run_in_float32():
    from rhythmflow.model.blocks import conv1d

    conv = torch.nn.Conv1d(32, 32, 7, padding=3, groups=32).bfloat16()
    x = torch.randn(1, 32, 20).bfloat16()
    ref = torch.nn.functional.conv1d(x.float(), conv.weight.float(), conv.bias.float(), padding=3,
                                     groups=32).bfloat16()
    assert torch.equal(conv1d(conv, x), ref)
    c32 = torch.nn.Conv1d(4, 4, 3)
    x32 = torch.randn(1, 4, 9)
    assert torch.equal(conv1d(c32, x32), c32(x32))


def test_config_file_max_frames_wins_over_the_shape_rule(tmp_path):
    cfg = dataclasses.replace(TINY, max_frames=4096)  # no duration embedding, yet not 2048
    path = save_checkpoint(random_dit(cfg), tmp_path / "m.pt")
    assert load_checkpoint(path).config.max_frames == 2048  # shapes alone: the 2048 rule
    conf = tmp_path / "config.json"
    conf.write_text('{"model": ' + __import__("json").dumps(
        {k: v for k, v in cfg.to_dict().items() if k not in ("heads", "rms_norm_eps", "rope_theta")}
    ) + "}")
    loaded = load_checkpoint(path, config=conf)
    assert loaded.config == cfg and loaded.text_embed.freqs_cis.shape[0] == 4096


def test_low_precision_model_keeps_a_float32_residual_stream():
    """Every decoder layer of a bfloat16 model receives and returns float32 (the branches run in
    bfloat16); a float32 model is unchanged."""
    m16 = random_dit(dtype=torch.bfloat16)
    seen = []
    hooks = [blk.register_forward_hook(lambda mod, args, out: seen.append(
        (args[0].dtype, out.dtype, mod.mlp.gate_proj.weight.dtype))) for blk in m16.transformer_blocks]
    a = inputs(TINY)
    t, x = a.pop("t"), a.pop("x")
    v16 = velocity(m16, x, t, **a)
    for h in hooks:
        h.remove()
    assert seen == [(torch.float32, torch.float32, torch.bfloat16)] * TINY.depth
    assert v16.dtype == torch.bfloat16
