"""Plain / sectioned lyrics → timed LRC (issue 15): units, tempo, sections, dropping, errors,
round trip through our own LRC reader and frame placement. Real espeak-ng and G2P resources."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rhythmflow.errors import LrcError, LyricsError, RhythmflowError, UsageError
from rhythmflow.lyrics import autotime, lrc_to_track, parse_lrc, time_lyrics
from rhythmflow.lyrics.autotime import (
    BREATH_UNITS,
    GAP_BEATS,
    INTRO_SECONDS,
    MIN_PAUSE_SCALE,
    OUTRO_SECONDS,
    RATES,
)
from rhythmflow.lyrics.g2p import g2p_phonemes
from rhythmflow.lyrics.sections import Blank, Marker, PlainLine, parse_plain
from rhythmflow.lyrics.tokens import LAST_LINE_RULE, frame_of
from rhythmflow.lyrics.units import english_syllables, sung_units
from rhythmflow.specs import FRAME_RATE

VERSE = [
    "Moonlight spills through broken blinds",
    "Your shadow dances on the dashboard shrine",
    "Neon ghosts in gasoline rain",
    "I hear your laughter down the midnight train",
]
CHORUS = ["Oh we are running out of time", "Every little step is a line", "Hold on"]
SONG = "\n".join(VERSE + [""] + CHORUS + [""] + VERSE + [""] + CHORUS) + "\n"


def _timed(lrc: str) -> list[tuple[float, str]]:
    return [(x.start, x.text) for x in parse_lrc(lrc)]


def check_fits(result, given_lines: list[str]) -> None:
    """The LRC reads back to exactly the kept lines, in order, strictly increasing, inside the
    song, and every line places all its tokens at its own frame (keep_last_line=True)."""
    back = parse_lrc(result.lrc)
    assert [x.text for x in back] == given_lines
    starts = [x.start for x in back]
    assert all(a < b for a, b in pairwise(starts))
    assert all(0 <= s < result.duration for s in starts)
    if not given_lines:  # markers only: an instrumental, planned as no lyrics at all
        return
    track = lrc_to_track(result.lrc, max_frames=result.max_frames, audio_length=result.duration,
                         keep_last_line=True)
    assert not track.dropped and not track.truncated
    assert [(p.line.text, p.frame_start) for p in track.placed] == [
        (x.text, frame_of(x.start)) for x in back]
    assert all(p.frame_len == p.n_tokens >= 1 for p in track.placed)


# ------------------------------------------------------------------------------ sung units


@pytest.mark.parametrize(
    ("word", "syllables"),
    [("little", 2), ("button", 2), ("film", 1), ("beautiful", 3), ("rhythm", 2), ("fire", 2),
     ("strengths", 1), ("help", 1), ("atlas", 2), ("Hello little song", 5), ("hmm", 1)],
)
def test_english_syllables_from_the_g2p_phonemes(word, syllables) -> None:
    assert english_syllables(g2p_phonemes(word)) == syllables


def test_sung_units_count_english_syllables_and_chinese_characters() -> None:
    assert sung_units("Hello little song") == (5, 0)
    assert sung_units("我爱你，中国") == (0, 5)
    assert sung_units("Hello 北京 good night") == (4, 2)


# ------------------------------------------------------------------------- basic timing


def test_english_unsectioned_fills_the_song_in_order() -> None:
    result = time_lyrics(SONG, 95)
    given_lines = [x for x in SONG.splitlines() if x]
    check_fits(result, given_lines)
    assert result.language == "en" and result.max_frames == 2048 and not result.warnings
    assert result.lines[0].start == INTRO_SECONDS
    assert not result.dropped and result.suggested_duration is None
    assert autotime(SONG, 95) == result.lrc  # deterministic, and the str form agrees
    # blank lines are kept as untimed lines: the stanzas stay visible in the LRC
    assert result.lrc.count("\n\n") == 3


def test_chinese_lyrics_count_characters_and_pick_the_chinese_rates() -> None:
    text = "我爱你中国\n亲爱的母亲\n\n我为你流泪\n也为你自豪\n"
    result = time_lyrics(text, 95)
    check_fits(result, [x for x in text.splitlines() if x])
    assert result.language == "zh"
    assert [x.units for x in result.lines] == [5, 5, 5, 5]
    slowest, _, fastest = RATES["zh"]
    assert 1 / fastest <= result.beat <= 1 / slowest


def test_mixed_language_line_units_and_detection() -> None:
    text = "Hello 北京 good night\nI love 上海 in the rain\n我的 baby 别走\n"
    result = time_lyrics(text, 95)
    check_fits(result, [x for x in text.splitlines() if x])
    assert [x.units for x in result.lines] == [6, 7, 6]
    assert result.language == "en"  # 11 English syllables against 8 characters
    assert time_lyrics(text, 95, language="zh").language == "zh"


def test_language_only_changes_the_rate_table() -> None:
    text = "\n".join(VERSE * 14)  # dense enough that the fastest rate decides
    en, zh = time_lyrics(text, 95, language="en"), time_lyrics(text, 95, language="zh")
    assert en.beat == pytest.approx(1 / RATES["en"][2]) and zh.beat == pytest.approx(
        1 / RATES["zh"][2])
    assert len(zh.lines) < len(en.lines)  # slower fastest rate: fewer lines fit


# --------------------------------------------------------------------------- proportions


def test_line_slots_are_proportional_to_sung_units_within_the_tempo() -> None:
    """Stated bounds: inside a stanza, the time from one line's start to the next is
    (units + 1 breath) x beat, to the centisecond rounding of both times (<= 0.02 s), unless a
    line's tokens need more frames; the beat lies between the language's slowest and fastest
    rates. Across lines: a line twice as long in units gets a slot about twice as long."""
    text = "\n".join(VERSE + CHORUS + VERSE + CHORUS + VERSE) + "\n"
    result = time_lyrics(text, 95)
    check_fits(result, [x for x in text.splitlines() if x])
    slowest, _, fastest = RATES["en"]
    assert 1 / fastest <= result.beat <= 1 / slowest
    slots = []
    for a, b in pairwise(result.lines):
        floor = (a.tokens + 2) / FRAME_RATE
        expected = max((a.units + BREATH_UNITS) * result.beat, floor)
        assert abs((b.start - a.start) - expected) <= 0.02, (a, b)
        slots.append((a.units, b.start - a.start))
    # ordinary lyrics: no line was stretched to its token floor
    assert all(abs(s - (u + 1) * result.beat) <= 0.02 for u, s in slots)
    short = min(slots)
    long = max(slots)
    assert long[1] / short[1] == pytest.approx((long[0] + 1) / (short[0] + 1), rel=0.02)


def test_tempo_fills_the_duration_on_the_full_model() -> None:
    """Normal case: the last line's slot ends exactly where the outro starts."""
    text = "\n".join(VERSE * 10) + "\n"
    result = time_lyrics(text, 150)
    check_fits(result, [x for x in text.splitlines() if x])
    assert result.max_frames == 6144 and result.pause_scale == 1.0 and not result.warnings
    last = result.lines[-1]
    end = last.start + (last.units + BREATH_UNITS) * result.beat
    assert end == pytest.approx(150 - OUTRO_SECONDS, abs=0.02)


