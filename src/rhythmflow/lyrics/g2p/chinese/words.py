"""Normalised Chinese text → "|"-joined bopomofo syllables, word by word.

A jieba word found in the lexicon (and not a single polyphonic character) takes the lexicon
reading. Otherwise each character is read alone: a polyphonic character by the BERT model, any
other by its single-character lexicon entry, and a character with neither is kept as the raw
hanzi (it later has no vocab id and drops out of the tokens).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rhythmflow.errors import AssetError
from rhythmflow.lyrics.g2p.chinese import polyphone
from rhythmflow.lyrics.g2p.chinese.lexicon import Lexicon, load_lexicon, pypinyin_bopomofo
from rhythmflow.lyrics.g2p.chinese.sandhi import apply_sandhi
from rhythmflow.lyrics.g2p.chinese.segment import segment
from rhythmflow.lyrics.resources import DEFAULT_ASSETS, LyricsAssets

Predictor = Callable[[str, int], polyphone.PolyphonePrediction]

_HAN = re.compile(r"[\u4e00-\u9fff]")
_ENDS_IN_BOPOMOFO = re.compile(r"([\u3105-\u3129])$")


def _syllable(lexicon: Lexicon, pinyin: str, what: str) -> str:
    bopomofo = lexicon.syllable_bopomofo(pinyin)
    if bopomofo is None:
        raise AssetError(
            f"the pinyin {pinyin!r} of {what} has no entry in pinyin_2_bpmf.txt; the Chinese "
            f"resources do not match — fetch them again"
        )
    return bopomofo


def word_bopomofo(
    word: str, context: str, start: int, lexicon: Lexicon, predict: Predictor
) -> list[str]:
    """Bopomofo syllables (before sandhi) of ``word``, which starts at ``context[start]``.

    A lexicon syllable that has no bopomofo (only "liu6", in 第六个空 and 第六空) is replaced
    by pypinyin's reading of the *whole* word, as upstream does.
    """
    if word in lexicon.words and word not in lexicon.polychars:
        syllables: list[str] = []
        for pinyin in lexicon.words[word].split(" "):
            bopomofo = lexicon.syllable_bopomofo(pinyin)
            if bopomofo is None:
                syllables += pypinyin_bopomofo(word)
            else:
                syllables.append(bopomofo)
        return syllables
    syllables = []
    for i, char in enumerate(word):
        if char in lexicon.polychars:
            pinyin = predict(context, start + i).pinyin
            syllables.append(_syllable(lexicon, pinyin, f"polyphone {char!r}"))
        elif char in lexicon.words:
            syllables.append(_syllable(lexicon, lexicon.words[char], repr(char)))
        else:
            syllables.append(char)
    return syllables


def text_to_bopomofo(text: str, predict: Predictor | None = None,
                     assets: LyricsAssets = DEFAULT_ASSETS) -> str:
    """Bopomofo of a normalised segment: syllables joined by "|", punctuation words as "|,".

    Tone 1 gets an explicit "ˉ" mark. ``predict`` defaults to the BERT polyphone model; it is
    called with (``text``, character index) for every polyphonic character read alone.
    """
    predict = polyphone.predictor(assets) if predict is None else predict
    lexicon = load_lexicon(assets)
    out = ""
    start = 0
    for word in segment(text):
        syllables = word_bopomofo(word, text, start, lexicon, predict)
        start += len(word)
        syllables = apply_sandhi(word, syllables)
        if not _HAN.search(word):
            out += "|" + word
            continue
        if out:
            out += "|"
        out += "|".join(_ENDS_IN_BOPOMOFO.sub(r"\1ˉ", s) for s in syllables)
    return out
