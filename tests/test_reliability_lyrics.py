"""Lyrics are never lost silently (issue 14): file decoding, fullwidth timestamps, files without a
timed lyric, unsingable scripts, dropped lines as warnings and in the sidecar — through the real
CLI on the tiny model (tests/test_cli.py fixtures) where the defect was in the CLI."""

from __future__ import annotations

import json
import math

import pytest

from rhythmflow import errors
from rhythmflow.cli.main import main
from rhythmflow.errors import LrcError, LyricsError, UsageError
from rhythmflow.lyrics import check_lrc, decode_lrc, lrc_to_track, parse_lrc
from rhythmflow.lyrics.g2p import unsingable_letters
from tests.reliability_support import make_files
from tests.test_cli import LRC, base_args

FULL = {"max_frames": 6144, "audio_length": 285.0}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("lyrics-cli"))


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-16", "utf-8-sig", "utf-8"])
def test_decode_lrc_reads_utf16_with_or_without_bom(codec) -> None:
    text = "[00:01.00]Hello 你好\n[00:02.00]World\n"
    assert decode_lrc(text.encode(codec)) == text


def test_decode_lrc_refuses_binary() -> None:
    with pytest.raises(UsageError, match="not UTF-8 or UTF-16"):
        decode_lrc(b"\xff\xd8\xff\xe0 jpeg", "lyrics file x.lrc")


@pytest.mark.parametrize("stamp", ["[00：12.00]", "［００：１２．００］", "[00:12。00]", "[00：12]"])
def test_fullwidth_timestamps_are_read(stamp) -> None:
    (line,) = parse_lrc(f"{stamp}Hello：there")
    assert line.start == 12.0 and line.text == "Hello：there"  # the lyric itself is untouched


def test_lrc_to_track_infinite_length_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="audio_length"):
        lrc_to_track("[00:01.00]hi", max_frames=6144, audio_length=math.inf)


@pytest.mark.parametrize("text", ["Chorus:\nla la la\n", "[ti:Only tags]\n[ar:Someone]\n",
                                  "[00:10.00]\n[00:20.00]\n"])
def test_text_without_a_timed_lyric_is_refused(text) -> None:
    with pytest.raises(LrcError, match="no timed lyric line.*leave lrc empty"):
        check_lrc(text)
    assert check_lrc("  \n") == ([], [])  # an empty text is an instrumental


@pytest.mark.parametrize(("lyric", "script"), [
    ("日本語のうた", "hiragana"), ("Hello мир again", "cyrillic"), ("カタカナ song", "katakana"),
    ("사랑 love", "hangul")])
def test_unsingable_scripts_are_refused_with_the_line(lyric, script) -> None:
    with pytest.raises(LyricsError, match=f"LRC line 2 .*{script}.*Latin letters"):
        lrc_to_track(f"[00:01.00]Hello\n[00:02.00]{lyric}\n", **FULL)


def test_accented_latin_and_chinese_stay_singable() -> None:
    assert unsingable_letters("Café naïve 你好 ＡＢＣ 123 !") == {}


def test_untimed_lines_are_dropped_and_listed_but_section_headers_are_not() -> None:
    track = lrc_to_track("[00:01.00]Hello\nforgot my stamp\n[Verse 2]\n【副歌】\n[00:03.00]Bye",
                         **FULL)
    assert [(d.line.line, d.line.text, d.reason) for d in track.dropped] == [
        (2, "forgot my stamp", "no timestamp")]  # run() reports each as a warning event


def _with_lrc(files, out, data: bytes, *extra):
    lrc = out.parent / "lyrics.lrc"
    lrc.write_bytes(data)
    args = base_args(files, out, "--progress", "none", *extra)
    args[args.index("--lrc") + 1] = str(lrc)
    return args


@pytest.mark.parametrize("encode", [lambda t: t.encode("utf-16-le"),
                                    lambda t: t.replace(":", "：", 1).encode("utf-8")],
                         ids=["utf16-no-bom", "fullwidth-colon"])
def test_cli_sings_utf16_and_fullwidth_lyrics(files, tmp_path, encode) -> None:
    out = tmp_path / "s.wav"
    assert main(_with_lrc(files, out, encode(LRC))) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["lyrics"]["placed"] == 2  # three lines, the 95 s model drops the last


def test_cli_refuses_a_file_without_timed_lyrics(files, tmp_path, capsys) -> None:
    out = tmp_path / "s.wav"
    assert main(_with_lrc(files, out, b"just some words\nno timestamps\n")) == errors.EXIT_USAGE
    assert "leave lrc empty" in capsys.readouterr().err
    assert not list(tmp_path.glob("s*"))


def test_cli_refuses_unsingable_line_before_loading(files, tmp_path, capsys) -> None:
    out = tmp_path / "s.wav"
    data = "[00:01.00]Hello\n[00:02.00]君の名はかな\n".encode()
    assert main(_with_lrc(files, out, data)) == errors.EXIT_USAGE
    err = capsys.readouterr().err
    assert "LRC line 2" in err and "hiragana" in err and "load" not in err
    assert not list(tmp_path.glob("s*"))


def test_cli_dropped_lines_warn_by_default_and_are_in_the_sidecar(files, tmp_path, capsys):
    out = tmp_path / "s.wav"
    data = (LRC + "a line without its time\n[02:00.00]after the end\n").encode()
    assert main(_with_lrc(files, out, data)) == 0
    err = capsys.readouterr().err
    assert "LRC line 4 ('a line without its time') not sung: no timestamp" in err
    assert "LRC line 5 ('after the end') not sung: past song end" in err
    dropped = json.loads(out.with_suffix(".json").read_text())["lyrics"]["dropped"]
    assert [(d["line"], d["reason"]) for d in dropped] == [
        (3, "last line dropped (95 s model rule)"), (4, "no timestamp"), (5, "past song end")]
    assert main(_with_lrc(files, out, data, "-q")) == 0  # -q alone hides them
    assert "not sung" not in capsys.readouterr().err
