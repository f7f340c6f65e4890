"""Word segmentation: jieba (default dictionary, HMM on), then upstream's 一/不/儿 merges.

The merges reproduce DiffRhythm/Amphion exactly, including their quirks: a trailing 不 (or a run
of 不 at the end) is dropped, and an A一A reduplication is rebuilt from the already merged list.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from rhythmflow.lyrics.g2p.chinese._deps import require

logger = logging.getLogger(__name__)


@functools.cache
def _jieba() -> Any:
    """A private jieba tokenizer with the default dictionary, built once per process."""
    jieba = require("jieba")
    # jieba reports its dictionary loading on its own stderr handler at DEBUG level.
    logging.getLogger("jieba").setLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    logger.debug("jieba tokenizer ready")
    return tokenizer


def jieba_cut(text: str) -> list[str]:
    """``jieba.lcut(text, cut_all=False, HMM=True)`` with jieba's default dictionary."""
    return _jieba().lcut(text, cut_all=False, HMM=True)


def merge_yi(words: list[str]) -> list[str]:
    """Join reduplications A/一/A into A一A, then glue every lone 一 to the word after it."""
    merged: list[str] = []
    for i, word in enumerate(words):
        if word == "一" and 1 <= i < len(words) - 1 and words[i - 1] == words[i + 1]:
            # Upstream indexes the merged list with the position in the input list.
            if i - 1 < len(merged):
                merged[i - 1] = merged[i - 1] + "一" + merged[i - 1]
            else:
                merged += [word, words[i + 1]]
        elif i >= 2 and words[i - 1] == "一" and words[i - 2] == word:
            continue  # the second A of A/一/A, already consumed above
        else:
            merged.append(word)
    glued: list[str] = []
    for word in merged:
        if glued and glued[-1] == "一":
            glued[-1] += word
        else:
            glued.append(word)
    return glued


def merge_bu(words: list[str]) -> list[str]:
    """Prefix 不 to the following word; a 不 with no following non-不 word is dropped."""
    merged: list[str] = []
    previous = ""
    for word in words:
        if word != "不":
            if previous == "不":
                word = "不" + word
            merged.append(word)
        previous = word
    return merged


def merge_er(words: list[str]) -> list[str]:
    """Append a standalone 儿 (not in first position) to the word before it."""
    merged: list[str] = []
    for i, word in enumerate(words):
        if i >= 1 and word == "儿":
            merged[-1] += word
        else:
            merged.append(word)
    return merged


def segment(text: str) -> list[str]:
    """Words of a normalised Chinese text: jieba, then merge_yi, merge_bu, merge_er."""
    return merge_er(merge_bu(merge_yi(jieba_cut(text))))
