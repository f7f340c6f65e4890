"""The event vocabulary (rhythmflow.events) and how the command line renders it."""

from __future__ import annotations

import io
import json
import logging

import pytest

from rhythmflow import events
from rhythmflow.cli.console import ProgressView

EXAMPLES = [
    events.StageStarted("load", "loading cfm_model.pt"),
    events.StageFinished("decode", "95.1 s of audio", 12.5),
    events.SamplingStep(2, 4, 0.5, 4.0, 4.0, 2.0, 2),
    events.DecodeChunk(1, 3, 0.5, 1.0),
    events.Warning("LRC line 3 ('x') not sung: past song end"),
    events.Result("completed", "ok", ("a.wav", "b.wav"), (1, 2), 3.5, None),
]


def test_vocabulary_is_closed_and_every_type_round_trips_through_json():
    assert {type(e) for e in EXAMPLES} == set(events.TYPES.values())
    for e in EXAMPLES:
        d = json.loads(json.dumps(events.to_dict(e)))
        assert d["event"] == e.type and events.from_dict(d) == e
    with pytest.raises(ValueError, match="unknown event type"):
        events.from_dict({"event": "StageEvent"})


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _step(k: int, total: int = 4) -> events.SamplingStep:
    return events.SamplingStep(k, total, k / total, 2.0 * k, 2.0 * (total - k), 2.0, k)


def test_bar_redraws_one_line_with_step_eta_and_rate():
    out = _Tty()
    view = ProgressView("bar", stream=out)
    for k in range(1, 5):
        view(_step(k))
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n")
    assert "step 2/4" in text and "ETA 4 s" in text and "2.00 s/step" in text


def test_json_mode_writes_one_event_object_per_line():
    out = io.StringIO()
    view = ProgressView("json", stream=out)
    for e in EXAMPLES:
        view(e)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [d["event"] for d in lines] == [e.type for e in EXAMPLES]
    assert lines[1] == {"event": "stage_finished", "stage": "decode",
                        "message": "95.1 s of audio", "seconds": 12.5}


def test_log_mode_without_terminal_writes_log_lines(caplog):
    with caplog.at_level(logging.INFO, logger="rhythmflow"):
        ProgressView("bar", stream=io.StringIO())(_step(3))
        ProgressView("log", stream=io.StringIO())(events.DecodeChunk(2, 3, 1.0, 0.5))
    assert "step 3/4" in caplog.text and "ETA 2 s" in caplog.text
    assert "decode chunk 2/3" in caplog.text


def test_warnings_are_shown_even_without_progress(caplog):
    with caplog.at_level(logging.WARNING, logger="rhythmflow"):
        ProgressView("none", stream=io.StringIO())(events.Warning("line 3 dropped"))
    assert "line 3 dropped" in caplog.text


def test_quiet_hides_warnings(caplog):
    with caplog.at_level(logging.WARNING, logger="rhythmflow"):
        ProgressView("bar", stream=io.StringIO(), quiet=True)(events.Warning("line 3 dropped"))
    assert "line 3 dropped" not in caplog.text
