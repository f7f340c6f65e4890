"""Chinese G2P (rhythmflow.lyrics.g2p.chinese) against DiffRhythm's golden lines and rules.

The golden lines are discovered from ``chinese_lines.jsonl``; a small local segmenter (the same
rule as upstream's ``get_segment``) finds the Chinese-only lines and the ``zh`` segments of
mixed lines, so these tests do not depend on the English/assembly module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rhythmflow import assets
from rhythmflow.errors import AssetError, DependencyError, LyricsError
from rhythmflow.lyrics.g2p.chinese import polyphone, prepare, zh_phonemes
from rhythmflow.lyrics.g2p.chinese._deps import require
from rhythmflow.lyrics.g2p.chinese.bopomofo import bopomofo_to_ipa, finalize
from rhythmflow.lyrics.g2p.chinese.lexicon import load_lexicon
from rhythmflow.lyrics.g2p.chinese.normalize import normalize, numbers_to_chinese
from rhythmflow.lyrics.g2p.chinese.sandhi import (
    bu_sandhi,
    change_tone,
    er_sandhi,
    third_tone_sandhi,
    yi_sandhi,
)
from rhythmflow.lyrics.g2p.chinese.segment import merge_bu, merge_er, merge_yi
from rhythmflow.lyrics.g2p.chinese.words import word_bopomofo

# --------------------------------------------------------------------------- harness


def _kind(char: str) -> str:
    if "\u4e00" <= char <= "\u9fa5":
        return "zh"
    if "A" <= char <= "Z" or "a" <= char <= "z":
        return "en"
    return "other"


def _segments(text: str) -> list[tuple[str, str]]:
    """Upstream's segmentation: "other" chars join the current segment; en/zh switches split."""
    segments: list[tuple[str, str]] = []
    current, lang = "", ""
    for i, char in enumerate(text):
        kind = _kind(char)
        if i == 0 or lang == "other":
            current, lang = current + char, kind
        elif kind in (lang, "other"):
            current += char
        else:
            segments.append((current, lang))
            current, lang = char, kind
    segments.append((current, lang))
    return segments


def test_harness_segments_like_upstream():
    assert _segments("你好，hello world") == [("你好，", "zh"), ("hello world", "en")]
    assert _segments(" 1你a好") == [(" 1你", "zh"), ("a", "en"), ("好", "zh")]
    assert _segments("成都 带不走的") == [("成都 带不走的", "zh")]


@pytest.fixture(scope="module")
def golden_lines(golden_lyrics_dir: Path) -> list[dict]:
    path = golden_lyrics_dir / "chinese_lines.jsonl"
    if not path.is_file():
        pytest.fail(f"golden file {path} is missing")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    assert lines, f"{path} holds no lines"
    return lines


@pytest.fixture(scope="module")
def chinese_only(golden_lines: list[dict]) -> list[dict]:
    found = [
        d for d in golden_lines if "error" not in d and _segments(d["text"]) == [(d["text"], "zh")]
    ]
    assert found, "the golden set has no Chinese-only line"
    return found


@pytest.fixture(scope="module")
def vocab() -> dict[str, int]:
    with open(assets.resolve("g2p-vocab"), encoding="utf-8") as fp:
        return json.load(fp)["vocab"]


# --------------------------------------------------------------------------- golden lines


def test_golden_chinese_only_lines_match_exactly(chinese_only, vocab):
    mismatches = []
    for line in chinese_only:
        phonemes = zh_phonemes(line["text"]) + "|"
        tokens = [vocab[p] + 1 for p in phonemes.split("|") if p in vocab]
        if phonemes != line["phonemes"] or tokens != line["tokens"]:
            mismatches.append((line["source"], line["text"], phonemes, line["phonemes"]))
    assert not mismatches, f"{len(mismatches)}/{len(chinese_only)} lines differ: {mismatches[:5]}"


