"""LRC lyrics text → timed lines.

Accepted (one lyric per timestamp; several leading timestamps give one entry each):

* timestamps ``[m:ss]``, ``[mm:ss]``, ``[mm:ss.x]``, ``[mm:ss.xx]``, ``[mm:ss.xxx]`` at the start
  of a line (leading whitespace allowed); seconds must be below 60;
* ID tags ``[ti:…]``, ``[ar:…]``, ``[al:…]``, ``[by:…]``, ``[length:…]``, ``[re:…]``, ``[ve:…]``,
  ``[#…]`` and any other ``[name:value]`` tag whose name is letters: skipped;
  ``[offset:±N]`` (milliseconds) is applied: a positive offset moves every lyric N ms *earlier*
  (times are clamped at 0);
* a BOM at the start of the text, ``\\r\\n`` / ``\\r`` / ``\\n`` line endings, blank lines, and
  untimed lines (prose, ``Chorus:``, ``[Verse 1]``): skipped;
* enhanced-LRC word timings inside a lyric (``<mm:ss.xx>``) are removed (the original would
  have spelled their digits out as words);
* a bare timestamp (no lyric) is an instrumental marker: it is returned with ``text == ""`` and
  places no tokens (see :mod:`rhythmflow.lyrics.tokens`).

A leading tag that looks like a time but is not a valid one (``[00:35:50]``, ``[00:75.00]``,
``[-00:05.00]``, ``[0:5]``, an unclosed ``[00:10.00 …``) or a malformed ``[offset:]`` value raises
:class:`~rhythmflow.errors.LrcError` naming the line. The result is sorted by time (stable, so lines
with equal times keep their file order).

Times are computed as ``int(minutes) * 60 + float("ss.fff")``, the same float64 arithmetic as the
original DiffRhythm reader, so frame positions match it exactly for well-formed files.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from rhythmflow.errors import LrcError

log = logging.getLogger(__name__)

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# A leading bracketed tag: its content up to the first "]" (or to the end when unclosed).
_TAG = re.compile(r"\[([^\]]*)(\]?)")
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})(?:\.([0-9]{1,3}))?")
# Something a person meant as a time: a (signed) digit run followed by ":" or ".".
_LOOKS_LIKE_TIME = re.compile(r"\s*[-+−]?\s*[0-9]+\s*[:.]")
_ID_TAG = re.compile(r"\s*(#.*|([A-Za-z][A-Za-z_\- ]*)\s*:(.*))", re.DOTALL)
_OFFSET_VALUE = re.compile(r"\s*([-+]?[0-9]{1,9})\s*")
# Enhanced-LRC word timings inside a lyric ("<00:10.50>word"); removed, never sung.
_WORD_TIME = re.compile(r"<[0-9]{1,2}:[0-9]{2}(?:\.[0-9]{1,3})?>")

_TIME_HINT = (
    "write timestamps as [mm:ss.xx], e.g. [01:05.30] ([m:ss], [mm:ss] and 1 to 3 fraction digits "
    "also work; seconds must be below 60)"
)


@dataclass(frozen=True)
class LyricLine:
    """One timed lyric: ``start`` in seconds, ``text`` (``""`` for an instrumental marker) and the
    1-based ``line`` number in the LRC text it came from."""

    start: float
    text: str
    line: int


def _error(line_no: int, raw: str, what: str, hint: str = _TIME_HINT) -> LrcError:
    shown = raw if len(raw) <= 60 else raw[:57] + "..."
    return LrcError(f"LRC line {line_no}: {what} in {shown!r}; {hint}", field="lrc", line=line_no)


def _parse_time(content: str, line_no: int, raw: str) -> float:
    """Seconds of a timestamp tag's content (without brackets); LrcError when it is not valid."""
    m = _TIME.fullmatch(content)
    if m is None:
        stripped = content.strip()
        if stripped[:1] in "-−":
            raise _error(line_no, raw, f"negative timestamp [{content}]")
        raise _error(line_no, raw, f"malformed timestamp [{content}]")
    minutes, seconds, fraction = m.groups()
    if int(seconds) >= 60:
        raise _error(line_no, raw, f"impossible timestamp [{content}] (seconds must be below 60)")
    secs = seconds if fraction is None else f"{seconds}.{fraction}"
    return int(minutes) * 60 + float(secs)


def _parse_offset(value: str, line_no: int, raw: str) -> float:
    m = _OFFSET_VALUE.fullmatch(value)
    if m is None:
        raise _error(
            line_no,
            raw,
            f"malformed offset value {value!r}",
            "write [offset:+N] or [offset:-N] with N in milliseconds (positive = lyrics earlier)",
        )
    return int(m.group(1)) / 1000.0


def _split_lines(text: str) -> list[str]:
    if text.startswith("\ufeff"):
        text = text[1:]
    return _LINE_BREAK.split(text)


def parse_lrc(text: str) -> list[LyricLine]:
    """Parse LRC ``text`` into lyric lines sorted by start time (see the module docstring).

    Raises :class:`~rhythmflow.errors.LrcError` (naming the 1-based line and saying how to fix it)
    for malformed or impossible timestamps and malformed ``[offset:]`` tags; never anything else.
    An empty text gives an empty list.
    """
    if not isinstance(text, str):
        raise LrcError(f"LRC lyrics must be text (str), got {type(text).__name__}")
    entries: list[LyricLine] = []
    offset = 0.0
    for line_no, raw in enumerate(_split_lines(text), start=1):
        line = raw.strip()
        if not line:
            continue
        times: list[float] = []
        rest = line
        while rest.startswith("["):
            tag = _TAG.match(rest)
            assert tag is not None  # "[" always matches
            content, closed = tag.group(1), tag.group(2)
            if _LOOKS_LIKE_TIME.match(content):
                if not closed:
                    raise _error(line_no, raw, f"unclosed timestamp [{content}")
                times.append(_parse_time(content, line_no, raw))
                rest = rest[tag.end() :].lstrip()
                continue
            if not times and closed:
                id_tag = _ID_TAG.fullmatch(content)
                if id_tag is not None:
                    name = (id_tag.group(2) or "").strip().lower()
                    if name == "offset":
                        offset = _parse_offset(id_tag.group(3), line_no, raw)
                        log.debug("LRC line %d: offset %+.3f s", line_no, offset)
                    else:
                        log.debug("LRC line %d: skipping ID tag [%s]", line_no, content)
                    break
            break
        if not times:
            log.debug("LRC line %d has no timestamp; skipped: %r", line_no, line[:60])
            continue
        lyric = _WORD_TIME.sub("", rest).strip()
        entries.extend(LyricLine(t, lyric, line_no) for t in times)
    if offset:
        entries = [LyricLine(max(0.0, e.start - offset), e.text, e.line) for e in entries]
    entries.sort(key=lambda e: e.start)
    return entries