# ------------------------------------------------------------------------------ sections


def test_section_markers_are_never_sung_and_reserve_time() -> None:
    text = ("[Intro]\n[Verse 1]\n" + "\n".join(VERSE) + "\n\n[Chorus]\n" + "\n".join(CHORUS)
            + "\n\n[instrumental]\n\n【副歌】\n" + "\n".join(CHORUS) + "\n[Break]\n"
            + "\n".join(VERSE[:2]) + "\n[Outro]\n")
    result = time_lyrics(text, 95)
    sung = VERSE + CHORUS + CHORUS + VERSE[:2]
    check_fits(result, sung)
    for marker in ("[Intro]", "[Verse 1]", "[Chorus]", "[instrumental]", "【副歌】", "[Break]",
                   "[Outro]"):
        assert marker + "\n" in result.lrc  # kept as an untimed line, skipped by readers
    lines, beat, scale = result.lines, result.beat, result.pause_scale

    def slot(x):
        return (x.units + BREATH_UNITS) * beat

    # [Intro] reserves 8 s (scaled) after the lead-in
    assert lines[0].start == pytest.approx(INTRO_SECONDS + 8.0 * scale, abs=0.01)
    # verse → chorus: a stanza gap of GAP_BEATS beats
    v_end, c_first = lines[3], lines[4]
    assert c_first.start - v_end.start == pytest.approx(slot(v_end) + GAP_BEATS * beat, abs=0.02)
    # [instrumental] replaces the gap with 8 s; [Break] with 4 s
    a, b = lines[6], lines[7]
    assert b.start - a.start == pytest.approx(slot(a) + 8.0 * scale, abs=0.02)
    a, b = lines[9], lines[10]
    assert b.start - a.start == pytest.approx(slot(a) + 4.0 * scale, abs=0.02)
    # [Outro]: 8 s plus the outro after the last line fill the end of the song
    end = lines[-1].start + slot(lines[-1])
    assert end + (8.0 + OUTRO_SECONDS) * scale == pytest.approx(95, abs=0.02)


