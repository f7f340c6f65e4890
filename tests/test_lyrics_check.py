"""Lint on the command line and in the plan, the sung .lrc and the sidecar's lines, and the lyric
check's scoring (rhythmflow.lyrics.check) with in-process recognisers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rhythmflow import errors
from rhythmflow.cli.main import main
from rhythmflow.lyrics.check import (
    CheckReport,
    SungLine,
    Window,
    check_audio,
    edit_distance,
    frame_stamp,
    lines_of_lrc,
    phones,
    regions,
    score_line,
    sung_lrc,
)
from rhythmflow.planner.core import Machine, plan
from rhythmflow.request import GenerationRequest
from rhythmflow.specs import frame_of

CPU = Machine(cores=2, memory_available=10**11, gflops={"cpu-float32": 100.0})
CLEAN = "[00:05.00]Morning comes again\n[00:09.00]Fire in the sky\n[00:13.00]Hold on tight\n"
DENSE = ("[00:05.00]Tonight we are running through the city of endless lights\n"
         "[00:07.20]Morning comes again\n[00:11.00]Fire in the sky\n")


# --- rhythmflow lint -------------------------------------------------------------------------


def test_lint_exit_codes_and_json(tmp_path, capsys):
    clean, dense = tmp_path / "clean.lrc", tmp_path / "dense.lrc"
    clean.write_text(CLEAN, encoding="utf-8")
    dense.write_text(DENSE, encoding="utf-8")
    assert main(["lint", str(clean), "--duration", "95", "--keep-last-line"]) == 0
    capsys.readouterr()
    assert main(["lint", str(dense), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(f["line"], f["kind"]) for f in report["findings"]] == [(1, "dense")]
    assert main(["lint", str(dense)]) == 1
    assert f"{dense}:1: dense:" in capsys.readouterr().out
    assert main(["lint", str(tmp_path / "missing.lrc")]) == errors.EXIT_USAGE
    (tmp_path / "bin.lrc").write_bytes(b"\xff\xd8\xff\xe0 jpeg")
    assert main(["lint", str(tmp_path / "bin.lrc")]) == errors.EXIT_USAGE


def test_lint_model_rule_and_fix_writes_a_clean_proposal(tmp_path, capsys):
    dense, fixed = tmp_path / "dense.lrc", tmp_path / "fixed.lrc"
    dense.write_text(DENSE, encoding="utf-8")
    assert main(["lint", str(dense), "--model", "base", "--json"]) == 1
    kinds = [f["kind"] for f in json.loads(capsys.readouterr().out)["findings"]]
    assert kinds == ["dense", "dropped_last"]
    assert main(["lint", str(dense), "--fix", "-o", str(fixed), "--json"]) == 1
    assert main(["lint", str(fixed)]) == 0  # the proposal lints clean
    assert main(["lint", str(dense), "-o", str(fixed)]) == errors.EXIT_USAGE  # -o needs --fix


def test_plan_warnings_carry_the_lint_findings_with_line_numbers():
    p = plan(GenerationRequest(style_prompt="x", lrc=DENSE, seed=1), CPU)
    assert [(f["line"], f["kind"]) for f in p.lint] == [(1, "dense"), (3, "dropped_last")]
    assert any(w.startswith("lint: LRC line 1: dense: ") for w in p.warnings)
    assert p.to_dict()["lint"][0]["line"] == 1
    clean = plan(GenerationRequest(style_prompt="x", lrc=CLEAN, seed=1, keep_last_line=True), CPU)
    assert clean.lint == () and clean.warnings == ()
    plain = plan(GenerationRequest(style_prompt="x", lyrics="[verse]\nhello there", seed=1), CPU)
    assert plain.lint == ()


# --- the sung lines and their .lrc -------------------------------------------------------------


def test_sung_lrc_reads_back_to_the_same_frames():
    lines = [SungLine(1, "Hello", 21, 30, 4, 1.0), SungLine(2, "Pushed later", 40, 52, 5, 1.2)]
    text = sung_lrc(lines)
    assert text.splitlines()[0] == "[00:01.00]Hello"  # the user's stamp where it still fits
    back = lines_of_lrc(text)
    assert [(x.line, x.text, x.start_frame) for x in back] == [(1, "Hello", 21),
                                                               (2, "Pushed later", 40)]
    for frame in (0, 1, 21, 75, 2047, 6143):
        stamp = frame_stamp(frame)
        assert frame_of(int(stamp[1:3]) * 60 + float(stamp[4:-1])) == frame


def test_regions_run_to_the_next_line_and_cap_the_last():
    lines = [SungLine(1, "a", 10, 20), SungLine(2, "b", 50, 60), SungLine(3, "c", 100, 110)]
    assert regions(lines, 2048) == [(10, 50), (50, 100), (100, 100 + 215)]
    assert regions(lines, 150)[-1] == (100, 150)


# --- scoring ---------------------------------------------------------------------------------


def test_phones_drop_punctuation_word_breaks_and_tones():
    assert phones("Hello, little song!") == phones("hello little song")
    assert "_" not in phones("hello little song") and phones("...!") == []
    zh = phones("我爱你")
    assert zh and not any(ch in p for p in zh for ch in "↑↓→")
    assert phones("I have 2 cats") and phones("ありがとう") == []


def test_edit_distance_and_verdicts():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance([], "ab") == 2
    ref = phones("Another line of words")
    assert score_line(ref, ref) == (0.0, 0, "sung")
    assert score_line(ref, [])[2] == "missing" and score_line(ref, [])[0] == 1.0
    per, _, verdict = score_line(ref, phones("a mother's lion awards"))
    assert verdict in ("sung", "garbled") and 0 < per < 1
    assert score_line(ref, phones("completely different nonsense here today"))[2] == "garbled"
    assert score_line(ref, ref * 5)[0] == 1.0  # capped: never worse than missing


class ScriptedEars:
    """An in-process recogniser: hears ``wrong`` lines as ``heard``, the rest right."""

    def __init__(self, texts: dict[int, str], wrong: dict[int, str]) -> None:
        self.texts, self.wrong, self.windows = texts, wrong, []

    def __call__(self, wav: np.ndarray, window: Window) -> str:
        assert wav.dtype == np.float32 and wav.ndim == 1
        self.windows.append((window, wav.shape[0]))
        return self.wrong.get(window.line, self.texts[window.line])


def test_check_audio_windows_lines_at_16k_and_scores_the_song():
    sr = 44100
    audio = np.zeros((2, sr * 12), dtype=np.float32)
    lines = [SungLine(1, "Hello little song", 21, 35), SungLine(2, "我爱你中国", 150, 160)]
    ears = ScriptedEars({1: "Hello little song", 2: "我爱你中国"}, {1: ""})
    report = check_audio(audio, sr, lines, ears)
    assert [(c.line, c.verdict) for c in report.lines] == [(1, "missing"), (2, "sung")]
    (w1, n1), (w2, n2) = ears.windows
    assert w1.lang == "en" and w2.lang == "zh"
    assert w1.start == pytest.approx(21 * 2048 / sr - 0.5) and w1.end == pytest.approx(
        150 * 2048 / sr + 0.5)
    assert n1 == pytest.approx((w1.end - w1.start) * 16000, abs=2)
    assert w2.end == pytest.approx(12.0)  # the last line's window stops at the song end
    ref = len(phones("Hello little song"))
    assert report.per == pytest.approx(ref / (ref + len(phones("我爱你中国"))))
    d = report.to_dict()
    assert set(d["lines"][0]) >= {"line", "text", "per", "verdict"} and "per" in d
    only = check_audio(audio, sr, lines, ears, only=[2])
    assert [c.line for c in only.lines] == [2]
    assert isinstance(only, CheckReport)


@pytest.mark.parametrize(("kw", "field", "text"), [
    ({"takes": 0}, "takes", "between 1 and"),
    ({"takes": 3, "batch": 2}, "takes", "drop batch 2"),
    ({"repair_rounds": 0}, "repair_rounds", "between 1 and"),
    ({"repair_threshold": 1.5}, "repair_threshold", "between 0 and 1"),
    ({"asr_command": "whisper-cli model.bin"}, "asr_command", "never names {wav}"),
    ({"asr_command": "cmd {wav} {speaker}"}, "asr_command", "unknown placeholder"),
    ({"asr_command": "cmd '{wav}"}, "asr_command", "quotes"),
    ({"asr_command": "c {wav}", "asr_model": "m"}, "asr_model", "not both"),
])
def test_review_fields_are_checked_naming_the_field(kw, field, text):
    with pytest.raises(errors.UsageError, match=text) as err:
        GenerationRequest(**kw)
    assert err.value.field == field


def test_plan_review_decisions():
    from rhythmflow.planner.review import repair_seed

    r = GenerationRequest(style_prompt="x", lrc=CLEAN, seed=1, repair=True, takes=2,
                          asr_command="c {wav}")
    p = plan(r, CPU)
    assert p.request.batch == 2 and p.review.check and p.review.repair_rounds == 2
    assert p.review.recognizer == "command" and p.to_dict()["review"]["takes"] == 2
    assert any(x.startswith("repair: up to 2") for x in p.reasons)
    plain = plan(GenerationRequest(style_prompt="x", lrc=CLEAN, seed=1, takes=2), CPU)
    assert not plain.review.check and plain.review.recognizer is None  # style score only
    seeds = {repair_seed(7, k) for k in (1, 2, 3)}
    assert len(seeds) == 3 and 7 not in seeds and repair_seed(7, 1) == repair_seed(7, 1)
