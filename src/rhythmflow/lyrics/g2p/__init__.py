"""Lyric line → phoneme string → token ids, compatible with DiffRhythm's ``chn_eng_g2p`` and
``CNENTokenizer.encode``.

A line is cut into language segments (:func:`segments`): each char is ``zh`` (U+4E00..U+9FA5),
``en`` (ASCII letters) or ``other``; ``other`` chars join the current segment and a new segment
starts only when the language switches between ``en`` and ``zh``. English segments go through
:mod:`.english`, Chinese ones through :mod:`.chinese` (imported only when a line holds Chinese,
so an English-only song never loads the Chinese resources). Each segment's phones get ``|``
appended; a trailing English word break ``_`` is removed. Token ids are the vocab ids
(``vocab.json``, asset ``g2p-vocab``) of the ``|``-separated phones found in the vocab, plus 1
(0 is the "no lyric" pad in the frame track).

Results are cached per distinct line and :class:`LyricsAssets` (songs repeat their choruses);
resource files are read from the ``assets`` each call is given (default: the environment's).
"""

from __future__ import annotations

import functools
import json
import logging
import unicodedata

from rhythmflow.errors import LyricsError, RhythmflowError
from rhythmflow.lyrics.resources import DEFAULT_ASSETS, LyricsAssets

log = logging.getLogger(__name__)

EN, ZH, OTHER = "en", "zh", "other"
_CACHE_SIZE = 4096


def char_language(ch: str) -> str:
    """``zh`` for U+4E00..U+9FA5, ``en`` for ASCII letters, ``other`` for everything else."""
    if "\u4e00" <= ch <= "\u9fa5":
        return ZH
    if "A" <= ch <= "Z" or "a" <= ch <= "z":
        return EN
    return OTHER


def unsingable_letters(text: str) -> dict[str, str]:
    """Letters of ``text`` the G2P cannot sing, by script: ``{"HIRAGANA": "のう", ...}``.

    The G2P reads Latin letters (through espeak-ng's English voice, accents included) and the
    Chinese ideographs U+4E00..U+9FA5. Any other letter (kana, hangul, Cyrillic, Greek, rarer
    CJK ideographs...) would be spelt out as a letter name ("japanese letter ...") or dropped,
    so such lines are refused instead (:func:`g2p_tokens` raises LyricsError).
    """
    found: dict[str, str] = {}
    for ch in text:
        if char_language(ch) != OTHER or not unicodedata.category(ch).startswith("L"):
            continue
        name = unicodedata.name(ch, "UNKNOWN")
        if "LATIN" in name:
            continue
        script = name.split(" ")[0]
        if ch not in found.get(script, ""):
            found[script] = found.get(script, "") + ch
    return found


def check_singable(text: str) -> None:
    """Raise LyricsError when ``text`` holds letters the G2P cannot sing (see
    :func:`unsingable_letters`), saying which and what to do; cheap (no G2P is loaded)."""
    bad = unsingable_letters(text)
    if bad:
        what = ", ".join(f"{script.lower()} {chars[:8]!r}" for script, chars in bad.items())
        raise LyricsError(
            f"lyric {text!r} holds letters the lyrics G2P cannot sing ({what}); it reads only "
            "English (Latin letters) and Chinese (simplified/traditional hanzi), and would "
            "spell these out as letter names. Write that part in Latin letters (romaji, a "
            "transliteration) or in Chinese characters, or remove it"
        )


def segments(text: str) -> list[tuple[str, str]]:
    """Split ``text`` into ``(segment, language)`` pairs the way the original does.

    The empty string gives ``[("", "")]``; text without any ``en``/``zh`` char gives one
    ``other`` segment.
    """
    result: list[tuple[str, str]] = []
    current, lang = "", ""
    for ch in text:
        kind = char_language(ch)
        if not current:
            current, lang = ch, kind
        elif lang == OTHER or kind in (lang, OTHER):
            current += ch
            if lang == OTHER:
                lang = kind
        else:
            result.append((current, lang))
            current, lang = ch, kind
    result.append((current, lang))
    return result


