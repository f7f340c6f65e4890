"""Chinese (Mandarin) grapheme-to-phoneme conversion, reproducing DiffRhythm's g2p exactly.

``zh_phonemes(segment)`` returns what upstream's Mandarin cleaner returns for one ``zh``
segment of ``chn_eng_g2p`` (which then appends "|"). Steps: cn2an numbers → normalisation →
jieba words with 一/不/儿 merges → lexicon / polyphone-BERT / single-character readings → tone
sandhi → bopomofo → phones. Needs ``pip install 'rhythmflow[chinese]'`` (jieba, cn2an, pypinyin,
onnxruntime) and the ``zh-*`` assets; jieba, the lexicon and the ONNX session are loaded once
per process on first use, nothing at import.
"""

from __future__ import annotations

from rhythmflow.lyrics.g2p.chinese.bopomofo import bopomofo_to_ipa, finalize
from rhythmflow.lyrics.g2p.chinese.normalize import normalize, numbers_to_chinese
from rhythmflow.lyrics.g2p.chinese.words import Predictor, text_to_bopomofo
from rhythmflow.lyrics.resources import DEFAULT_ASSETS, LyricsAssets

__all__ = ["Predictor", "prepare", "zh_phonemes"]


def prepare(text: str) -> str:
    """The normalised segment text that is segmented and given to the polyphone model."""
    return normalize(numbers_to_chinese(text.strip()))


def zh_phonemes(text: str, *, predict: Predictor | None = None,
                assets: LyricsAssets = DEFAULT_ASSETS) -> str:
    """Phones of one Chinese segment, "|"-separated, without the trailing "|".

    Characters with no reading (not in the lexicon, not polyphonic) stay as raw hanzi in the
    string. ``predict`` (testing/tracing) replaces the polyphone model; it receives the
    normalised segment and the character index. Raises DependencyError if an optional package
    is missing, AssetError if a Chinese resource is missing, LyricsError on unreadable input.
    """
    return finalize(bopomofo_to_ipa(text_to_bopomofo(prepare(text), predict, assets)))
