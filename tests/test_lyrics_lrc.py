"""LRC parsing: accepted formats, skipped lines, offsets, ordering and every error message."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rhythmflow.errors import LrcError, UsageError
from rhythmflow.lyrics import LyricLine, parse_lrc


def _pairs(text: str) -> list[tuple[float, str]]:
    return [(line.start, line.text) for line in parse_lrc(text)]


@pytest.mark.parametrize(
    ("tag", "seconds"),
    [
        ("[00:05.00]", 5.0),
        ("[00:05.50]", 5.5),
        ("[0:05.50]", 5.5),
        ("[00:05]", 5.0),
        ("[0:05]", 5.0),
        ("[00:05.5]", 5.5),
        ("[00:10.129]", 10.129),
        ("[01:05.30]", 65.3),
        ("[99:59.999]", 99 * 60 + 59.999),
    ],
)
def test_timestamp_formats(tag: str, seconds: float) -> None:
    (line,) = parse_lrc(f"{tag}Hello there")
    assert line == LyricLine(pytest.approx(seconds, abs=1e-12), "Hello there", 1)


def test_times_use_the_original_float_arithmetic() -> None:
    # int(minutes) * 60 + float("ss.xx"), as DiffRhythm computes it (frame positions depend on it)
    assert parse_lrc("[01:34.99]x")[0].start == 94.99000000000001
    assert parse_lrc("[02:30.42]x")[0].start == 150.42000000000002


def test_several_timestamps_on_one_line_give_one_entry_each_sorted() -> None:
    text = "[00:10.00][00:20.00]Repeat after me\n[00:15.00] In between\n[00:30.00] [00:25.00]Hook"
    assert [(x.start, x.text, x.line) for x in parse_lrc(text)] == [
        (10.0, "Repeat after me", 1),
        (15.0, "In between", 2),
        (20.0, "Repeat after me", 1),
        (25.0, "Hook", 3),
        (30.0, "Hook", 3),
    ]


def test_sort_is_stable_for_equal_times() -> None:
    text = "[00:09.00]c\n[00:05.00]a\n[00:05.00]b\n[00:05.00]a2"
    assert _pairs(text) == [(5.0, "a"), (5.0, "b"), (5.0, "a2"), (9.0, "c")]


def test_id_tags_are_skipped() -> None:
    text = (
        "[ti:Night Drive]\n[ar:Someone]\n[al:Album]\n[by:me]\n[length:03:20]\n[re:editor]\n"
        "[ve:1.0]\n[au:Author]\n[#a comment]\n[la:EN]\n[00:08.00]Engines humming low"
    )
    assert [(x.start, x.text, x.line) for x in parse_lrc(text)] == [
        (8.0, "Engines humming low", 11)
    ]


@pytest.mark.parametrize(
    ("offset", "expected"),
    [("+500", [7.5, 11.5]), ("500", [7.5, 11.5]), ("-250", [8.25, 12.25]), (" +0 ", [8.0, 12.0])],
)
def test_offset_moves_lyrics_positive_earlier(offset: str, expected: list[float]) -> None:
    text = f"[00:08.00]Engines humming low\n[offset:{offset}]\n[00:12.00]Headlights"
    assert [x.start for x in parse_lrc(text)] == expected


def test_offset_clamps_at_zero() -> None:
    assert _pairs("[offset:+5000]\n[00:02.00]a\n[00:07.00]b") == [(0.0, "a"), (2.0, "b")]


def test_bom_and_line_endings() -> None:
    expected = [(3.0, "One"), (7.0, "Two"), (11.0, "Three")]
    for sep in ("\n", "\r\n", "\r"):
        body = sep.join(["[00:03.00]One", "[00:07.00]Two", "", "[00:11.00]Three"]) + sep
        assert _pairs(body) == expected
        assert _pairs("\ufeff" + body) == expected
    mixed = "\ufeff[00:03.00]One\r\n[00:07.00]Two\r[00:11.00]Three\n"
    assert [x.line for x in parse_lrc(mixed)] == [1, 2, 3]


def test_blank_untimed_and_indented_lines() -> None:
    text = (
        "\n\n   \n[00:06.00]After blanks\n\nNo timestamp here\n   [00:09.00]Indented\n"
        "[00:12.00]   spaces after   \n[00:15.00]\tTab after\nChorus:\n[Chorus]\n[Verse 1]\n"
        "(00:04.00)Round brackets\nx00:08.00yAround\nA 0:12.00 line of prose\n[\n[00:18.00]Last\n\n"
    )
    assert [(x.start, x.text, x.line) for x in parse_lrc(text)] == [
        (6.0, "After blanks", 4),
        (9.0, "Indented", 7),
        (12.0, "spaces after", 8),
        (15.0, "Tab after", 9),
        (18.0, "Last", 17),
    ]


def test_bare_timestamp_is_an_instrumental_marker() -> None:
    text = "[00:05.00]Intro words\n[00:10.00]\n[00:15.00]   \n[00:20.00]After the break"
    assert _pairs(text) == [(5.0, "Intro words"), (10.0, ""), (15.0, ""), (20.0, "After the break")]


def test_enhanced_lrc_word_times_are_removed() -> None:
    text = "[00:10.00]<00:10.00>Hello <00:10.50>there <0:1>x\n[00:12.00]<00:12.00> <00:13.00>"
    assert _pairs(text) == [(10.0, "Hello there <0:1>x"), (12.0, "")]


def test_empty_text_gives_no_lines() -> None:
    assert parse_lrc("") == []
    assert parse_lrc("\ufeff\n\r\n  \n") == []


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ("[00:35:50]colon before fraction", "malformed timestamp [00:35:50]"),
        ("[00:75.00]too many seconds", "impossible timestamp [00:75.00]"),
        ("[00:60]sixty seconds", "impossible timestamp [00:60]"),
        ("[-00:05.00]negative", "negative timestamp"),
        ("[−00:05.00]unicode minus", "negative timestamp"),
        ("[00:5.00]one second digit", "malformed timestamp [00:5.00]"),
        ("[000:05.00]three minute digits", "malformed timestamp [000:05.00]"),
        ("[00:05.1234]four fraction digits", "malformed timestamp [00:05.1234]"),
        ("[00:05.]empty fraction", "malformed timestamp [00:05.]"),
        ("[1.5]no colon", "malformed timestamp [1.5]"),
        ("[00:05.00 unclosed", "unclosed timestamp [00:05.00 unclosed"),
        ("[00:04.00][00:3x]second tag", "malformed timestamp [00:3x]"),
    ],
)
def test_malformed_timestamp_errors_name_the_line(bad: str, what: str) -> None:
    text = f"[ti:Song]\n[00:01.00]fine\n{bad}\n[00:09.00]also fine"
    with pytest.raises(LrcError) as info:
        parse_lrc(text)
    msg = str(info.value)
    assert msg.startswith("LRC line 3: ")
    assert what in msg
    assert repr(bad) in msg  # shows the offending line
    assert "[mm:ss.xx]" in msg  # and how to write it


@pytest.mark.parametrize("value", ["abc", "", "1.5", "+-5", "5ms"])
def test_malformed_offset_is_an_error(value: str) -> None:
    with pytest.raises(LrcError) as info:
        parse_lrc(f"[00:01.00]ok\n[offset:{value}]")
    msg = str(info.value)
    assert msg.startswith("LRC line 2: malformed offset value")
    assert "milliseconds" in msg


def test_long_lines_are_shortened_in_messages() -> None:
    with pytest.raises(LrcError) as info:
        parse_lrc("[00:99.00]" + "la " * 100)
    assert "..." in str(info.value)
    assert len(str(info.value)) < 300


def test_lrc_error_is_a_usage_error_and_value_error() -> None:
    with pytest.raises(LrcError) as info:
        parse_lrc("[00:61.00]x")
    assert isinstance(info.value, UsageError)
    assert isinstance(info.value, ValueError)


def test_non_text_input_is_an_lrc_error() -> None:
    with pytest.raises(LrcError, match="must be text"):
        parse_lrc(b"[00:01.00]bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------- property-based

_LRC_CHARS = st.sampled_from(list("[]:.0123456789-+ \t\r\n\ufeffabcxyz#,()") + ["ti", "offset"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.lists(_LRC_CHARS, max_size=60).map("".join)))
def test_arbitrary_text_only_raises_lrc_error(text: str) -> None:
    try:
        lines = parse_lrc(text)
    except LrcError as exc:
        assert str(exc).startswith("LRC")
        return
    starts = [x.start for x in lines]
    assert starts == sorted(starts)
    n_lines = len(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    for x in lines:
        assert isinstance(x, LyricLine)
        assert x.start >= 0.0
        assert 1 <= x.line <= n_lines
        assert x.text == x.text.strip()


_entry = st.tuples(
    st.integers(0, 99),
    st.integers(0, 59),
    st.integers(0, 99),
    st.text(alphabet="abcdefghij XYZ", max_size=12),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_entry, max_size=12))
def test_generated_lrc_round_trips(entries: list[tuple[int, int, int, str]]) -> None:
    text = "\n".join(f"[{m:02d}:{s:02d}.{c:02d}]{lyric}" for m, s, c, lyric in entries)
    expected = [
        (m * 60 + float(f"{s:02d}.{c:02d}"), lyric.strip(), i + 1)
        for i, (m, s, c, lyric) in enumerate(entries)
    ]
    expected.sort(key=lambda e: e[0])
    assert [(x.start, x.text, x.line) for x in parse_lrc(text)] == expected
