"""Frame-track placement: frame maths, punctuation, push-back, truncation, drop rules, errors."""

from __future__ import annotations

import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rhythmflow.errors import LrcError, LyricsError, UsageError
from rhythmflow.lyrics import LyricLine, g2p_tokens, lrc_to_track, place_tokens
from rhythmflow.lyrics.tokens import (
    AFTER_END_FRAME,
    LAST_LINE_RULE,
    PAST_END,
    end_frame_for,
    frame_of,
    song_duration_half,
)

FULL = {"max_frames": 6144, "audio_length": 150}
BASE = {"max_frames": 2048, "audio_length": 95}


def _lines(*starts_texts: tuple[float, str]) -> list[LyricLine]:
    return [LyricLine(t, text, i + 1) for i, (t, text) in enumerate(starts_texts)]


def _row(track) -> list[int]:
    return track.tokens[0].tolist()


@pytest.mark.parametrize(
    ("max_frames", "audio_length", "end", "duration"),
    [
        (2048, 95, 2048, 1.0),
        (2048, 40, 2048, 1.0),
        (6144, 285, 6136, 0.99853515625),
        (6144, 150, 3229, 0.525390625),
        (6144, 300, 6144, 1.0),
    ],
)
def test_end_frame_and_song_duration(max_frames, audio_length, end, duration) -> None:
    assert end_frame_for(max_frames, audio_length) == end
    assert song_duration_half(end, max_frames) == duration
    track = place_tokens([], [], max_frames=max_frames, audio_length=audio_length)
    assert track.end_frame == end
    assert track.song_duration == duration
    assert track.start_time == 0.0
    assert track.tokens.dtype == torch.int64
    assert tuple(track.tokens.shape) == (1, end)
    assert not track.tokens.any()


def test_frame_of_truncates_like_the_original() -> None:
    assert frame_of(10.0) == 215  # 441000 / 2048 = 215.33
    assert frame_of(10.129) == 218
    assert frame_of(10.12) == 217
    assert frame_of(0.0) == 0


def test_periods_become_commas_and_each_line_ends_with_a_period() -> None:
    track = place_tokens(_lines((1.0, "a")), [[10, 2, 11, 2]], **FULL)
    row = _row(track)
    assert row[21:26] == [10, 1, 11, 1, 2]
    assert sum(1 for x in row if x) == 5
    (p,) = track.placed
    assert (p.frame_start, p.n_tokens, p.frame_len) == (21, 5, 5)


def test_lines_never_overlap_and_are_pushed_back() -> None:
    lines = _lines((1.0, "a"), (1.0, "b"), (1.01, "c"))
    track = place_tokens(lines, [[10, 11, 12], [20], [30, 31]], **FULL)
    row = _row(track)
    assert row[21:31] == [10, 11, 12, 2, 20, 2, 30, 31, 2, 0]
    assert [p.frame_start for p in track.placed] == [21, 25, 27]


def test_lines_at_or_after_audio_length_are_dropped() -> None:
    lines = _lines((10.0, "in"), (149.0, "just in"), (150.0, "at end"), (200.0, "after"))
    track = place_tokens(lines, [[10], [11], [12], [13]], **FULL)
    assert [(d.line.text, d.reason) for d in track.dropped] == [
        ("at end", PAST_END),
        ("after", PAST_END),
    ]
    assert [p.line.text for p in track.placed] == ["in", "just in"]


def test_tokens_past_end_frame_are_cut() -> None:
    start = 3226 * 2048 / 44100 + 1e-6  # frame 3226 of 3229
    lines = _lines((start, "long"))
    track = place_tokens(lines, [[10, 11, 12, 13, 14]], **FULL)
    assert _row(track)[-3:] == [10, 11, 12]  # the final period is lost too
    assert track.truncated == (lines[0],)
    (p,) = track.placed
    assert (p.n_tokens, p.frame_len) == (6, 3)


def test_line_starting_on_the_end_frame_is_reported() -> None:
    # 149.99 s is inside a 150 s song, but int(149.99 * 44100 / 2048) == 3229 == end_frame
    track = place_tokens(_lines((149.99, "too late")), [[10]], **FULL)
    assert [(d.line.text, d.reason) for d in track.dropped] == [("too late", AFTER_END_FRAME)]
    assert not track.tokens.any()


def test_line_pushed_past_the_end_frame_is_reported() -> None:
    lines = _lines((149.9, "fills the end"), (149.95, "no room left"))
    track = place_tokens(lines, [[10] * 20, [11]], **FULL)
    assert [(d.line.text, d.reason) for d in track.dropped] == [("no room left", AFTER_END_FRAME)]
    assert 11 not in _row(track)


def test_base_model_drops_the_last_line_unless_asked() -> None:
    lines = _lines((1.0, "first"), (5.0, "second"), (9.0, "last"), (96.0, "past"))
    tokens = [[10], [11], [12], [13]]
    track = place_tokens(lines, tokens, **BASE)
    assert [p.line.text for p in track.placed] == ["first", "second"]
    assert [(d.line.text, d.reason) for d in track.dropped] == [
        ("past", PAST_END),
        ("last", LAST_LINE_RULE),
    ]
    kept = place_tokens(lines, tokens, **BASE, keep_last_line=True)
    assert [p.line.text for p in kept.placed] == ["first", "second", "last"]
    assert [d.reason for d in kept.dropped] == [PAST_END]
    full = place_tokens(lines, tokens, max_frames=6144, audio_length=95)
    assert [p.line.text for p in full.placed] == ["first", "second", "last"]


