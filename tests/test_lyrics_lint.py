"""LRC timing lint (rhythmflow.lyrics.lint): one crafted LRC per finding kind with the exact
line, the original DiffRhythm's example LRCs lint clean, fix_lrc's proposals lint clean, and the
JSON shape."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from rhythmflow.errors import LrcError, LyricsError, UsageError
from rhythmflow.lyrics.lint import KINDS, Finding, LintReport, fix_lrc, lint_lrc
from rhythmflow.lyrics.lrc import parse_lrc

LONG = "Tonight we are running through the city of endless lights"  # 14 units, 43 tokens
MID = "Morning comes again"  # 5 units
FIRE = "Fire in the sky"  # 5 units
HOLD = "Hold on"  # 2 units
ZH_LONG = "我们在这城市的夜晚里不停地奔跑着直到天亮"  # 20 units
CROWDING = ("dense", "order", "overlap", "duplicate")
UPSTREAM_EXAMPLES = ("eg_en", "eg_en_full", "edit_en")


def kinds(report: LintReport) -> list[tuple[int, str]]:
    return [(f.line, f.kind) for f in report.findings]


def lrc(*lines: str) -> str:
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def examples(golden_lyrics_dir, assets_dir) -> dict[str, str]:
    """The original's example LRCs: the upstream files stored in the golden lyrics cases, and
    any .lrc shipped with the assets."""
    cases = json.loads((golden_lyrics_dir / "lrc_cases.json").read_text(encoding="utf-8"))
    found = {c["name"]: c["text"] for c in cases["cases"] if c["name"] in UPSTREAM_EXAMPLES}
    assert sorted(found) == sorted(UPSTREAM_EXAMPLES)
    for path in sorted(assets_dir.rglob("*.lrc")):
        found[str(path.relative_to(assets_dir))] = path.read_text(encoding="utf-8")
    return found


# --- one crafted LRC per kind -------------------------------------------------------------


def test_dense_english_line_and_its_bound():
    text = "\ufeff[ti:Dense]\r\n\r\n" + lrc(f"[00:05.00]{LONG}", f"[00:07.20]{MID}",
                                            f"[00:10.00]{FIRE}")
    report = lint_lrc(text)
    assert kinds(report) == [(3, "dense")]
    message = report.findings[0].message
    assert "line 3 [00:05.00]" in message and "14 sung units in 2.20 s" in message
    assert "6 English" in message and "2.50 s" in message  # (14 + 1 breath) / 6 units/s
    assert "move line 4 to [00:07.50] or later" in message


def test_dense_chinese_line_uses_the_chinese_rate():
    report = lint_lrc(lrc(f"[00:05.00]{ZH_LONG}", f"[00:08.50]{FIRE}"))
    assert kinds(report) == [(1, "dense")]
    assert "4.20 s" in report.findings[0].message  # (20 + 1 breath) / 5 units/s


def test_dense_last_line_against_the_song_end():
    report = lint_lrc(lrc(f"[00:05.00]{LONG}", f"[01:33.50]{LONG}"), model="base",
                      keep_last_line=True)
    assert kinds(report) == [(2, "dense")]
    assert "the song ends at 95 s" in report.findings[0].message
    assert "start it by [01:32.50]" in report.findings[0].message


def test_overlap_is_reported_on_the_pushed_line_not_as_dense():
    report = lint_lrc(lrc(f"[00:05.00]{LONG}", f"[00:06.00]{MID}", f"[00:10.00]{FIRE}"))
    assert kinds(report) == [(2, "overlap")]
    assert "43 lyric tokens of line 1" in report.findings[0].message
    assert "[00:07.50] or later" in report.findings[0].message


def test_duplicate_timestamp_on_the_later_line():
    report = lint_lrc(lrc(f"[00:05.00]{FIRE}", f"[00:05.00]{MID}", f"[00:09.00]{HOLD}"))
    assert kinds(report) == [(2, "duplicate")]
    assert "same timestamp as line 1" in report.findings[0].message


def test_two_timestamps_equal_on_one_line_is_a_duplicate():
    assert kinds(lint_lrc(lrc(f"[00:05.00][00:05.00]{FIRE}", f"[00:10.00]{MID}"))) == [
        (1, "duplicate")]


def test_order():
    report = lint_lrc(lrc(f"[00:05.00]{FIRE}", f"[00:12.00]{MID}", f"[00:08.00]{HOLD}"))
    assert kinds(report) == [(3, "order")]
    assert "after line 2 [00:12.00]" in report.findings[0].message


def test_compressed_lrc_repeats_are_not_out_of_order():
    text = lrc(f"[00:05.00][00:20.00]{FIRE}", f"[00:08.00]{MID}", f"[00:12.00]{HOLD}",
               f"[00:16.00]{MID}", f"[00:24.00]{HOLD}")
    assert lint_lrc(text).clean


def test_sparse_short_line_before_a_long_gap():
    report = lint_lrc(lrc(f"[00:05.00]{HOLD}", f"[00:12.00]{MID}"))
    assert kinds(report) == [(1, "sparse")]
    assert "5.5 s of silence" in report.findings[0].message  # 7 s − (2 + 1) / 2 units/s
    # a long line before an instrumental gap, and a short line with a short gap, are fine
    assert lint_lrc(lrc(f"[00:05.00]{LONG}", f"[00:50.00]{MID}")).clean
    assert lint_lrc(lrc(f"[00:05.00]{HOLD}", f"[00:10.00]{MID}")).clean


def test_past_end_for_a_duration_and_for_the_base_model():
    text = lrc(f"[00:05.00]{FIRE}", f"[00:08.00]{MID}", f"[01:40.00]{HOLD}")
    report = lint_lrc(text, duration=100)
    assert kinds(report) == [(3, "past_end")]
    assert report.model == "v1.2-full" and report.duration == 100
    base = lint_lrc(text, model="base")
    assert kinds(base) == [(2, "dropped_last"), (3, "past_end")]


def test_dropped_last_only_for_the_base_model():
    text = lrc(f"[00:05.00]{FIRE}", f"[00:08.00]{MID}")
    assert kinds(lint_lrc(text, model="base")) == [(2, "dropped_last")]
    assert kinds(lint_lrc(text, duration=95)) == [(2, "dropped_last")]  # 95 s → base model
    assert "keep_last_line" in lint_lrc(text, model="base").findings[0].message
    assert lint_lrc(text, model="base", keep_last_line=True).clean
    assert lint_lrc(text, model="full").clean
    assert lint_lrc(text).clean  # no model given: no last-line rule


def test_dropped_last_is_the_last_in_time_not_in_the_file():
    text = lrc(f"[00:09.00]{MID}", f"[00:05.00]{FIRE}")
    assert kinds(lint_lrc(text, model="base")) == [(1, "dropped_last"), (2, "order")]


def test_empty_timed_line():
    report = lint_lrc(lrc(f"[00:05.00]{FIRE}", "[00:08.00]", f"[00:10.00]{MID}"))
    assert kinds(report) == [(2, "empty")]
    assert "[00:08.00]" in report.findings[0].message


def test_unsingable_line_is_reported_not_raised():
    assert kinds(lint_lrc(lrc(f"[00:05.00]{FIRE}", "[00:08.00]1 2 3 4",
                              f"[00:10.00]{MID}"))) == [(2, "unsingable")]


def test_findings_are_ordered_by_line():
    text = lrc("[ti:x]", f"[00:05.00]{HOLD}", f"[00:30.00]{FIRE}", "[00:40.00]",
               f"[00:20.00]{MID}", f"[00:20.00]{MID}", f"[01:40.00]{MID}")
    found = kinds(lint_lrc(text, duration=100))
    assert found == sorted(found, key=lambda f: f[0])
    assert {k for _, k in found} >= {"sparse", "order", "empty", "duplicate", "past_end"}


def test_malformed_lrc_and_bad_arguments_raise():
    with pytest.raises(LrcError) as err:
        lint_lrc("[00:05.00]ok\n[00:75.00]bad\n")
    assert err.value.line == 2
    with pytest.raises(UsageError) as err:
        lint_lrc("", model="nope")
    assert err.value.field == "model"
    with pytest.raises(UsageError):
        lint_lrc("", model="base", duration=60)  # base models make exactly 95 s
    for bad in (-1, 0, float("nan"), True):
        with pytest.raises(UsageError):
            lint_lrc("", duration=bad)


# --- the original's examples ---------------------------------------------------------------


def test_the_originals_examples_lint_clean(examples):
    for name, text in examples.items():
        for options in ({}, {"model": "full"}):
            report = lint_lrc(text, **options)
            assert report.clean, (name, options, report.to_dict())
            assert report.lines == len(parse_lrc(text))


def test_edit_example_on_the_base_model(examples):
    """edit_en.lrc (Chinese and English, 90.91 s) is a 95 s song: its last line is dropped."""
    assert kinds(lint_lrc(examples["edit_en"], model="base")) == [(19, "dropped_last")]
    assert lint_lrc(examples["edit_en"], model="base", keep_last_line=True).clean


def test_autotimed_chinese_lyrics_lint_clean(golden_lyrics_dir):
    """The original's Chinese example lyrics (eg_cn, edit_cn, eg_cn_full: the golden G2P lines)
    timed by autotime use the same tempo model, so they never crowd."""
    from rhythmflow.lyrics.autotime import time_lyrics

    rows = [json.loads(x) for x in (golden_lyrics_dir / "chinese_lines.jsonl").open(
        encoding="utf-8")]
    for name in ("eg_cn.lrc", "edit_cn.lrc", "eg_cn_full.lrc"):
        text = "\n".join(r["text"] for r in rows if r["source"].startswith(name + ":"))
        timed = time_lyrics(text, 95)
        assert lint_lrc(timed.lrc, model="base", keep_last_line=True).clean, name


# --- fix_lrc -------------------------------------------------------------------------------


def assert_fixed(text: str, **options) -> str:
    fixed = fix_lrc(text, **options)
    left = lint_lrc(fixed, **options).of_kind(*CROWDING)
    assert not left, (fixed, left)
    return fixed


def times(text: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for x in parse_lrc(text):
        out.setdefault(x.text, []).append(x.start)
    return out


@pytest.mark.parametrize("text", [
    lrc(f"[00:05.00]{LONG}", f"[00:07.20]{MID}", f"[00:10.00]{FIRE}"),
    lrc(f"[00:05.00]{LONG}", f"[00:06.00]{MID}", f"[00:10.00]{FIRE}"),
    lrc(f"[00:05.00]{FIRE}", f"[00:05.00]{MID}", f"[00:05.00]{HOLD}", f"[00:09.00]{LONG}"),
    lrc(f"[00:05.00]{FIRE}", f"[00:12.00]{MID}", f"[00:08.00]{HOLD}"),
    lrc(f"[00:05.00]{ZH_LONG}", f"[00:08.50]{FIRE}", f"[00:09.00]{ZH_LONG}"),
], ids=["dense", "overlap", "duplicate", "order", "chinese"])
def test_fix_removes_crowding_and_keeps_anchors(text):
    fixed = assert_fixed(text)
    assert sorted(times(text)) == sorted(times(fixed))  # every lyric kept
    assert parse_lrc(fixed)[0].start == parse_lrc(text)[0].start  # the first is an anchor
    starts = [x.start for x in parse_lrc(fixed)]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


def test_fix_keeps_plausible_lines_exactly():
    text = lrc(f"[00:05.00]{LONG}", f"[00:06.00]{MID}", f"[00:10.125]{FIRE}", f"[00:15.00]{HOLD}",
               f"[00:15.50]{FIRE}")  # Hold on: 2 units + a breath at 6/s = exactly 0.5 s
    after = times(assert_fixed(text))
    assert after[LONG] == [5.0] and after[FIRE] == [10.125, 15.5] and after[HOLD] == [15.0]
    assert 7.5 <= after[MID][0] < 10.125


def test_fix_pulls_lines_before_the_end():
    text = lrc(f"[01:20.00]{FIRE}", f"[01:25.00]{MID}", f"[01:30.00]{LONG}", f"[01:33.00]{LONG}")
    after = times(assert_fixed(text, model="base"))
    assert after[FIRE] == [80.0] and after[MID] == [85.0]
    assert after[LONG][1] <= 95 - 2.5


def test_fix_pulls_a_crowded_ending_earlier():
    text = lrc(*(f"[01:{s:02d}.00]{LONG}" for s in range(10, 22)))  # 12 lines, 30 s of singing
    starts = [x.start for x in parse_lrc(assert_fixed(text, duration=96))]
    assert starts[0] < 70 and starts[-1] <= 96 - 2.5


def test_fix_of_more_lyrics_than_the_song_holds_packs_them_from_the_start():
    text = lrc(*(f"[00:{s:02d}.00]{LONG}" for s in range(10, 50)))  # 40 lines, 100 s
    report = lint_lrc(fix_lrc(text, model="base"), model="base")
    assert not report.of_kind("order", "overlap", "duplicate")
    assert report.of_kind("past_end")


def test_fix_drops_empty_lines_applies_offset_and_keeps_headers():
    text = lrc("[ti:Night]", "[offset:+500]", "", f"[00:12.00]{MID}", "[Chorus]",
               f"[00:05.00]{FIRE}", "[00:14.00]", f"[00:30.00]{HOLD}", f"[02:00.00]{LONG}",
               "", "untimed tail")
    fixed = fix_lrc(text, duration=100)
    assert fixed.splitlines() == ["[ti:Night]", "", "[Chorus]", f"[00:04.50]{FIRE}",
                                  f"[00:11.50]{MID}", f"[00:29.50]{HOLD}", f"[01:59.50]{LONG}",
                                  "", "untimed tail"]


def test_fix_keeps_every_time_of_a_clean_file(examples):
    for name, text in examples.items():
        assert times(fix_lrc(text)) == times(text), name


def test_fix_refuses_an_unsingable_line():
    with pytest.raises(LyricsError) as err:
        fix_lrc(lrc(f"[00:05.00]{FIRE}", "[00:08.00]1 2 3 4"))
    assert err.value.line == 2


def test_fix_random_crowded_songs():
    rng = random.Random(23)
    pool = [LONG, MID, FIRE, HOLD, ZH_LONG, "Say it", "我爱你"]
    for _ in range(12):
        stamps = sorted(round(rng.uniform(0, 80), 2) for _ in range(rng.randint(3, 14)))
        lines = [f"[{int(t // 60):02d}:{t % 60:05.2f}]{rng.choice(pool)}" for t in stamps]
        rng.shuffle(lines)
        assert_fixed(lrc(*lines), duration=96)


# --- shape ---------------------------------------------------------------------------------


def test_report_json_shape():
    report = lint_lrc(lrc(f"[00:05.00]{FIRE}", f"[00:05.00]{MID}", "[00:09.00]"), model="base")
    data = json.loads(json.dumps(report.to_dict()))
    assert data == report.to_dict()
    assert set(data) == {"findings", "lines", "duration", "model", "keep_last_line", "clean"}
    assert data["lines"] == 2 and data["duration"] == 95 and data["model"] == "v1.2-base"
    assert data["clean"] is False
    assert all(set(f) == {"line", "kind", "message"} for f in data["findings"])
    assert [f["line"] for f in data["findings"]] == [2, 2, 3]
    assert {f["kind"] for f in data["findings"]} <= set(KINDS)
    assert Finding(1, "dense", "m").to_dict() == {"line": 1, "kind": "dense", "message": "m"}
    empty = lint_lrc("")
    assert empty.clean and empty.to_dict()["findings"] == [] and empty.lines == 0


def test_import_is_cheap():
    code = ("import sys, rhythmflow.lyrics.lint; "
            "bad = [m for m in ('torch', 'phonemizer', 'jieba', 'onnxruntime') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
