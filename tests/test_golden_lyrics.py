"""Golden tests of the lyrics front-end against upstream DiffRhythm outputs.

Cases are discovered from the golden folder (RHYTHMFLOW_GOLDEN_DIR/lyrics): every English and
Chinese line, every LRC case and every stored (case, setting) result. Cases marked
``upstream_wrong`` are checked against the correct behaviour instead (see lrc.py): the suggested
parse, with the expected track computed by the upstream placement rules (``_reference_track``,
itself checked against every stored track) from the golden per-line tokens.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from rhythmflow.errors import LrcError, LyricsError
from rhythmflow.lyrics import (
    LyricLine,
    g2p_phonemes,
    g2p_tokens,
    lrc_to_track,
    parse_lrc,
    place_tokens,
)

REPO = Path(__file__).resolve().parents[1]
LYRICS = Path(os.environ.get("RHYTHMFLOW_GOLDEN_DIR", REPO.parent / "shared" / "golden")) / "lyrics"
MISSING = pytest.param(None, id="golden-file-missing")


def _jsonl(name: str) -> list:
    path = LYRICS / name
    if not path.is_file():
        return [MISSING]
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [pytest.param(r, id=f"{i}:{r.get('source', '')}") for i, r in enumerate(records)]


def _cases() -> list[dict] | None:
    path = LYRICS / "lrc_cases.json"
    return json.loads(path.read_text(encoding="utf-8"))["cases"] if path.is_file() else None


def _case_params(wrong: bool) -> list:
    if CASES is None:
        return [MISSING]
    return [pytest.param(c, id=c["name"]) for c in CASES if c["upstream_wrong"] == wrong]


def _combo_params(wrong: bool) -> list:
    if CASES is None:
        return [pytest.param(None, None, id="golden-file-missing")]
    return [
        pytest.param(c, key, id=f"{c['name']}-{key}")
        for c in CASES
        if c["upstream_wrong"] == wrong
        for key in c["results"]
    ]


CASES = _cases()
RIGHT, WRONG = _case_params(False), _case_params(True)
RIGHT_COMBOS, WRONG_COMBOS = _combo_params(False), _combo_params(True)


def _require(item: object, golden_lyrics_dir: Path) -> None:
    if item is None:
        pytest.fail(f"golden lyrics file missing under {golden_lyrics_dir}")


# ---------------------------------------------------------------- per-line G2P


def _check_line(rec: dict) -> None:
    text = rec["text"]
    if "error" in rec:
        for fn in (g2p_phonemes, g2p_tokens):
            with pytest.raises(LyricsError):
                fn(text)
        return
    assert g2p_phonemes(text) == rec["phonemes"]
    assert g2p_tokens(text) == rec["tokens"]


@pytest.mark.parametrize("rec", _jsonl("english_lines.jsonl"))
def test_english_line(rec: dict | None, golden_lyrics_dir: Path) -> None:
    _require(rec, golden_lyrics_dir)
    _check_line(rec)


@pytest.mark.parametrize("rec", _jsonl("chinese_lines.jsonl"))
def test_chinese_line(rec: dict | None, golden_lyrics_dir: Path) -> None:
    _require(rec, golden_lyrics_dir)
    _check_line(rec)


# ---------------------------------------------------------------- placement oracle


def _reference_track(
    timed_tokens: list[tuple[float, list[int]]], max_frames: int, audio_length: float
) -> np.ndarray:
    """Upstream get_lrc_token placement, written out plainly (file order, no sorting)."""
    kept = [(t, toks) for t, toks in timed_tokens if t < audio_length]
    if max_frames == 2048:
        kept = kept[:-1]
    end = 2048 if max_frames == 2048 else int(audio_length * (44100 / 2048))
    end = min(end, max_frames)
    lrc = np.zeros(end, dtype=np.int64)
    last_end = 0
    for t, toks in kept:
        line = [1 if x == 2 else x for x in toks] + [2]
        start = max(int(t * 44100 / 2048), last_end)
        n = min(len(line), end - start)
        lrc[start : start + n] = line[:n]
        last_end = start + n
    return lrc[None]


def _stored(case: dict, key: str) -> dict:
    result = case["results"][key]
    if "file" not in result:
        return result
    with np.load(LYRICS / result["file"]) as npz:
        return {**result, **{k: npz[k] for k in npz.files}}


def _upstream_timed_tokens(case: dict) -> list[tuple[float, list[int]]]:
    return [
        (t, lt["tokens"])
        for (t, _), lt in zip(case["upstream_parse"], case["line_tokens"], strict=True)
    ]


def _assert_track(track, stored: dict) -> None:
    expected = stored["lrc"]
    assert tuple(track.tokens.shape) == expected.shape
    assert str(track.tokens.dtype) == "torch.int64"
    np.testing.assert_array_equal(track.tokens.numpy(), expected)
    assert track.end_frame == int(stored["end_frame"]) == stored["lrc_shape"][1]
    assert track.start_time == float(stored["start_time"][0])
    assert track.song_duration == float(stored["song_duration"][0]) == stored["song_duration"]


# ---------------------------------------------------------------- cases upstream gets right


@pytest.mark.parametrize(("case", "key"), RIGHT_COMBOS)
def test_reference_placement_reproduces_stored_tracks(case, key, golden_lyrics_dir) -> None:
    _require(case, golden_lyrics_dir)
    stored = _stored(case, key)
    if "error" in stored:
        assert any("error" in lt for lt in case["line_tokens"])
        return
    ref = _reference_track(
        _upstream_timed_tokens(case), stored["max_frames"], stored["audio_length"]
    )
    np.testing.assert_array_equal(ref, stored["lrc"])


@pytest.mark.parametrize("case", RIGHT)
def test_parse_matches_upstream(case, golden_lyrics_dir) -> None:
    _require(case, golden_lyrics_dir)
    got = [(line.start, line.text) for line in parse_lrc(case["text"])]
    assert got == [tuple(p) for p in case["upstream_parse"]]


@pytest.mark.parametrize(("case", "key"), RIGHT_COMBOS)
def test_place_tokens_on_upstream_parse(case, key, golden_lyrics_dir) -> None:
    _require(case, golden_lyrics_dir)
    stored = _stored(case, key)
    if "error" in stored:
        pytest.skip("upstream raised for this setting; covered by test_track_matches_stored")
    lines = [LyricLine(t, text, i + 1) for i, (t, text) in enumerate(case["upstream_parse"])]
    tokens = [lt["tokens"] for lt in case["line_tokens"]]
    track = place_tokens(
        lines, tokens, max_frames=stored["max_frames"], audio_length=stored["audio_length"]
    )
    _assert_track(track, stored)


@pytest.mark.parametrize(("case", "key"), RIGHT_COMBOS)
def test_track_matches_stored(case, key, golden_lyrics_dir) -> None:
    _require(case, golden_lyrics_dir)
    stored = _stored(case, key)
    mf, al = stored["max_frames"], stored["audio_length"]
    if "error" in stored:
        with pytest.raises((LyricsError, LrcError)):
            lrc_to_track(case["text"], max_frames=mf, audio_length=al)
        return
    track = lrc_to_track(case["text"], max_frames=mf, audio_length=al)
    _assert_track(track, stored)
    past_end = [text for t, text in case["upstream_parse"] if t >= al]
    assert [d.line.text for d in track.dropped if d.reason == "past song end"] == past_end
    kept = [text for t, text in case["upstream_parse"] if t < al]
    if mf == 2048 and kept:
        last = [d.line.text for d in track.dropped if "95 s" in d.reason]
        assert last == [kept[-1]]
        full = lrc_to_track(case["text"], max_frames=mf, audio_length=al, keep_last_line=True)
        assert not any("95 s" in d.reason for d in full.dropped)
        after_end = {d.line for d in full.dropped if d.reason == "starts after the last frame"}
        assert [p.line.text for p in full.placed] == [
            line.text
            for line in parse_lrc(case["text"])
            if line.start < al and line not in after_end
        ]


# ---------------------------------------------------------------- cases upstream gets wrong

_VALID_TAG = re.compile(r"\[[0-9]{1,2}:[0-5][0-9](\.[0-9]{1,3})?\]")
_OFFSET = re.compile(r"\[offset:\s*([-+]?[0-9]+)\s*\]", re.IGNORECASE)


def _lines(text: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", text.removeprefix("\ufeff"))


def _correct_parse(case: dict) -> tuple[str, list[LyricLine]]:
    """parse_lrc on the case text; each LrcError must name a line whose leading bracketed time
    is not a valid timestamp, and that line is removed before trying again."""
    lines = _lines(case["text"])
    for _ in range(len(lines) + 1):
        text = "\n".join(lines)
        try:
            return text, parse_lrc(text)
        except LrcError as exc:
            m = re.search(r"line (\d+)", str(exc))
            assert m, f"LrcError does not name the line: {exc}"
            bad = lines[int(m.group(1)) - 1].strip()
            assert bad.startswith("[") and not _VALID_TAG.match(bad), (bad, str(exc))
            assert "mm:ss" in str(exc)  # the hint
            del lines[int(m.group(1)) - 1]
    raise AssertionError("parse_lrc kept failing")


def _expected_parse(case: dict) -> list[tuple[float, str]]:
    if case.get("suggested_parse") is not None:
        return [tuple(p) for p in case["suggested_parse"]]
    m = _OFFSET.search(case["text"])
    shift = int(m.group(1)) / 1000 if m else 0.0
    parsed = [(max(0.0, t - shift), text) for t, text in case["upstream_parse"]]
    return sorted(parsed, key=lambda p: p[0])


def _golden_tokens() -> dict[str, list[int] | None]:
    """Lyric text → golden tokens (None where upstream raised), from every golden source."""
    table: dict[str, list[int] | None] = {}
    for name in ("english_lines.jsonl", "chinese_lines.jsonl"):
        for p in _jsonl(name):
            rec = p.values[0]
            if rec is not None:
                table[rec["text"]] = rec.get("tokens")
    for case in CASES or []:
        for (_, text), lt in zip(case["upstream_parse"], case["line_tokens"], strict=True):
            table[text] = lt.get("tokens")
    return table


@pytest.mark.parametrize("case", WRONG)
def test_wrong_case_parses_correctly(case, golden_lyrics_dir) -> None:
    _require(case, golden_lyrics_dir)
    text, got = _correct_parse(case)
    expected = _expected_parse(case)
    assert [line.text for line in got] == [text for _, text in expected]
    for line, (t, _) in zip(got, expected, strict=True):
        assert line.start == pytest.approx(t, abs=1e-9)
    file_lines = _lines(text)
    for line in got:  # line numbers point at the line holding the lyric
        assert file_lines[line.line - 1].strip().endswith(line.text)


@pytest.mark.parametrize(("case", "key"), WRONG_COMBOS)
def test_wrong_case_track(case, key, golden_lyrics_dir) -> None:
    _require(case, golden_lyrics_dir)
    result = case["results"][key]
    mf, al = result["max_frames"], result["audio_length"]
    text, lines = _correct_parse(case)
    golden = _golden_tokens()
    sung = [line for line in lines if line.text]
    failing = [line for line in sung if line.text in golden and golden[line.text] is None]
    if failing:
        with pytest.raises(LyricsError) as info:
            lrc_to_track(text, max_frames=mf, audio_length=al)
        assert f"line {failing[0].line} " in str(info.value)
        assert repr(failing[0].text) in str(info.value)
        return
    timed = [(line.start, golden.get(line.text) or g2p_tokens(line.text)) for line in sung]
    track = lrc_to_track(text, max_frames=mf, audio_length=al)
    np.testing.assert_array_equal(track.tokens.numpy(), _reference_track(timed, mf, al))
    end = 2048 if mf == 2048 else min(int(al * 44100 / 2048), mf)
    assert track.end_frame == end
    assert track.song_duration == float(np.float16(np.float32(end / mf)))
    assert track.start_time == 0.0
