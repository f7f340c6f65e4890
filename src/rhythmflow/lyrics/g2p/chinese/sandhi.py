"""Word-level tone sandhi on bopomofo syllables, as DiffRhythm/Amphion applies it.

A syllable is bopomofo plus an optional final tone mark (ˊ ˇ ˋ ˙; tone 1 is unmarked). Every
function takes the word and its syllables (one per character, except after the pypinyin
fallback) and returns a new list. The rules are applied in the order of ``apply_sandhi``.
"""

from __future__ import annotations

TONE_MARKS = "˙ˊˇˋ"
_NO_ER_WORDS = frozenset({"女儿", "老儿", "男儿", "少儿", "小儿"})
_DIGITS = "零一二三四五六七八九十"
_YI_PUNCTUATION = "：，；。？！“”‘’':,;.?!()（）{}【】[]-~`、 "


def _last(syllable: str) -> str:
    return syllable[-1:]


def change_tone(syllable: str, mark: str) -> str:
    """Replace the syllable's final tone mark by ``mark`` (append it if there is none)."""
    if _last(syllable) and _last(syllable) in TONE_MARKS:
        return syllable[:-1] + mark
    return syllable + mark


def third_tone_sandhi(word: str, syllables: list[str]) -> list[str]:
    """Tone 3 + tone 3: a 2-char word's first syllable becomes tone 2.

    For a 3-char word with all three syllables in tone 3, upstream *appends* ˊ to the first two
    (giving "ˇˊ", i.e. the phones "↓↑" and "↑"); this is reproduced as is.
    """
    out = list(syllables)
    if len(word) == 3 and all(_last(out[i]) == "ˇ" for i in (0, 1, -1)):
        out[0] += "ˊ"
        out[1] += "ˊ"
    if len(word) == 2 and _last(out[0]) == "ˇ" and _last(out[-1]) == "ˇ":
        out[0] = out[0][:-1] + "ˊ"
    return out


def bu_sandhi(word: str, syllables: list[str]) -> list[str]:
    """不: neutral in the middle of X不X (when read bu), tone 2 before a tone-4 syllable."""
    out = list(syllables)
    if set(word) == {"不"} or word == "不字":
        return out
    if len(word) == 3 and word[1] == "不" and out[1][:-1] == "ㄅㄨ":
        out[1] = out[1][:-1] + "˙"
        return out
    for i, char in enumerate(word):
        if char == "不" and i + 1 < min(len(out), len(word)) and _last(out[i + 1]) == "ˋ":
            out[i] = out[i][:-1] + "ˊ"
    return out


def yi_sandhi(word: str, syllables: list[str]) -> list[str]:
    """一: in numbers, in X一X (neutral), after 第 and in dates (tone 1), else tone 2/4."""
    out = list(syllables)
    if "一" in word and any(char.isnumeric() for char in word if char != "一"):
        for i, char in enumerate(word):
            if i == 0 and char == "一" and len(word) > 1 and word[1] not in _DIGITS:
                tone = "ˊ" if out[0] and _last(out[1]) in ("ˋ", "˙") else "ˋ"
                out[0] = change_tone(out[0], tone)
            elif char == "一":
                out[i] = change_tone(out[i], "")
    elif len(word) == 3 and word[1] == "一" and word[0] == word[-1]:
        out[1] = change_tone(out[1], "˙")
    elif word.startswith("第一"):
        out[1] = change_tone(out[1], "")
    elif word.startswith(("一月", "一日", "一号")):
        out[0] = change_tone(out[0], "")
    else:
        for i, char in enumerate(word):
            if char != "一" or i + 1 >= len(word):
                continue
            if i + 1 < len(out) and _last(out[i + 1]) == "ˋ":
                out[i] = change_tone(out[i], "ˊ")
            elif word[i + 1] not in _YI_PUNCTUATION:
                out[i] = change_tone(out[i], "ˋ")
    return out


def er_sandhi(word: str, syllables: list[str]) -> list[str]:
    """A word ending in 儿 (other than 女儿, 老儿, 男儿, 少儿, 小儿) reads it in neutral tone."""
    out = list(syllables)
    if len(word) > 1 and word[-1] == "儿" and word not in _NO_ER_WORDS:
        out[-1] = change_tone(out[-1], "˙")
    return out


def apply_sandhi(word: str, syllables: list[str]) -> list[str]:
    """Third-tone, 不, 一 and 儿 sandhi, in upstream's order."""
    for rule in (third_tone_sandhi, bu_sandhi, yi_sandhi, er_sandhi):
        syllables = rule(word, syllables)
    return syllables
