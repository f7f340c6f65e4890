"""The Mandarin pronunciation lexicon and the pinyin → bopomofo table.

Files (resolved through ``rhythmflow.assets``): ``zh-lexicon`` (word TAB "pin1 yin1", 665k lines,
later duplicates win), ``zh-pinyin2bpmf`` (toneless pinyin TAB bopomofo) and ``zh-polychar``
(the 159 characters whose reading the polyphone model decides). Each file is read once per
process and path.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from rhythmflow.errors import AssetError
from rhythmflow.lyrics.g2p.chinese._deps import require
from rhythmflow.lyrics.resources import DEFAULT_ASSETS, LyricsAssets

logger = logging.getLogger(__name__)

# Pinyin tone digit → bopomofo tone mark (tone 1 is unmarked here; "ˉ" is added at the end).
TONE_MARKS = {"0": "˙", "5": "˙", "1": "", "2": "ˊ", "3": "ˇ", "4": "ˋ"}


@dataclass(frozen=True)
class Lexicon:
    """Readings: ``words`` maps a word to its space-separated tone-numbered pinyin."""

    words: dict[str, str]
    pinyin_to_bopomofo: dict[str, str]
    polychars: frozenset[str]

    def syllable_bopomofo(self, syllable: str) -> str | None:
        """Bopomofo with tone mark for a pinyin syllable such as "hao3"; None if unmappable."""
        base, tone = syllable[:-1], syllable[-1:]
        if base in self.pinyin_to_bopomofo and tone in TONE_MARKS:
            return self.pinyin_to_bopomofo[base] + TONE_MARKS[tone]
        return None


def _tab_pairs(path: Path) -> dict[str, str]:
    """``key TAB value`` lines (each stripped first) as a dict; the last duplicate wins."""
    table: dict[str, str] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.strip().split("\t")
            if len(fields) != 2:
                raise AssetError(
                    f"{path}:{number}: expected 'key<TAB>value', got {line.rstrip()!r}; the file "
                    f"is corrupt — fetch it again (rhythmflow fetch)"
                )
            table[fields[0]] = fields[1]
    return table


@functools.cache
def _read(lexicon_path: Path, bopomofo_path: Path, polychar_path: Path) -> Lexicon:
    words = _tab_pairs(lexicon_path)
    table = _tab_pairs(bopomofo_path)
    with open(polychar_path, encoding="utf-8") as lines:
        polychars = frozenset(line.strip("\n") for line in lines)
    logger.debug("loaded Chinese lexicon: %d words, %d polyphones", len(words), len(polychars))
    return Lexicon(words, table, polychars)


def load_lexicon(assets: LyricsAssets = DEFAULT_ASSETS) -> Lexicon:
    """The lexicon from the ``zh-lexicon``, ``zh-pinyin2bpmf`` and ``zh-polychar`` assets of
    ``assets``.

    Parsed once per set of resolved paths. Raises AssetError if a file is missing or malformed.
    """
    return _read(assets.path("zh-lexicon"), assets.path("zh-pinyin2bpmf"),
                 assets.path("zh-polychar"))


def pypinyin_bopomofo(word: str) -> list[str]:
    """pypinyin's bopomofo for every character of ``word`` (``lazy_pinyin(word, BOPOMOFO)``)."""
    pypinyin = require("pypinyin")
    return pypinyin.lazy_pinyin(word, style=pypinyin.Style.BOPOMOFO)