def test_golden_mixed_lines_first_and_last_chinese_segments(golden_lines):
    checked = 0
    for line in golden_lines:
        segments = _segments(line["text"])
        if "error" in line or len(segments) < 2:
            continue
        if segments[0][1] == "zh":
            assert line["phonemes"].startswith(zh_phonemes(segments[0][0]) + "|"), line
            checked += 1
        if segments[-1][1] == "zh":
            assert line["phonemes"].endswith("|" + zh_phonemes(segments[-1][0]) + "|"), line
            checked += 1
    has_mixed_zh = any(
        "error" not in d
        and len(_segments(d["text"])) > 1
        and "zh" in dict(_segments(d["text"])).values()
        for d in golden_lines
    )
    assert checked or not has_mixed_zh


def _recording_predictor(calls: list[tuple[str, int]]):
    def spy(text: str, index: int) -> polyphone.PolyphonePrediction:
        calls.append((text, index))
        return polyphone.predict(text, index)

    return spy


def test_polyphone_calls_follow_golden_trace(chinese_only):
    for line in chinese_only:
        calls: list[tuple[str, int]] = []
        zh_phonemes(line["text"], predict=_recording_predictor(calls))
        expected = [(p["segment_text"], p["index"]) for p in line["polyphone_predictions"]]
        assert calls == expected, line["text"]


def test_polyphone_predictions_match_golden(golden_lines):
    predictions = [p for line in golden_lines for p in line.get("polyphone_predictions", [])]
    assert predictions
    for p in predictions:
        assert p["segment_text"][p["index"]] == p["char"]
        got = polyphone.predict(p["segment_text"], p["index"])
        assert got.label == p["prediction"], p
        assert got.margin == pytest.approx(p["logit_margin"], abs=0.02), p
        assert got.pinyin == p["prediction"][2:-1]


def test_prepare_gives_the_golden_segment_text(chinese_only):
    for line in chinese_only:
        for p in line["polyphone_predictions"]:
            assert prepare(line["text"]) == p["segment_text"]


# --------------------------------------------------------------------------- normalisation


def test_numbers_are_read_by_cn2an():
    assert numbers_to_chinese("12") == "十二"
    assert numbers_to_chinese("3.5") == "三点五"
    assert numbers_to_chinese("50%") == "百分之五十"
    assert numbers_to_chinese("我有3个苹果和2024年的梦") == "我有三个苹果和二零二四年的梦"


def test_normalize_punctuation_whitespace_and_foreign_characters():
    assert normalize("你好， world！\u3000再见。。。") == "你好,!再见…"
    assert normalize("‘好’、对：是；吗？") == "'好',对:是;吗?"
    assert normalize("啊···哦⋯嗯...") == "啊…哦…嗯…"
    assert normalize("日本語のテキスト 123 é") == "日本語"


# --------------------------------------------------------------------------- segmentation


def test_merges():
    assert merge_bu(["我", "不", "要"]) == ["我", "不要"]
    assert merge_bu(["我", "不"]) == ["我"]  # upstream drops a trailing 不
    assert merge_bu(["不", "不", "好"]) == ["不好"]
    assert merge_er(["花", "儿"]) == ["花儿"]
    assert merge_er(["儿", "子"]) == ["儿", "子"]
    assert merge_yi(["看", "一", "看"]) == ["看一看"]
    assert merge_yi(["一", "天"]) == ["一天"]
    assert merge_yi(["一", "一", "一"]) == ["一一一"]
    # upstream indexes its merged list with the input position: the second A一A breaks up
    assert merge_yi(["走", "一", "走", "看", "一", "看"]) == ["走一走", "看", "一看"]


# --------------------------------------------------------------------------- sandhi


def test_change_tone():
    assert change_tone("ㄏㄠˇ", "ˊ") == "ㄏㄠˊ"
    assert change_tone("ㄊㄧㄢ", "ˋ") == "ㄊㄧㄢˋ"
    assert change_tone("ㄧˋ", "") == "ㄧ"


