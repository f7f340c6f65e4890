"""Plain (untimed) lyrics text → lyric lines, section markers and stanza breaks.

The input of :mod:`rhythmflow.lyrics.autotime`. One sung line per text line; blank lines separate
stanzas. A *section marker* is never sung:

* a line that is one bracketed tag, ``[...]`` or ``【...】``, e.g. ``[Verse 1]``, ``[Chorus]``,
  ``【副歌】``; text after the tag on the same line (``[Chorus] la la la``) is a lyric line;
* a bare keyword with an optional number and a colon, alone on its line: ``Chorus:``,
  ``Verse 2:``, ``副歌：``;
* a parenthesised keyword with an optional number, alone on its line: ``(Chorus)``, ``（副歌）``.

Keywords (case-insensitive) and what they mean for the timing (see :data:`KEYWORDS`):

=============  ==============================================  ===============================
kind           English                                         Chinese
=============  ==============================================  ===============================
verse          verse                                           主歌
pre-chorus     pre-chorus, prechorus, pre chorus               预副歌, 导歌
chorus         chorus, hook, refrain                           副歌
post-chorus    post-chorus, postchorus, post chorus
bridge         bridge                                          桥段
intro          intro                                           前奏
instrumental   instrumental, interlude, solo                   间奏
break          break
outro          outro                                           尾奏, 尾声
=============  ==============================================  ===============================

Sung kinds (verse … bridge) start a new stanza. ``intro``/``instrumental``/``break``/``outro``
also reserve instrumental time (:data:`PAUSE_SECONDS`). A bracketed tag without a keyword
(``[Guitar riff]``) alone on its line is kept as an unknown section marker (a stanza break, with
a warning); followed by text on the same line (``[laughs] ha ha``) the whole line is a lyric.
LRC ID tags (``[ti:Title]``, ``[ar:…]``, any ``[name:value]`` whose name has no keyword) are
ignored. A line that starts with a timestamp (``[00:12.00]…``) raises
:class:`~rhythmflow.errors.LrcError`: the text is already an LRC file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from rhythmflow.errors import LrcError, UsageError
from rhythmflow.lyrics.lrc import split_lines

log = logging.getLogger(__name__)

#: Keyword → marker kind. English keywords match whole words, case-insensitively.
# fmt: off
KEYWORDS: dict[str, str] = {
    "pre-chorus": "pre-chorus", "prechorus": "pre-chorus", "pre chorus": "pre-chorus",
    "post-chorus": "post-chorus", "postchorus": "post-chorus", "post chorus": "post-chorus",
    "verse": "verse", "chorus": "chorus", "hook": "chorus", "refrain": "chorus",
    "bridge": "bridge", "intro": "intro", "outro": "outro", "instrumental": "instrumental",
    "interlude": "instrumental", "solo": "instrumental", "break": "break",
    "主歌": "verse", "预副歌": "pre-chorus", "导歌": "pre-chorus", "副歌": "chorus",
    "桥段": "bridge", "前奏": "intro", "间奏": "instrumental", "尾奏": "outro", "尾声": "outro",
}
# fmt: on
#: Instrumental seconds a marker of this kind reserves (at the default pause scale).
PAUSE_SECONDS: dict[str, float] = {"intro": 8.0, "instrumental": 8.0, "break": 4.0, "outro": 8.0}
UNKNOWN = "unknown"

_ALTERNATION = "|".join(re.escape(k) for k in sorted(KEYWORDS, key=len, reverse=True))
# An English keyword must not be part of a longer word ("breakfast", "versed").
_KEYWORD = re.compile(rf"(?<![A-Za-z])({_ALTERNATION})(?![A-Za-z])", re.IGNORECASE)
_NUMBER = r"(?:\s*[-_#]?\s*(?:[0-9]{1,2}|[A-Za-z]|[一二三四五六七八九十]))?"
_BARE = re.compile(rf"({_ALTERNATION}){_NUMBER}\s*[:：]", re.IGNORECASE)
_PAREN = re.compile(rf"[(（]\s*({_ALTERNATION}){_NUMBER}\s*[)）]", re.IGNORECASE)
_BRACKET = re.compile(r"(\[([^\[\]]*)\]|【([^【】]*)】)\s*(.*)", re.DOTALL)
_ID_TAG = re.compile(r"\s*[A-Za-z][A-Za-z_\- ]*\s*:.*", re.DOTALL)
_TIMESTAMP = re.compile(r"[\[<]\s*[-+−]?\s*[0-9]+\s*[:.]")


@dataclass(frozen=True)
class PlainLine:
    """A lyric line to be sung: its text (stripped) and 1-based ``line`` number in the input."""

    text: str
    line: int


@dataclass(frozen=True)
class Marker:
    """A section marker as written (``text``), its ``kind`` (a :data:`KEYWORDS` value or
    :data:`UNKNOWN`) and 1-based input ``line``. ``pause`` is its nominal instrumental seconds."""

    text: str
    kind: str
    line: int

    @property
    def pause(self) -> float:
        return PAUSE_SECONDS.get(self.kind, 0.0)


@dataclass(frozen=True)
class Blank:
    """One or more blank input lines (a stanza break), starting at 1-based ``line``."""

    line: int


Item = PlainLine | Marker | Blank


def _kind(keyword: str) -> str:
    return KEYWORDS[keyword.lower()]


def _split(line_no: int, line: str) -> list[Item]:
    """The items of one non-blank, stripped input line."""
    if _TIMESTAMP.match(line):
        raise LrcError(
            f"line {line_no} ({line[:40]!r}) starts with a timestamp: this is already timed LRC; "
            "pass it as timed lyrics (lrc) or remove the timestamps"
        )
    for pattern in (_BARE, _PAREN):
        m = pattern.fullmatch(line)
        if m is not None:
            return [Marker(line, _kind(m.group(1)), line_no)]
    m = _BRACKET.match(line)
    if m is None:
        return [PlainLine(line, line_no)]
    tag, content, rest = m.group(1), m.group(2) or m.group(3) or "", m.group(4).strip()
    found = _KEYWORD.search(content)
    if _ID_TAG.fullmatch(content) and (found is None or found.start() > content.index(":")):
        log.debug("line %d: ignoring LRC ID tag %s", line_no, tag)
        return [PlainLine(rest, line_no)] if rest else []
    if found is not None:
        marker = Marker(tag, _kind(found.group(1)), line_no)
        return [marker, PlainLine(rest, line_no)] if rest else [marker]
    if rest:
        return [PlainLine(line, line_no)]  # "[laughs] ha ha": sung as written
    return [Marker(tag, UNKNOWN, line_no)]


def parse_plain(text: str) -> list[Item]:
    """Split plain lyrics into lines, markers and stanza breaks, in input order.

    Runs of blank lines give one :class:`Blank`; leading and trailing blank lines give none.
    Raises UsageError when ``text`` is not a str and LrcError for a line that starts with a
    timestamp. Never phonemizes: whether a line can be sung is checked by the caller.
    """
    if not isinstance(text, str):
        raise UsageError(f"lyrics must be text (str), got {type(text).__name__}")
    items: list[Item] = []
    pending_blank: Blank | None = None
    for line_no, raw in enumerate(split_lines(text), start=1):  # as the LRC reader
        line = raw.strip()
        if not line:
            if items and pending_blank is None:
                pending_blank = Blank(line_no)
            continue
        new = _split(line_no, line)
        if new and pending_blank is not None:
            items.append(pending_blank)
        if new:
            pending_blank = None
        items.extend(new)
    return items
