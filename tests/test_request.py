"""GenerationRequest: exact JSON round trip, and errors that name the field."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rhythmflow.errors import ResourceError, UsageError
from rhythmflow.planner.core import Machine, plan
from rhythmflow.planner.cost import GB
from rhythmflow.request import GenerationRequest

EMB = tuple(float(i) / 512 for i in range(512))
#: one non-default value for every field (a test checks that none is missing)
CHANGED = {
    "lrc": "[00:01.00]hello\n", "lyrics": None, "style_prompt": None, "style_embedding": EMB,
    "style_embedding_file": None, "style_audio": None, "negative_style": None,
    "negative_style_embedding": EMB, "model": "full", "checkpoint": None, "model_config": None,
    "vae": "my/vae.pt", "duration": 150.5, "steps": 12, "solver": "heun", "schedule": "sway",
    "cfg_strength": 2.5, "guidance_interval": (0.2, 0.8), "seed": 2**40, "batch": 3,
    "keep_last_line": True, "ref_song": "ref.wav", "edit_segments": ((0.0, 10.0), (40.5, -1.0)),
    "format": "flac", "sample_format": "int24", "loudness": -14.0, "time_budget": 600.0,
    "timeout": 1800.0, "anytime": True, "estimate": False, "quantize": "int8", "device": "cpu",
    "dtype": "bfloat16", "threads": 4, "chunked": False, "vae_dtype": "bfloat16",
    "takes": 3, "check": True, "repair": True, "repair_rounds": 4, "repair_threshold": 0.3,
    "asr_command": "whisper-cli -f {wav} -l {lang}", "asr_model": None,
}
ALTERNATIVES = {"asr_model": {"asr_command": None, "asr_model": "whisper-base/"},
                "lyrics": {"lrc": "", "lyrics": "[verse]\nhello"}, "style_prompt": {
    "style_embedding": None, "style_prompt": "jazz"}, "style_embedding_file": {
    "style_embedding": None, "style_embedding_file": "s.npy"}, "style_audio": {
    "style_embedding": None, "style_audio": "a.wav"}, "negative_style": {
    "negative_style_embedding": None, "negative_style": "n.npy"}, "checkpoint": {
    "model": None, "checkpoint": "c.pt", "model_config": "cfg.json"}}


def _round_trip(r: GenerationRequest) -> None:
    d = json.loads(json.dumps(r.to_dict()))
    back = GenerationRequest.from_dict(d)
    assert back == r and back.to_dict() == r.to_dict()


def test_every_field_round_trips_exactly():
    fields = {f.name for f in dataclasses.fields(GenerationRequest)}
    assert set(CHANGED) == fields
    _round_trip(GenerationRequest())
    full = GenerationRequest(**CHANGED)
    _round_trip(full)
    for name, change in ALTERNATIVES.items():
        r = full.replace(**change)
        assert getattr(r, name) is not None
        _round_trip(r)


@pytest.mark.parametrize(("d", "field", "text"), [
    ({"stepz": 3}, "stepz", "unknown field"),
    ({"steps": 0}, "steps", "between 1 and"),
    ({"steps": 2.5}, "steps", "whole number"),
    ({"steps": True}, "steps", "whole number"),
    ({"seed": -1}, "seed", "between 0 and"),
    ({"seed": 2**64}, "seed", "between 0 and"),
    ({"seed": 2**64 - 1, "batch": 2}, "seed", "seed \\+ batch"),
    ({"batch": 0}, "batch", "between 1 and"),
    ({"timeout": float("inf")}, "timeout", "finite"),
    ({"timeout": 0}, "timeout", "> 0"),
    ({"time_budget": -5}, "time_budget", "> 0"),
    ({"loudness": float("nan")}, "loudness", "finite"),
    ({"cfg_strength": -1}, "cfg_strength", "between"),
    ({"solver": "dopri5"}, "solver", "euler"),
    ({"format": "aiff"}, "format", "wav, flac, mp3, ogg"),
    ({"format": "flac", "sample_format": "float32"}, "sample_format", "cannot be stored in flac"),
    ({"guidance_interval": [0.8, 0.2]}, "guidance_interval", "lo <= hi"),
    ({"style_embedding": [1.0] * 3}, "style_embedding", "512 numbers"),
    ({"style_prompt": "a", "style_audio": "b.wav"}, "style_audio", "one style source"),
    ({"lrc": "[00:01.00]x", "lyrics": "x"}, "lyrics", "not both"),
    ({"model": "base", "checkpoint": "c.pt"}, "checkpoint", "not both"),
    ({"model_config": "c.json"}, "model_config", "checkpoint"),
    ({"ref_song": "r.wav"}, "edit_segments", "both"),
    ({"edit_segments": "not json", "ref_song": "r.wav"}, "edit_segments", "JSON"),
    ({"device": "tpu"}, "device", "unknown device"),
    ({"model": "v9"}, "model", "unknown value"),
    ({"lrc": 5}, "lrc", "must be text"),
])
def test_bad_values_name_the_field(d, field, text):
    with pytest.raises(UsageError, match=text) as info:
        GenerationRequest.from_dict(d)
    assert info.value.field == field and str(info.value).startswith(field)


def test_numbers_are_normalised_so_the_round_trip_is_exact():
    r = GenerationRequest.from_dict({"duration": 95, "steps": 8.0, "cfg_strength": 4,
                                     "edit_segments": "[[0, 10]]", "ref_song": "r.wav"})
    assert r.duration == 95.0 and isinstance(r.duration, float) and r.steps == 8
    assert r.edit_segments == ((0.0, 10.0),)
    _round_trip(r)


MACHINE = Machine(cores=2, memory_available=24 * GB, gflops={"cpu-float32": 100.0})
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_requests = st.fixed_dictionaries({}, optional={
    "lrc": st.sampled_from(["", "[00:01.00]la la\n", "[00:02.50]hi\n[00:05.00]there\n"]),
    "style_prompt": _text.filter(str.strip),
    "duration": st.one_of(st.floats(1, 400), st.sampled_from([95.0, 96.0, 285.0])),
    "steps": st.integers(-2, 40), "solver": st.sampled_from(["euler", "heun", "rk4", "x"]),
    "schedule": st.sampled_from(["uniform", "sway"]), "cfg_strength": st.floats(-1, 10),
    "guidance_interval": st.tuples(st.floats(0, 1), st.floats(0, 1)),
    "seed": st.integers(-5, 2**64), "batch": st.integers(0, 4),
    "format": st.sampled_from(["wav", "flac", "mp3"]),
    "sample_format": st.sampled_from(["int16", "int24", "float32"]),
    "time_budget": st.floats(0.1, 1e7), "timeout": st.floats(-1, 1e5),
    "quantize": st.sampled_from(["none", "int8"]), "model": st.sampled_from(
        ["base", "full", "v1.0-base", "v1.2-full"]),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests)
def test_any_request_plan_accepts_round_trips(d):
    try:
        r = GenerationRequest.from_dict(d)
        p = plan(r, MACHINE)
    except (UsageError, ResourceError) as exc:
        assert str(exc)  # a typed error with a message, nothing else
        return
    _round_trip(p.request)
    assert GenerationRequest.from_dict(p.to_dict()["request"]) == r