@functools.cache
def vocab(assets: LyricsAssets = DEFAULT_ASSETS) -> dict[str, int]:
    """Phone → vocab id (before the +1), read once per ``assets`` from the ``g2p-vocab`` asset
    (UTF-8 JSON)."""
    path = assets.path("g2p-vocab")
    try:
        table = json.loads(path.read_text(encoding="utf-8"))["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        from rhythmflow.errors import AssetError

        raise AssetError(f"g2p vocabulary {path} is not a DiffRhythm vocab.json: {exc}") from exc
    return dict(table)


def _segment_tokens(phones: str, assets: LyricsAssets) -> list[int]:
    table = vocab(assets)
    return [table[p] for p in phones.split("\t")[0].split("|") if p in table]


def _segment_phonemes(segment: str, lang: str, line: str, assets: LyricsAssets) -> str:
    if lang == EN:
        from rhythmflow.lyrics.g2p.english import english_phonemes

        return english_phonemes(segment)
    if lang == ZH:
        from rhythmflow.lyrics.g2p.chinese import zh_phonemes

        return zh_phonemes(segment, assets=assets)
    if lang == OTHER and not segment.strip():
        raise LyricsError(
            f"lyric {line!r} is only whitespace; remove it, or leave the lyric after the "
            "timestamp empty to mark an instrumental part"
        )
    if lang == OTHER:
        raise LyricsError(
            f"lyric {line!r} has no English or Chinese letters, so it cannot be sung; "
            "write numbers and symbols as words (e.g. 'one two three four')"
        )
    raise LyricsError("empty lyric text; give at least one English or Chinese word")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _g2p(text: str, assets: LyricsAssets) -> tuple[str, tuple[int, ...]]:
    check_singable(text)
    parts = segments(text)
    phonemes = ""
    tokens: list[int] = []
    for index, (segment, lang) in enumerate(parts):
        try:
            phones = _segment_phonemes(segment, lang, text, assets)
        except RhythmflowError:
            raise
        except ImportError as exc:
            from rhythmflow.errors import DependencyError

            fix = (
                "pip install 'rhythmflow[chinese]'"
                if lang == ZH
                else "pip install phonemizer==3.3.0 inflect==7.5.0"
            )
            raise DependencyError(
                f"{lang} lyrics need a package that is not installed ({exc}); run `{fix}`"
            ) from exc
        except Exception as exc:  # any failure inside espeak/inflect/the Chinese G2P
            from rhythmflow.errors import plain_reason

            log.debug("G2P failure on %r", segment, exc_info=True)
            raise LyricsError(
                f"cannot convert the {lang} part {segment!r} of lyric {text!r} to phonemes "
                f"({plain_reason(exc)} in the G2P); rephrase or remove that part"
            ) from exc
        phonemes += phones + "|"
        tokens += _segment_tokens(phones, assets)
        if lang == EN and index == len(parts) - 1 and phonemes[-2:-1] == "_":
            phonemes = phonemes[:-2]
            tokens = tokens[:-1]
    return phonemes, tuple(tokens)


def g2p_phonemes(text: str, *, assets: LyricsAssets = DEFAULT_ASSETS) -> str:
    """The ``|``-separated phoneme string of one lyric line (upstream ``chn_eng_g2p``'s first
    result). Raises LyricsError for text without English/Chinese letters (including the empty
    string) or text the G2P cannot convert; DependencyError if espeak-ng (or, for Chinese, the
    Chinese G2P packages) is missing; AssetError if a resource file is missing."""
    if not isinstance(text, str):
        raise LyricsError(f"lyric must be text (str), got {type(text).__name__}")
    return _g2p(text, assets)[0]


def g2p_tokens(text: str, *, assets: LyricsAssets = DEFAULT_ASSETS) -> list[int]:
    """Token ids (vocab ids + 1, never 0) for one lyric line, identical to upstream
    ``CNENTokenizer.encode``. Errors as :func:`g2p_phonemes`."""
    if not isinstance(text, str):
        raise LyricsError(f"lyric must be text (str), got {type(text).__name__}")
    return [t + 1 for t in _g2p(text, assets)[1]]


def clear_cache() -> None:
    """Forget cached line results (e.g. after changing resources in tests)."""
    _g2p.cache_clear()
