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
* fullwidth timestamp punctuation, as CJK input methods type it (``［００：１２．００］``,
  ``[00：12.00]``, ``[00:12。00]``): fullwidth brackets, digits, colon and full stops inside a
  leading timestamp are read as their ASCII forms (unambiguous: a timestamp holds nothing else);
* enhanced-LRC word timings inside a lyric (``<mm:ss.xx>``) are removed (the original would
  have spelled their digits out as words);
* a bare timestamp (no lyric) is an instrumental marker: it is returned with ``text == ""`` and
  places no tokens (see :mod:`rhythmflow.lyrics.tokens`).

A leading tag that looks like a time but is not a valid one (``[00:35:50]``, ``[00:75.00]``,
``[-00:05.00]``, ``[0:5]``, an unclosed ``[00:10.00 …``) or a malformed ``[offset:]`` value raises
:class:`~rhythmflow.errors.LrcError` naming the line. The result is sorted by time (stable, so lines
with equal times keep their file order).

Lines without a timestamp are returned by :func:`parse_lrc_lines` (as ``untimed``) so callers
can warn about them; a bracketed section header alone on its line (``[Verse 1]``) is not counted.
:func:`decode_lrc` turns a file's bytes into text (UTF-8, with or without BOM; UTF-16/32 with a
BOM; UTF-16 without BOM when the zero bytes say so).

Times are computed as ``int(minutes) * 60 + float("ss.fff")``, the same float64 arithmetic as the
original DiffRhythm reader, so frame positions match it exactly for well-formed files.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

from rhythmflow.errors import LrcError, UsageError

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

# A leading timestamp typed with fullwidth forms (an input-method habit): translated to ASCII.
_FULLWIDTH_STAMP = re.compile(
    r"[\[［]\s*[0-9０-９]{1,2}\s*[:：]\s*[0-9０-９]{2}(?:\s*[.．。][0-9０-９]{1,3})?\s*[\]］]"
)
_FULLWIDTH = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)},
                            "：": ":", "．": ".", "。": ".", "［": "[", "］": "]"})
_SECTION = re.compile(r"\[[^\]]*\]|【[^】]*】")  # "[Verse 1]" / "【副歌】" alone on a line: a header

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


def split_lines(text: str) -> list[str]:
    """The lines of a lyrics text (a leading BOM dropped; \\r\\n, \\r or \\n end a line; other
    Unicode breaks stay inside a line). Shared by the LRC reader and the plain-lyrics reader."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return _LINE_BREAK.split(text)


def _ascii_stamps(line: str) -> str:
    """``line`` with its leading fullwidth timestamps written in ASCII (the lyric is untouched)."""
    pos = 0
    while True:
        m = _FULLWIDTH_STAMP.match(line, pos)
        if m is None:
            return line
        stamp = m.group(0).translate(_FULLWIDTH).replace(" ", "")
        line = line[: m.start()] + stamp + line[m.end() :]
        pos = m.start() + len(stamp)
        while pos < len(line) and line[pos].isspace():
            pos += 1


def decode_lrc(data: bytes, source: str = "lyrics") -> str:
    """Text of an LRC file's bytes: a BOM decides (UTF-8, UTF-16, UTF-32); without one, UTF-8,
    or UTF-16 LE/BE when zero bytes sit at odd/even offsets (how Windows Notepad's "Unicode"
    saves ASCII timestamps). Raises UsageError (naming ``source``) when neither decodes."""
    boms = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"),
            (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
    codec = next((c for bom, c in boms if data.startswith(bom)), None)
    if codec is None:
        codec = "utf-8"
        if b"\x00" in data and len(data) % 2 == 0:
            odd, even = data[1::2].count(0), data[0::2].count(0)
            codec = "utf-16-le" if odd > even else "utf-16-be"
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{source} is not UTF-8 or UTF-16 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8"
        ) from None
    if "\x00" in text:
        raise UsageError(f"{source} holds NUL characters: it is not a text file; save it as UTF-8")
    return text.removeprefix("\ufeff")


def parse_lrc(text: str) -> list[LyricLine]:
    """Parse LRC ``text`` into lyric lines sorted by start time (see the module docstring).

    Raises :class:`~rhythmflow.errors.LrcError` (naming the 1-based line and saying how to fix it)
    for malformed or impossible timestamps and malformed ``[offset:]`` tags; never anything else.
    An empty text gives an empty list.
    """
    return parse_lrc_lines(text)[0]


def parse_lrc_lines(text: str) -> tuple[list[LyricLine], list[LyricLine]]:
    """``(timed, untimed)``: :func:`parse_lrc`'s result, and the lines that hold text but no
    timestamp (``start`` is NaN), in file order. Errors as :func:`parse_lrc`."""
    if not isinstance(text, str):
        raise LrcError(f"LRC lyrics must be text (str), got {type(text).__name__}")
    entries: list[LyricLine] = []
    untimed: list[LyricLine] = []
    offset = 0.0
    for line_no, raw in enumerate(split_lines(text), start=1):
        line = _ascii_stamps(raw.strip())
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
                    rest = ""
                    break
            break
        if not times:
            log.debug("LRC line %d has no timestamp; skipped: %r", line_no, line[:60])
            if rest and not _SECTION.fullmatch(rest):
                untimed.append(LyricLine(math.nan, rest, line_no))
            continue
        lyric = _WORD_TIME.sub("", rest).strip()
        entries.extend(LyricLine(t, lyric, line_no) for t in times)
    if offset:
        entries = [LyricLine(max(0.0, e.start - offset), e.text, e.line) for e in entries]
    entries.sort(key=lambda e: e.start)
    return entries, untimed
