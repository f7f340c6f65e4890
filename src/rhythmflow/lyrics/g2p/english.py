"""English segment → ``|``-separated IPA phones, exactly as the original DiffRhythm front-end.

Pipeline for one English segment (see the golden README for the reasons behind each detail):

1. :func:`~rhythmflow.lyrics.g2p.english_text.normalize_english` (abbreviations, numbers);
2. :func:`clean_punctuation`: CJK punctuation → ASCII, delete every char outside
   ``[\\w\\s_,.?!;:'…]`` (no space inserted), tighten spaces around punctuation;
3. espeak-ng via phonemizer (``en-us``, punctuation ``,.?!;:'…`` preserved, no stress, no tie,
   ``language_switch='remove-flags'``, separators word ``|_|`` / syllable ``-`` / phone ``|``);
4. each punctuation mark becomes its own phone, a trailing ``|_`` is added after a final phone,
   and :data:`SPECIAL_PHONES` merges are applied.

The espeak backend is created once per process (it takes about half a second) and shared;
calls are serialised because espeak-ng is not thread-safe. Which libespeak-ng it loads (the
system's 1.51, else the 1.51 bundled in the ``espeak-english`` wheel, else a system one of another
version, else the 1.52 bundled in ``espeakng-loader``) is decided in :mod:`.espeak_library`;
nothing is set at import.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from rhythmflow.errors import DependencyError
from rhythmflow.lyrics.g2p.english_text import normalize_english
from rhythmflow.lyrics.g2p.espeak_library import (
    ENGLISH_PACKAGE,
    GOLDEN_VERSION,
    INSTALL_HINT,
    EspeakLibrary,
    espeak_library_scope,
    find_espeak,
)
from rhythmflow.lyrics.g2p.punctuation import map_cjk_punctuation

log = logging.getLogger(__name__)

PUNCTUATION = ",.?!;:'…"
ESPEAK_LANGUAGE = "en-us"
VALIDATED_ESPEAK = GOLDEN_VERSION  # (1, 51)

# Applied in this order (strings, not regexes), each until nothing changes, only to whole phones.
SPECIAL_PHONES = (
    ("t|ɹ", "tɹ"),
    ("d|ɹ", "dɹ"),
    ("t|s", "ts"),
    ("d|z", "dz"),
    ("ɪ|ɹ", "ɪɹ"),
    ("ɐ", "ɚ"),
    ("ᵻ", "ɪ"),
    ("əl", "l"),
    ("x", "k"),
    ("ɬ", "l"),
    ("ʔ", "t"),
    ("n̩", "n"),
    ("oː|ɹ", "oːɹ"),
)
_SPECIAL_RES = tuple(
    (re.compile(r"(^|[_|])" + re.escape(old) + r"([_|]|$)"), new) for old, new in SPECIAL_PHONES
)
# A phone string ending in one of these chars gets a trailing word break "|_" (the set includes
# a backtick, as in the original).
_FINAL_PHONE_CHARS = "p⁼ʰmftnlkxʃs`ɹaoəɛɪeɑʊŋiuɥwæjː"

_NOT_KEPT = re.compile(r"[^\w\s_,.?!;:'…]")
_SPACE_AROUND_PUNCT = re.compile(r"\s*([,.?!;:'…])\s*")
_SPACES = re.compile(r"\s+")
_PUNCT_CHAR = re.compile(r"([,.?!;:'…])")
_PIPES = re.compile(r"\|+")

_LOCK = threading.RLock()  # espeak-ng is not thread-safe; also guards backend creation


class _PhonemizerLog(logging.LoggerAdapter):
    """phonemizer warns about word-count mismatches and language switches on ordinary lyrics
    (both are expected with this configuration); keep those at debug level."""

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)


def clean_punctuation(line: str) -> str:
    """One text line as the original TextTokenizer prepares it for espeak."""
    line = line.strip()
    line = map_cjk_punctuation(line)
    line = _NOT_KEPT.sub("", line)
    line = _SPACE_AROUND_PUNCT.sub(r"\1", line)
    return _SPACES.sub(" ", line)


@dataclass(frozen=True)
class EspeakInfo:
    """The espeak-ng the shared backend loaded: which library (and why) and its version."""

    library: EspeakLibrary
    version: tuple[int, ...]


_loaded: EspeakInfo | None = None  # set with the backend, under _LOCK


@functools.cache
def espeak_backend() -> Any:
    """The shared phonemizer EspeakBackend (created on first use); DependencyError if missing.

    The library is chosen by :func:`~.espeak_library.find_espeak` (a 1.51 first, system or
    ``espeak-english``; ``RHYTHMFLOW_ESPEAK`` overrides) and handed to phonemizer only while the
    backend is created (:func:`~.espeak_library.espeak_library_scope`).
    """
    global _loaded
    try:
        from phonemizer.backend import EspeakBackend
    except ImportError as exc:
        raise DependencyError(
            f"English lyrics need the phonemizer package ({exc}); "
            "run `pip install phonemizer==3.3.0`"
        ) from exc
    with _LOCK:
        found = find_espeak()
        try:
            with espeak_library_scope(found):
                backend = EspeakBackend(
                    ESPEAK_LANGUAGE,
                    punctuation_marks=PUNCTUATION,
                    preserve_punctuation=True,
                    with_stress=False,
                    tie=False,
                    language_switch="remove-flags",
                    words_mismatch="ignore",
                    logger=_PhonemizerLog(logging.getLogger(__name__ + ".phonemizer"), {}),
                )
                version = tuple(EspeakBackend.version())
        except (RuntimeError, OSError) as exc:
            raise DependencyError(
                f"English lyrics need the espeak-ng speech engine; the {found.describe()} "
                f"could not be loaded ({exc}); " + INSTALL_HINT
            ) from exc
        _loaded = EspeakInfo(found, version)
    if version[:2] != VALIDATED_ESPEAK:
        log.warning(
            "espeak-ng %s (%s) found; English phonemes were validated against espeak-ng %s and "
            'differ on some words with this version (1.52: "or" as ɔːɹ instead of oːɹ, about '
            "8%% of the golden lines); for the reference phonemes install espeak-ng %s "
            "(`pip install %s` on Linux x86_64, or the system package)",
            ".".join(map(str, version)),
            found.source,
            ".".join(map(str, VALIDATED_ESPEAK)),
            ".".join(map(str, VALIDATED_ESPEAK)),
            ENGLISH_PACKAGE,
        )
    log.debug("espeak-ng %s backend ready", ".".join(map(str, version)))
    return backend


def espeak_info() -> EspeakInfo:
    """Which espeak-ng library phonemizer uses and its version (creates the backend if needed)."""
    with _LOCK:
        espeak_backend()
        assert _loaded is not None
        return _loaded


def espeak_version() -> tuple[int, ...]:
    """Version of the espeak-ng library phonemizer uses (creates the backend if needed)."""
    return espeak_info().version


def _phonemize(lines: list[str]) -> str:
    from phonemizer.separator import Separator

    separator = Separator(word="|_|", syllable="-", phone="|")
    with _LOCK:
        backend = espeak_backend()
        phonemized = backend.phonemize(lines, separator=separator, strip=True, njobs=1)
    return "\n".join(phonemized)


def special_map(phones: str) -> str:
    """Merge phone pairs / replace phones per :data:`SPECIAL_PHONES` (whole phones only)."""
    for pattern, new in _SPECIAL_RES:
        while pattern.search(phones):
            phones = pattern.sub(lambda m, new=new: m.group(1) + new + m.group(2), phones)
    return phones


def english_phonemes(text: str) -> str:
    """Phone string of one English segment (no trailing ``|``; the caller appends it).

    Raises IndexError when espeak returns nothing (as the original did); the caller maps errors
    to LyricsError. DependencyError when espeak-ng / phonemizer are missing.
    """
    text = normalize_english(text)
    lines = [clean_punctuation(line) for line in text.strip("\n").split("\n")]
    phones = _phonemize(lines)
    phones = _PUNCT_CHAR.sub(r"|\1|", phones)
    phones = _PIPES.sub("|", phones).rstrip("|")
    if phones[-1] in _FINAL_PHONE_CHARS:
        phones += "|_"
    return special_map(phones)
