"""G2P front-end: segmentation, English normalisation steps, assembly, caching, errors."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rhythmflow.lyrics.g2p as g2p
from rhythmflow.errors import DependencyError, LyricsError, UsageError
from rhythmflow.lyrics import g2p_phonemes, g2p_tokens
from rhythmflow.lyrics.g2p import english
from rhythmflow.lyrics.g2p.english_text import expand_abbreviations, expand_numbers


def _words(text: str) -> list[str]:
    return text.split()


# ---------------------------------------------------------------- segmentation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你好，hello world", [("你好，", "zh"), ("hello world", "en")]),
        ("Hi, 你好 there!", [("Hi, ", "en"), ("你好 ", "zh"), ("there!", "en")]),
        ("  12 hi你", [("  12 hi", "en"), ("你", "zh")]),
        ("a1b", [("a1b", "en")]),
        ("Café", [("Café", "en")]),
        ("éé", [("éé", "other")]),
        ("，。！？", [("，。！？", "other")]),
        ("123", [("123", "other")]),
        ("", [("", "")]),
    ],
)
def test_segments(text: str, expected: list[tuple[str, str]]) -> None:
    assert g2p.segments(text) == expected


@pytest.mark.parametrize(
    ("ch", "lang"),
    [
        ("一", "zh"),
        ("\u9fa5", "zh"),
        ("\u9fa6", "other"),
        ("\u4dff", "other"),
        ("A", "en"),
        ("z", "en"),
        ("é", "other"),
        ("Ａ", "other"),
        ("3", "other"),
        ("，", "other"),
    ],
)
def test_char_language(ch: str, lang: str) -> None:
    assert g2p.char_language(ch) == lang


# ---------------------------------------------------------------- English text steps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Jones met Mr. Smith", "doctor. Jones met mister. Smith"),
        ("St. Mark's road", "saint. Mark's road"),
        ("gen z", "general z"),
        ("Co-op", "company-op"),
        ("Mrs. Robinson, etc.", "misess. Robinson, et cetera."),
        ("BTW drs rev", "by the way doctors reverend"),
        ("strong Street", "strong Street"),
    ],
)
def test_abbreviations(text: str, expected: str) -> None:
    assert expand_abbreviations(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1999", "nineteen ninety-nine"),
        ("1250", "twelve fifty"),
        ("2024", "twenty twenty-four"),
        ("2000", "two thousand"),
        ("2005", "two thousand five"),
        ("1900", "nineteen hundred"),
        ("2500", "twenty-five hundred"),
        ("1000", "one thousand"),
        ("007", "seven"),
        ("101st", "one hundred and first"),
        ("3rd", "third"),
        ("1/2", "one half"),
        ("3/4", "three quarters"),
        ("24/7", "twenty-four seventh"),
        ("3.14", "three point fourteen"),
        ("42%", "forty-two percent"),
        ("$5.50", "five dollars, fifty cents"),
        ("$1", "one dollar"),
        ("$0.99", "ninety-nine cents"),
        ("£20", "twenty pounds"),
        ("2,500", "twenty-five hundred"),
        ("1234567", "one million, two hundred thirty-four thousand, five hundred sixty-seven"),
        ("no digits here", "no digits here"),
    ],
)
def test_numbers(text: str, expected: str) -> None:
    assert _words(expand_numbers(text)) == _words(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Twenty-one guns—fire", "Twentyone gunsfire"),
        ("fade — the", "fade the"),
        ("Hello，world。Are you there！", "Hello,world.Are you there!"),
        ("Wait；listen：one、two", "Wait;listen:one,two"),
        ("a ... b", "a…b"),
        ('(Hold me) "close"', "Hold me close"),
        ("  Café  naïve  ", "Café naïve"),
        ("Dancing 💃 in", "Dancing in"),
        ("don ' t", "don't"),
    ],
)
def test_clean_punctuation(text: str, expected: str) -> None:
    assert english.clean_punctuation(text) == expected


@pytest.mark.parametrize(
    ("phones", "expected"),
    [
        ("t|ɹ|iː", "tɹ|iː"),
        ("aɪt|ɹ", "aɪt|ɹ"),  # whole phones only
        ("t|s|t|s", "ts|ts"),  # repeated until nothing changes
        ("b|ɐ|_|ᵻ", "b|ɚ|_|ɪ"),
        ("oː|ɹ|_|x", "oːɹ|_|k"),
        ("d|ɹ|d|z|ɪ|ɹ", "dɹ|dz|ɪɹ"),
    ],
)
def test_special_map(phones: str, expected: str) -> None:
    assert english.special_map(phones) == expected


# ---------------------------------------------------------------- assembly and tokens


def test_tokens_are_vocab_ids_plus_one_of_the_phonemes() -> None:
    table = g2p.vocab()
    for text in ["Don't stop, believing!", "Pay $5.50 on 3/4", "line one\nline two"]:
        phones = g2p_phonemes(text)
        assert g2p_tokens(text) == [table[p] + 1 for p in phones.split("|") if p in table]


def test_english_output_ends_with_a_single_bar_and_no_word_break() -> None:
    for text in ["Hello", "Hello world", "Hello world!", "one two three 4"]:
        phones = g2p_phonemes(text)
        assert phones.endswith("|") and not phones.endswith("||")
        assert not phones.endswith("_|")
    assert g2p_tokens("Hello world.")[-1] == 2  # the period token


def test_results_are_cached_per_line() -> None:
    g2p.clear_cache()
    first = g2p_tokens("A line that repeats in the chorus")
    first.append(-1)  # callers get their own list
    second = g2p_tokens("A line that repeats in the chorus")
    assert second[-1] != -1
    assert g2p._g2p.cache_info().hits == 1


class _FakeChinese(types.ModuleType):
    def __init__(self, result: str | Exception) -> None:
        super().__init__("rhythmflow.lyrics.g2p.chinese")
        self.result = result
        self.calls: list[str] = []

    def zh_phonemes(self, text: str, **kw) -> str:
        self.calls.append(text)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@pytest.fixture
def fake_chinese(monkeypatch: pytest.MonkeyPatch):
    def install(result: str | Exception) -> _FakeChinese:
        module = _FakeChinese(result)
        monkeypatch.setitem(sys.modules, "rhythmflow.lyrics.g2p.chinese", module)
        return module

    g2p.clear_cache()
    yield install
    g2p.clear_cache()


def test_mixed_line_assembly(fake_chinese) -> None:
    zh = fake_chinese("n|i↑|x|ɑʊ↓↑|,")
    assert g2p_phonemes("你好，hello world") == "n|i↑|x|ɑʊ↓↑|,|h|ə|l|oʊ|_|w|ɜː|l|d|"
    assert zh.calls == ["你好，"]
    # the final English word break is only removed when English comes last
    assert g2p_phonemes("hello 你好") == "h|ə|l|oʊ|_|n|i↑|x|ɑʊ↓↑|,|"
    table = g2p.vocab()
    assert g2p_tokens("hello 你好") == [table[p] + 1 for p in "h|ə|l|oʊ|_|n|i↑|x|ɑʊ↓↑|,".split("|")]


def test_chinese_failure_is_a_lyrics_error(fake_chinese) -> None:
    fake_chinese(KeyError("boom"))
    with pytest.raises(LyricsError) as info:
        g2p_tokens("hello 你好")
    assert "zh part '你好'" in str(info.value)
    assert "KeyError" in str(info.value)


def test_missing_chinese_packages_is_a_dependency_error(fake_chinese) -> None:
    fake_chinese(ModuleNotFoundError("No module named 'jieba'"))
    with pytest.raises(DependencyError, match=r"pip install 'rhythmflow\[chinese\]'"):
        g2p_tokens("hello 你好")


@pytest.mark.slow
def test_english_only_line_never_loads_chinese_resources() -> None:
    code = (
        "import sys; from rhythmflow.lyrics import g2p_tokens, parse_lrc;"
        "[g2p_tokens(x.text) for x in parse_lrc('[00:01.00]Hello there, friends\\n[00:03.00]Go')];"
        "bad = [m for m in ('rhythmflow.lyrics.g2p.chinese', 'jieba', 'onnxruntime', 'cn2an',"
        " 'pypinyin', 'torch', 'inflect') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty lyric text"),
        ("1 2 3 4", "has no English or Chinese letters"),
        ("8675309", "write numbers and symbols as words"),
        ("!!! ... ???", "has no English or Chinese letters"),
        ("，。！？", "has no English or Chinese letters"),
        ("éàü", "has no English or Chinese letters"),
        ("   ", "only whitespace"),
        ("\t\n", "instrumental"),
    ],
)
def test_unsingable_text_errors(text: str, fragment: str) -> None:
    for fn in (g2p_tokens, g2p_phonemes):
        with pytest.raises(LyricsError) as info:
            fn(text)
        assert fragment in str(info.value)
        assert isinstance(info.value, UsageError)


def test_unspellable_number_is_a_lyrics_error() -> None:
    with pytest.raises(LyricsError, match="cannot convert the en part"):
        g2p_tokens("count to " + "9" * 60)


def test_non_text_is_a_lyrics_error() -> None:
    with pytest.raises(LyricsError, match="must be text"):
        g2p_tokens(42)  # type: ignore[arg-type]


@pytest.fixture
def fresh_backend():
    english.espeak_backend.cache_clear()
    g2p.clear_cache()
    yield
    english.espeak_backend.cache_clear()
    g2p.clear_cache()


def test_missing_espeak_is_a_dependency_error(fresh_backend, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("RHYTHMFLOW_ESPEAK", raising=False)  # =bundled ignores the setting below
    monkeypatch.setenv("PHONEMIZER_ESPEAK_LIBRARY", str(tmp_path / "libespeak-ng.so.1"))
    with pytest.raises(DependencyError) as info:
        g2p_tokens("hello espeak")
    assert "espeak-ng" in str(info.value)
    assert "apt-get install espeak-ng" in str(info.value)


def test_missing_phonemizer_is_a_dependency_error(fresh_backend, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "phonemizer.backend", None)
    with pytest.raises(DependencyError, match=r"pip install phonemizer"):
        g2p_tokens("hello phonemizer")


def test_espeak_backend_is_created_once(fresh_backend, monkeypatch) -> None:
    import phonemizer.backend

    created = []
    real = phonemizer.backend.EspeakBackend

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            created.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(phonemizer.backend, "EspeakBackend", Counting)
    for text in ["first line", "second line", "third line, different"]:
        g2p_tokens(text)
    assert created == [("en-us",)]
    assert english.espeak_version()[:2] == (1, 51)


# ---------------------------------------------------------------- property-based

_NOT_HANZI = st.characters(
    exclude_categories=("Cs",), exclude_characters=[chr(c) for c in range(0x4E00, 0x9FA6)]
)
_LYRIC_CHARS = st.sampled_from(
    list("abcXYZ '’-—.,!?;:…$£%/0123456789\n\t\u00a0éß😀()\"#&") + ["Mr.", "St", "1st", "3/4"]
)


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        st.text(alphabet=_NOT_HANZI, max_size=30),
        st.lists(_LYRIC_CHARS, max_size=25).map("".join),
    )
)
def test_arbitrary_english_text_only_raises_lyrics_error(text: str) -> None:
    try:
        tokens = g2p_tokens(text)
    except LyricsError:
        return
    n_vocab = len(g2p.vocab())
    assert all(1 <= t <= n_vocab for t in tokens)
    assert not g2p_phonemes(text).endswith("_|")


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.sampled_from(list("我你好爱的一不儿了 ab,。！3") + ["\u4e00", "\u9fa5"]), max_size=12
    )
)
def test_arbitrary_mixed_text_only_raises_lyrics_error(chars: list[str]) -> None:
    text = "".join(chars)
    try:
        tokens = g2p_tokens(text)
    except LyricsError:
        return
    assert all(1 <= t <= len(g2p.vocab()) for t in tokens)
