"""Sung units of a lyric line: English syllables + Chinese characters.

English syllables are counted from the phonemes our G2P produces for each English segment of
the line (:func:`rhythmflow.lyrics.g2p.g2p_phonemes`): one per phone holding a vowel, two for the
triphthongs ``aɪɚ aɪə aʊə aʊɚ`` ("fire", "power"), and one for a syllabic ``l``/``n``/``m`` that
follows a consonant and is not followed by a vowel ("little", "button", "bottles"; not "film").
Every Chinese character (U+4E00..U+9FA5, the range the G2P sings) is one unit.
"""

from __future__ import annotations

from rhythmflow.lyrics.resources import DEFAULT_ASSETS, LyricsAssets

_VOWELS = frozenset("aeiouæɑɒɔəɚɛɜɝɪʊʌɐᵻyø")
_TRIPHTHONGS = frozenset({"aɪɚ", "aɪə", "aʊə", "aʊɚ"})
_SONORANTS = frozenset({"l", "n", "m"})
_NOT_BEFORE_SYLLABIC = frozenset({"l", "ɹ", "n", "m", "ŋ", "j", "w", "r"})


def _has_vowel(phone: str) -> bool:
    return any(ch in _VOWELS for ch in phone)


def english_syllables(phonemes: str) -> int:
    """Syllables in a ``|``-separated phone string (``_`` = word break); see the module
    docstring."""
    phones = [p for p in phonemes.split("|") if p]
    count = 0
    for i, phone in enumerate(phones):
        if _has_vowel(phone):
            count += 2 if phone in _TRIPHTHONGS else 1
        elif phone in _SONORANTS and i > 0:  # syllabic after a consonant: "little", "button"
            before, after = phones[i - 1], phones[i + 1] if i + 1 < len(phones) else "_"
            consonant = (
                before[0].isalpha()
                and not _has_vowel(before)
                and (before not in _NOT_BEFORE_SYLLABIC)
            )
            count += consonant and not _has_vowel(after)
    return count


def sung_units(text: str, *, assets: LyricsAssets = DEFAULT_ASSETS) -> tuple[int, int]:
    """``(english_syllables, chinese_characters)`` of one lyric line (G2P errors propagate)."""
    from rhythmflow.lyrics.g2p import EN, ZH, char_language, g2p_phonemes, segments

    en = zh = 0
    for segment, lang in segments(text):
        if lang == EN:
            en += english_syllables(g2p_phonemes(segment, assets=assets))
        elif lang == ZH:
            zh += sum(char_language(ch) == ZH for ch in segment)
    return en, zh