def test_marker_forms_english_and_chinese() -> None:
    text = ("Verse 2:\n(Chorus)\n副歌：\n【主歌】\n[Pre-Chorus]\n[间奏]\n[Guitar riff]\n"
            "[Chorus] la la la\n[laughs] ha ha\n[ti:My song]\nbreakfast at noon\n")
    items = parse_plain(text)
    markers = [(x.text, x.kind) for x in items if isinstance(x, Marker)]
    assert markers == [("Verse 2:", "verse"), ("(Chorus)", "chorus"), ("副歌：", "chorus"),
                       ("【主歌】", "verse"), ("[Pre-Chorus]", "pre-chorus"),
                       ("[间奏]", "instrumental"), ("[Guitar riff]", "unknown"),
                       ("[Chorus]", "chorus")]
    assert [x.text for x in items if isinstance(x, PlainLine)] == [
        "la la la", "[laughs] ha ha", "breakfast at noon"]
    result = time_lyrics(text, 95)
    check_fits(result, ["la la la", "[laughs] ha ha", "breakfast at noon"])


def test_blank_runs_give_one_stanza_break() -> None:
    items = parse_plain("\n\nOne line\n\n\n\nTwo line\n\n")
    assert [type(x) for x in items] == [PlainLine, Blank, PlainLine]


def test_markers_only_is_an_instrumental_lrc() -> None:
    result = time_lyrics("[Intro]\n[Instrumental]\n\n[Outro]\n", 95)
    assert parse_lrc(result.lrc) == [] and result.lines == ()
    assert "[Instrumental]" in result.lrc
    assert any("instrumental" in w for w in result.warnings)
    from rhythmflow.planner.core import Machine, plan
    from rhythmflow.request import GenerationRequest

    p = plan(GenerationRequest(lyrics="[Intro]\n[Instrumental]\n\n[Outro]\n", style_prompt="x"),
             Machine(cores=1, memory_available=1 << 40))
    assert p.lrc == "" and p.autotime["lrc"] == result.lrc  # run conditions on no lyrics


# ------------------------------------------------------------------------ too many lyrics


def test_too_many_lyrics_for_95_s_drops_the_last_lines_and_names_them(caplog) -> None:
    lines = [f"{w} is a line we sing about the morning light" for w in (
        "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight")] * 8
    text = "\n".join(f"{line} number {i}" for i, line in enumerate(lines)) + "\n"
    given_lines = text.splitlines()
    result = time_lyrics(text, 95)
    kept = [x.text for x in result.lines]
    assert 0 < len(kept) < len(given_lines)
    check_fits(result, kept)
    assert kept == given_lines[: len(kept)]  # the beginning is kept, the end dropped
    assert [x.text for x in result.dropped] == given_lines[len(kept):]
    assert [x.line for x in result.dropped] == list(range(len(kept) + 1, len(given_lines) + 1))
    (warning,) = result.warnings
    for x in result.dropped:
        assert f"line {x.line} " in warning
    assert result.suggested_duration > 95
    assert f"--duration {result.suggested_duration}" in warning or "split" in warning
    assert result.beat == pytest.approx(1 / RATES["en"][2])
    assert MIN_PAUSE_SCALE <= result.pause_scale < 1


def test_dense_lyrics_shrink_pauses_before_dropping() -> None:
    text = "\n".join(VERSE * 13) + "\n"
    result = time_lyrics(text, 95)
    check_fits(result, [x for x in text.splitlines() if x])
    assert not result.dropped
    assert MIN_PAUSE_SCALE <= result.pause_scale < 1
    assert result.beat == pytest.approx(1 / RATES["en"][2])
    assert result.suggested_duration > 95 and "dense" in result.warnings[0]


