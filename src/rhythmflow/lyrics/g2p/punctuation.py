"""The punctuation mapping both language cleaners apply first (as the original's tokenizers)."""

from __future__ import annotations

# Applied in this order (the multi-character ellipses after the single ones).
CJK_PUNCTUATION = (
    ("，", ","),
    ("。", "."),
    ("！", "!"),
    ("？", "?"),
    ("；", ";"),
    ("：", ":"),
    ("、", ","),
    ("‘", "'"),
    ("’", "'"),
    ("⋯", "…"),
    ("···", "…"),
    ("・・・", "…"),
    ("...", "…"),
)


def map_cjk_punctuation(text: str) -> str:
    """Replace full-width/CJK punctuation and ellipsis spellings by the ASCII marks and ``…``."""
    for src, dst in CJK_PUNCTUATION:
        text = text.replace(src, dst)
    return text
