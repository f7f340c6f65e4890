"""English text normalisation before phonemization, as the original DiffRhythm front-end does it.

Two steps, in this order: abbreviation expansion, then number expansion. The text is neither
lower-cased nor transliterated (the original leaves both out). inflect (slow to import: ~2 s) is
loaded only when the text holds a digit.
"""

from __future__ import annotations

import functools
import re
from typing import Any

# Standalone words, case-insensitive, applied in this order; a trailing period is kept.
_ABBREVIATIONS = tuple(
    (re.compile(rf"\b{short}\b", re.IGNORECASE), long)
    for short, long in (
        ("mrs", "misess"),
        ("mr", "mister"),
        ("dr", "doctor"),
        ("st", "saint"),
        ("co", "company"),
        ("jr", "junior"),
        ("maj", "major"),
        ("gen", "general"),
        ("drs", "doctors"),
        ("rev", "reverend"),
        ("lt", "lieutenant"),
        ("hon", "honorable"),
        ("sgt", "sergeant"),
        ("capt", "captain"),
        ("esq", "esquire"),
        ("ltd", "limited"),
        ("col", "colonel"),
        ("ft", "fort"),
        ("etc", "et cetera"),
        ("btw", "by the way"),
    )
)

_GROUPED_DIGITS = re.compile(r"[0-9][0-9,]+[0-9]")
_POUNDS = re.compile(r"£([0-9,]*[0-9]+)")
_DOLLARS = re.compile(r"\$([0-9.,]*[0-9]+)")
_FRACTION = re.compile(r"([0-9]+)/([0-9]+)")
_DECIMAL = re.compile(r"[0-9]+\.[0-9]+")
_PERCENT = re.compile(r"[0-9.,]*[0-9]+%")
_ORDINAL = re.compile(r"[0-9]+(?:st|nd|rd|th)")
_DIGITS = re.compile(r"[0-9]+")


@functools.cache
def _inflect() -> Any:
    import inflect  # lazy: importing it takes about two seconds

    return inflect.engine()


def expand_abbreviations(text: str) -> str:
    """Replace the title/abbreviation words (``Mr``, ``St``, ``etc`` …) by lowercase words."""
    for pattern, long in _ABBREVIATIONS:
        text = pattern.sub(long, text)
    return text


def _unit(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _dollars(m: re.Match[str]) -> str:
    amount = m.group(1)
    parts = amount.split(".")
    if len(parts) > 2:
        return f" {amount} dollars "
    dollars = int(parts[0]) if parts[0] else 0
    cents = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    if dollars and cents:
        return (
            f" {dollars} {_unit(dollars, 'dollar', 'dollars')},"
            f" {cents} {_unit(cents, 'cent', 'cents')} "
        )
    if dollars:
        return f" {dollars} {_unit(dollars, 'dollar', 'dollars')} "
    if cents:
        return f" {cents} {_unit(cents, 'cent', 'cents')} "
    return " zero dollars "


def _fraction(m: re.Match[str]) -> str:
    words = _inflect().number_to_words
    numerator, denominator = int(m.group(1)), int(m.group(2))
    if denominator == 2:
        return " one half " if numerator == 1 else f" {words(numerator)} halves "
    if denominator == 4:
        return " one quarter " if numerator == 1 else f" {words(numerator)} quarters "
    return f" {words(numerator)} {_inflect().ordinal(words(denominator))} "


def _number(m: re.Match[str]) -> str:
    words = _inflect().number_to_words
    n = int(m.group(0))
    if 1000 < n < 3000:
        if n == 2000:
            return " two thousand "
        if 2000 < n < 2010:
            return f" two thousand {words(n % 100)} "
        if n % 100 == 0:
            return f" {words(n // 100)} hundred "
        return " " + words(n, andword="", zero="oh", group=2).replace(", ", " ") + " "
    return f" {words(n, andword='')} "


def expand_numbers(text: str) -> str:
    """Spell out money, fractions, decimals, percentages, ordinals and plain digit runs.

    Raises whatever inflect or ``int`` raise for numbers that cannot be spelled (the caller turns
    that into a LyricsError).
    """
    if not any("0" <= ch <= "9" for ch in text):
        return text
    text = _GROUPED_DIGITS.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _POUNDS.sub(r"\1 pounds", text)
    text = _DOLLARS.sub(_dollars, text)
    text = _FRACTION.sub(_fraction, text)
    text = _DECIMAL.sub(lambda m: m.group(0).replace(".", " point "), text)
    text = _PERCENT.sub(lambda m: m.group(0).replace("%", " percent "), text)
    text = _ORDINAL.sub(lambda m: f" {_inflect().number_to_words(m.group(0))} ", text)
    return _DIGITS.sub(_number, text)


def normalize_english(text: str) -> str:
    """Abbreviations, then numbers: the text that goes on to punctuation clean-up and espeak."""
    return expand_numbers(expand_abbreviations(text))