def test_instrumental_markers_place_nothing_and_are_not_the_last_line() -> None:
    lines = _lines((1.0, "sung"), (5.0, "also sung"), (9.0, ""))
    track = place_tokens(lines, [[10], [11], [99]], **BASE)
    assert [p.line.text for p in track.placed] == ["sung"]
    assert [(d.line.text, d.reason) for d in track.dropped] == [("also sung", LAST_LINE_RULE)]
    assert 99 not in _row(track)
    lrc = "[00:01.00]Hello\n[00:03.00]\n[00:05.00]Goodbye now"
    track = lrc_to_track(lrc, **FULL)
    assert [p.line.text for p in track.placed] == ["Hello", "Goodbye now"]


def test_lrc_to_track_places_parsed_and_tokenised_lines() -> None:
    lrc = "[00:05.00]Go now\n[00:01.00]Hello there."
    track = lrc_to_track(lrc, **FULL)
    hello = [1 if t == 2 else t for t in g2p_tokens("Hello there.")] + [2]
    go = [1 if t == 2 else t for t in g2p_tokens("Go now")] + [2]
    row = _row(track)
    assert row[21 : 21 + len(hello)] == hello
    assert row[107 : 107 + len(go)] == go
    assert sum(1 for x in row if x) == len(hello) + len(go)


def test_empty_lrc_gives_an_empty_track() -> None:
    track = lrc_to_track("", **BASE)
    assert tuple(track.tokens.shape) == (1, 2048)
    assert not track.tokens.any()
    assert track.placed == track.dropped == track.truncated == ()


def test_g2p_errors_name_the_lrc_line() -> None:
    lrc = "[00:01.00]Count it in\n\n[00:05.00]1 2 3 4\n[00:09.00]Go"
    with pytest.raises(LyricsError) as info:
        lrc_to_track(lrc, **FULL)
    msg = str(info.value)
    assert msg.startswith("LRC line 3 ('1 2 3 4'): ")
    assert "no English or Chinese letters" in msg


def test_lines_past_the_end_are_still_checked() -> None:
    with pytest.raises(LyricsError, match="LRC line 2"):
        lrc_to_track("[00:01.00]ok\n[04:00.00]!!!", **FULL)


def test_lrc_errors_pass_through() -> None:
    with pytest.raises(LrcError, match="LRC line 1"):
        lrc_to_track("[00:61.00]bad", **FULL)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_frames": 0, "audio_length": 95}, "max_frames"),
        ({"max_frames": 2048.0, "audio_length": 95}, "max_frames"),
        ({"max_frames": True, "audio_length": 95}, "max_frames"),
        ({"max_frames": 2048, "audio_length": 0}, "audio_length"),
        ({"max_frames": 2048, "audio_length": -5}, "audio_length"),
        ({"max_frames": 2048, "audio_length": math.nan}, "audio_length"),
        ({"max_frames": 2048, "audio_length": "95"}, "audio_length"),
    ],
)
def test_bad_sizes_are_usage_errors(kwargs, fragment) -> None:
    with pytest.raises(UsageError, match=fragment):
        lrc_to_track("[00:01.00]hi", **kwargs)
    with pytest.raises(UsageError, match=fragment):
        place_tokens([], [], **kwargs)


def test_mismatched_token_lists_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="1 lines but 0 token lists"):
        place_tokens(_lines((1.0, "a")), [], **FULL)


def test_global_random_state_is_untouched() -> None:
    state = random.getstate()
    lrc_to_track("[00:01.00]Hello\n[00:02.00]World", **FULL)
    assert random.getstate() == state


_timed = st.lists(
    st.tuples(
        st.floats(0, 160, allow_nan=False),
        st.lists(st.integers(1, 363), min_size=0, max_size=40),
    ),
    max_size=15,
)


@settings(max_examples=150, deadline=None)
@given(_timed, st.sampled_from([(2048, 95), (6144, 285), (6144, 150)]), st.booleans())
def test_placement_invariants(timed, combo, keep_last) -> None:
    mf, al = combo
    lines = [LyricLine(t, f"l{i}", i + 1) for i, (t, _) in enumerate(timed)]
    track = place_tokens(
        lines, [toks for _, toks in timed], max_frames=mf, audio_length=al, keep_last_line=keep_last
    )
    row = _row(track)
    assert len(row) == track.end_frame == end_frame_for(mf, al)
    previous_end = 0
    for p in track.placed:
        assert p.frame_start >= previous_end
        assert p.frame_start >= frame_of(p.line.start)
        assert 0 < p.frame_len <= p.n_tokens
        toks = [1 if t == 2 else t for t in timed[p.line.line - 1][1]] + [2]
        assert row[p.frame_start : p.frame_start + p.frame_len] == toks[: p.frame_len]
        previous_end = p.frame_start + p.frame_len
    assert sum(p.frame_len for p in track.placed) == sum(1 for x in row if x)
    assert len(track.placed) + len(track.dropped) == len(lines)
