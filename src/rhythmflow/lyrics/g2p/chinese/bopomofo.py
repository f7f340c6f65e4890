"""Bopomofo (with tone marks) → the IPA-like phone string of DiffRhythm's vocabulary.

The table is applied in order as plain substring replacement; the longer keys come first so
that finals such as ㄧㄢ win over ㄧ. Tones become arrows: ˉ "→", ˊ "↑", ˇ "↓↑", ˋ "↓", and the
neutral tone ˙ is unmarked. ``finalize`` then adds the apical vowel "ɹ" to bare zhi/chi/shi/ri
and zi/ci/si, isolates punctuation as its own phone and collapses "|" runs.
"""

from __future__ import annotations

import re

# fmt: off
_BOPOMOFO_TO_IPA = (
    # syllables and finals that are not the concatenation of their letters
    ("ㄅㄛ", "p⁼wo"), ("ㄆㄛ", "pʰwo"), ("ㄇㄛ", "mwo"), ("ㄈㄛ", "fwo"),
    ("ㄧㄢ", "|jɛn"), ("ㄩㄢ", "|ɥæn"), ("ㄧㄣ", "|in"), ("ㄩㄣ", "|ɥn"),
    ("ㄧㄥ", "|iŋ"), ("ㄨㄥ", "|ʊŋ"), ("ㄩㄥ", "|jʊŋ"),
    ("ㄧㄚ", "|ia"), ("ㄧㄝ", "|iɛ"), ("ㄧㄠ", "|iɑʊ"), ("ㄧㄡ", "|ioʊ"),
    ("ㄧㄤ", "|iɑŋ"), ("ㄨㄚ", "|ua"), ("ㄨㄛ", "|uo"), ("ㄨㄞ", "|uaɪ"),
    ("ㄨㄟ", "|ueɪ"), ("ㄨㄢ", "|uan"), ("ㄨㄣ", "|uən"), ("ㄨㄤ", "|uɑŋ"),
    ("ㄩㄝ", "|ɥɛ"),
    # initials
    ("ㄅ", "p⁼"), ("ㄆ", "pʰ"), ("ㄇ", "m"), ("ㄈ", "f"), ("ㄉ", "t⁼"), ("ㄊ", "tʰ"),
    ("ㄋ", "n"), ("ㄌ", "l"), ("ㄍ", "k⁼"), ("ㄎ", "kʰ"), ("ㄏ", "x"), ("ㄐ", "tʃ⁼"),
    ("ㄑ", "tʃʰ"), ("ㄒ", "ʃ"), ("ㄓ", "ts`⁼"), ("ㄔ", "ts`ʰ"), ("ㄕ", "s`"), ("ㄖ", "ɹ`"),
    ("ㄗ", "ts⁼"), ("ㄘ", "tsʰ"), ("ㄙ", "|s"),
    # finals
    ("ㄚ", "|a"), ("ㄛ", "|o"), ("ㄜ", "|ə"), ("ㄝ", "|ɛ"), ("ㄞ", "|aɪ"), ("ㄟ", "|eɪ"),
    ("ㄠ", "|ɑʊ"), ("ㄡ", "|oʊ"), ("ㄢ", "|an"), ("ㄣ", "|ən"), ("ㄤ", "|ɑŋ"),
    ("ㄥ", "|əŋ"), ("ㄦ", "əɹ"), ("ㄧ", "|i"), ("ㄨ", "|u"), ("ㄩ", "|ɥ"),
    # tones
    ("ˉ", "→|"), ("ˊ", "↑|"), ("ˇ", "↓↑|"), ("ˋ", "↓|"), ("˙", "|"),
)
# fmt: on

_RETROFLEX_APICAL = re.compile(r"([sɹ]`[⁼ʰ]?)([→↓↑ ]+|$)")  # zhi chi shi ri
_DENTAL_APICAL = re.compile(r"(s[⁼ʰ]?)([→↓↑ ]+|$)")  # zi ci si
_DISALLOWED = re.compile(r"^\||[^\w\s_,.?!;:'…|→↓↑⁼ʰ`]")
_PUNCTUATION = re.compile(r"([,.?!;:'…])")
_BARS = re.compile(r"\|+")


def bopomofo_to_ipa(text: str) -> str:
    """Replace bopomofo letters and tone marks by phones; other characters are kept."""
    for bopomofo, ipa in _BOPOMOFO_TO_IPA:
        text = text.replace(bopomofo, ipa)
    return text


def finalize(text: str) -> str:
    """Apical vowels, character clean-up, punctuation as phones, single "|" separators.

    Drops one leading "|" and every character outside word characters, whitespace,
    ``_,.?!;:'…|`` and the marks ``→↓↑⁼ʰ``` ``; the result has no trailing "|".
    """
    text = _RETROFLEX_APICAL.sub(r"\1ɹ\2", text)
    text = _DENTAL_APICAL.sub(r"\1ɹ\2", text)
    text = _DISALLOWED.sub("", text)
    text = _PUNCTUATION.sub(r"|\1|", text)
    return _BARS.sub("|", text).rstrip("|")