def test_third_tone_sandhi():
    assert third_tone_sandhi("你好", ["ㄋㄧˇ", "ㄏㄠˇ"]) == ["ㄋㄧˊ", "ㄏㄠˇ"]
    assert third_tone_sandhi("你们", ["ㄋㄧˇ", "ㄇㄣ˙"]) == ["ㄋㄧˇ", "ㄇㄣ˙"]
    # three third tones: upstream appends ˊ instead of replacing ˇ
    assert third_tone_sandhi("我也想", ["ㄨㄛˇ", "ㄧㄝˇ", "ㄒㄧㄤˇ"]) == [
        "ㄨㄛˇˊ",
        "ㄧㄝˇˊ",
        "ㄒㄧㄤˇ",
    ]


def test_third_tone_quirk_end_to_end():
    lexicon = load_lexicon()
    assert lexicon.words["主宰者"] == "zhu3 zai3 zhe3"
    assert zh_phonemes("主宰者") == "ts`⁼|u↓↑|↑|ts⁼|aɪ↓↑|↑|ts`⁼|ə↓↑"


def test_bu_sandhi():
    assert bu_sandhi("不要", ["ㄅㄨˋ", "ㄧㄠˋ"]) == ["ㄅㄨˊ", "ㄧㄠˋ"]
    assert bu_sandhi("不好", ["ㄅㄨˋ", "ㄏㄠˇ"]) == ["ㄅㄨˋ", "ㄏㄠˇ"]
    assert bu_sandhi("好不好", ["ㄏㄠˇ", "ㄅㄨˋ", "ㄏㄠˇ"]) == ["ㄏㄠˇ", "ㄅㄨ˙", "ㄏㄠˇ"]
    assert bu_sandhi("是不是", ["ㄕˋ", "ㄅㄨˋ", "ㄕˋ"]) == ["ㄕˋ", "ㄅㄨ˙", "ㄕˋ"]
    assert bu_sandhi("不不", ["ㄅㄨˋ", "ㄅㄨˋ"]) == ["ㄅㄨˋ", "ㄅㄨˋ"]


def test_yi_sandhi():
    assert yi_sandhi("一样", ["ㄧ", "ㄧㄤˋ"]) == ["ㄧˊ", "ㄧㄤˋ"]
    assert yi_sandhi("一天", ["ㄧ", "ㄊㄧㄢ"]) == ["ㄧˋ", "ㄊㄧㄢ"]
    assert yi_sandhi("一,", ["ㄧ", ","]) == ["ㄧ", ","]
    assert yi_sandhi("看一看", ["ㄎㄢˋ", "ㄧ", "ㄎㄢˋ"]) == ["ㄎㄢˋ", "ㄧ˙", "ㄎㄢˋ"]
    assert yi_sandhi("第一", ["ㄉㄧˋ", "ㄧˋ"]) == ["ㄉㄧˋ", "ㄧ"]
    assert yi_sandhi("一月", ["ㄧˊ", "ㄩㄝˋ"]) == ["ㄧ", "ㄩㄝˋ"]
    # inside numbers
    assert yi_sandhi("十一", ["ㄕˊ", "ㄧ"]) == ["ㄕˊ", "ㄧ"]
    assert yi_sandhi("一百", ["ㄧ", "ㄅㄞˇ"]) == ["ㄧˋ", "ㄅㄞˇ"]
    assert yi_sandhi("一万", ["ㄧ", "ㄨㄢˋ"]) == ["ㄧˊ", "ㄨㄢˋ"]
    assert yi_sandhi("一二", ["ㄧˋ", "ㄦˋ"]) == ["ㄧ", "ㄦˋ"]


def test_er_sandhi():
    assert er_sandhi("花儿", ["ㄏㄨㄚ", "ㄦˊ"]) == ["ㄏㄨㄚ", "ㄦ˙"]
    assert er_sandhi("女儿", ["ㄋㄩˇ", "ㄦˊ"]) == ["ㄋㄩˇ", "ㄦˊ"]
    assert er_sandhi("儿", ["ㄦˊ"]) == ["ㄦˊ"]


# --------------------------------------------------------------------------- bopomofo → IPA


