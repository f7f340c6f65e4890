"""Text normalisation of a Chinese segment before word segmentation.

Matches DiffRhythm/Amphion: Arabic numerals are read out by cn2an ("an2cn"), CJK punctuation
becomes ASCII, all whitespace is removed, and every character other than U+4E00..U+9FFF and
``_,.?!;:'…`` is deleted.
"""

from __future__ import annotations

import re

from rhythmflow.errors import LyricsError
from rhythmflow.lyrics.g2p.chinese._deps import require
from rhythmflow.lyrics.g2p.punctuation import map_cjk_punctuation

_WHITESPACE = re.compile(r"\s+")
_NOT_KEPT = re.compile(r"[^\u4e00-\u9fff_,.?!;:'…]")


def numbers_to_chinese(text: str) -> str:
    """Replace Arabic numbers by their Chinese reading with ``cn2an.transform(text, "an2cn")``.

    "2024年" becomes "二零二四年", "3个" becomes "三个", "50%" becomes "百分之五十". Raises
    LyricsError if cn2an cannot read a number in ``text``.
    """
    cn2an = require("cn2an")
    try:
        return cn2an.transform(text, "an2cn")
    except Exception as exc:  # cn2an raises ValueError and others on malformed numbers
        raise LyricsError(
            f"cannot read the numbers in the Chinese lyric {text!r} ({type(exc).__name__}: "
            f"{exc}); write them out in Chinese characters"
        ) from exc


def normalize(text: str) -> str:
    """Map CJK punctuation to ASCII, drop whitespace, keep only hanzi and ``_,.?!;:'…``."""
    text = map_cjk_punctuation(text)
    text = _WHITESPACE.sub("", text)
    return _NOT_KEPT.sub("", text)