def test_nothing_fits_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="none of the lyrics fit in 5 s.*duration=25"):
        time_lyrics("\n".join(VERSE), 5)


def test_few_lyrics_use_the_slowest_tempo_and_a_longer_ending() -> None:
    result = time_lyrics("Hold on\n", 95)
    check_fits(result, ["Hold on"])
    assert result.beat == pytest.approx(1 / RATES["en"][0]) and result.pause_scale > 1
    assert result.lines[0].start == INTRO_SECONDS  # the lead-in is not stretched


# --------------------------------------------------------------------- the 95 s last-line rule


def test_last_line_rule_is_reported_and_generate_keeps_every_line() -> None:
    result = time_lyrics(SONG, 95)
    assert result.last_line_rule
    n = len(result.lines)
    kept = lrc_to_track(result.lrc, max_frames=2048, audio_length=95, keep_last_line=True)
    assert len(kept.placed) == n
    ruled = lrc_to_track(result.lrc, max_frames=2048, audio_length=95)
    assert [d.reason for d in ruled.dropped] == [LAST_LINE_RULE] and len(ruled.placed) == n - 1
    assert not time_lyrics(SONG, 150).last_line_rule


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("text", ["", "\n\n  \n", "\ufeff", "[ti:Title]\n[ar:Someone]\n"])
def test_empty_lyrics_are_a_typed_error(text) -> None:
    with pytest.raises(LyricsError, match="empty"):
        time_lyrics(text, 95)


def test_lrc_input_is_refused_with_a_hint() -> None:
    with pytest.raises(LrcError, match=r"line 2.*already timed LRC.*timed lyrics \(lrc\)"):
        time_lyrics("Hello\n[00:12.00]world\n", 95)


def test_unsingable_line_names_the_input_line() -> None:
    with pytest.raises(LyricsError, match=r"line 3 \('\*\*\*'\).*English or Chinese letters"):
        time_lyrics("Hello there\n\n***\n", 95)


def test_lrc_syntax_inside_a_line_is_refused() -> None:
    with pytest.raises(LyricsError, match="line 1.*timing syntax"):
        time_lyrics("Hello <00:10.50>world\n", 95)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"duration": 0}, "duration must be a positive"), ({"duration": float("nan")}, "duration"),
     ({"duration": -3}, "duration"), ({"duration": True}, "duration"),
     ({"duration": 500}, "longer than the model's 6144 frames"),
     ({"duration": 150, "max_frames": 2048}, "longer than the model's 2048 frames"),
     ({"intro": -1}, "intro must be a non-negative"), ({"outro": float("inf")}, "outro"),
     ({"language": "fr"}, "language must be one of"), ({"max_frames": 0}, "max_frames")],
)
def test_bad_arguments_are_usage_errors(kwargs, message) -> None:
    args = {"duration": 95, **kwargs}
    with pytest.raises(UsageError, match=message):
        time_lyrics("Hello there\n", args.pop("duration"), **args)


def test_text_must_be_str() -> None:
    with pytest.raises(UsageError, match="must be text"):
        time_lyrics(b"Hello", 95)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ property test

_LINES = st.sampled_from(
    VERSE + CHORUS + ["", "", "[Verse]", "[Chorus]", "[instrumental]", "[Break]", "[Outro]",
                      "【副歌】", "前奏：", "我爱你中国", "Hello 北京", "***", "[ti:x]",
                      "[laughs] ha", "1 2 3", "don't stop", "[00:10.00]timed", "Oh!"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.one_of(_LINES, _LINES, st.text(max_size=30)), max_size=30),
    duration=st.sampled_from([95.0, 60.0, 120.0, 285.0, 12.0]),
    intro=st.sampled_from([0.0, 6.0, 20.0]),
)
def test_any_text_gives_a_typed_error_or_an_lrc_that_fits(parts, duration, intro) -> None:
    text = "\n".join(parts)
    try:
        result = time_lyrics(text, duration, intro=intro)
    except RhythmflowError as exc:
        assert isinstance(exc, UsageError), exc  # bad input, never an asset problem here
        return
    given_lines = [x.text for x in parse_plain(text) if isinstance(x, PlainLine)]
    kept = [x.text for x in result.lines]
    assert kept == given_lines[: len(kept)]
    assert [x.text for x in result.dropped] == given_lines[len(kept):]
    check_fits(result, kept)
    assert all(math.isfinite(x.start) for x in result.lines)