@pytest.mark.parametrize(
    ("bopomofo", "ipa"),
    [
        ("ㄋㄧˇ|ㄏㄠˇ", "n|i↓↑|x|ɑʊ↓↑"),
        ("ㄓˋ", "ts`⁼ɹ↓"),
        ("ㄕˉ", "s`ɹ→"),
        ("ㄖˋ", "ɹ`ɹ↓"),
        ("ㄙˉ", "sɹ→"),
        ("ㄗˋ", "ts⁼ɹ↓"),
        ("ㄘˊ", "tsʰɹ↑"),
        ("ㄉㄜ˙", "t⁼|ə"),
        ("ㄅㄛˊ", "p⁼wo↑"),
        ("ㄩㄢˊ", "ɥæn↑"),
        ("ㄒㄩㄥˊ", "ʃ|jʊŋ↑"),
        ("ㄦˋ", "əɹ↓"),
        ("ㄋㄧˇ|,|ㄏㄠˇ", "n|i↓↑|,|x|ɑʊ↓↑"),
        ("|,|ㄋㄧˇ", "|,|n|i↓↑"),  # only one leading "|" is removed, as upstream
        ("ㄨㄛˇ|丄", "uo↓↑|丄"),
    ],
)
def test_bopomofo_to_ipa(bopomofo, ipa):
    assert finalize(bopomofo_to_ipa(bopomofo)) == ipa


# --------------------------------------------------------------------------- lexicon


def _no_polyphone(text: str, index: int):
    raise AssertionError(f"unexpected polyphone call for {text!r}[{index}]")


def test_lexicon_word_reading_is_used():
    lexicon = load_lexicon()
    assert lexicon.words["可以"] == "ke2 yi3"
    assert word_bopomofo("可以", "可以", 0, lexicon, _no_polyphone) == ["ㄎㄜˊ", "ㄧˇ"]
    assert zh_phonemes("可以") == "kʰ|ə↑|i↓↑"


def test_characters_without_reading_stay_raw_and_have_no_token(vocab):
    lexicon = load_lexicon()
    raw = next(
        chr(c)
        for c in range(0x4E00, 0x9FA6)
        if chr(c) not in lexicon.words and chr(c) not in lexicon.polychars
    )
    phones = zh_phonemes("我" + raw).split("|")
    assert raw in phones
    assert raw not in vocab
    assert [p for p in phones if p != raw] == zh_phonemes("我").split("|")


@pytest.mark.parametrize("word", ["第六个空", "第六空"])
def test_unmappable_lexicon_syllable_falls_back_to_pypinyin(word):
    pypinyin = require("pypinyin")
    lexicon = load_lexicon()
    reading = lexicon.words[word].split(" ")
    assert "liu6" in reading
    whole_word = pypinyin.lazy_pinyin(word, style=pypinyin.Style.BOPOMOFO)
    expected: list[str] = []
    for syllable in reading:
        mapped = lexicon.syllable_bopomofo(syllable)
        expected += whole_word if mapped is None else [mapped]
    assert len(expected) == len(reading) - 1 + len(word)
    assert word_bopomofo(word, word, 0, lexicon, _no_polyphone) == expected


# --------------------------------------------------------------------------- polyphone edges


def test_polyphone_rejects_bad_index_and_overlong_text():
    with pytest.raises(LyricsError):
        polyphone.predict("了", 1)
    with pytest.raises(LyricsError, match="too long"):
        polyphone.predict("的" * 600, 0)


# --------------------------------------------------------------------------- failures, import


def test_missing_dependency_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)
    with pytest.raises(DependencyError, match=r"rhythmflow\[chinese\]"):
        require("jieba")


def test_missing_asset_raises_asset_error(monkeypatch, tmp_path):
    monkeypatch.setenv("RHYTHMFLOW_ASSETS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AssetError):
        load_lexicon()
    with pytest.raises(AssetError):
        polyphone.predict("还有没有", 0)


@pytest.mark.slow
def test_import_is_cheap():
    code = (
        "import sys, rhythmflow.lyrics.g2p.chinese\n"
        "print(sorted(m for m in ('jieba', 'cn2an', 'pypinyin', 'onnxruntime') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
