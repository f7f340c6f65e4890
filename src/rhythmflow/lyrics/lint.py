"""LRC timing lint: what in a timed lyric file the model will sing badly, and a proposed fix.

No torch and no model: only the LRC reader (:mod:`.lrc`), the G2P (:mod:`.g2p`, cached per line)
and the tempo model of :mod:`.autotime`. A line's *sung units* ``u`` are its English syllables
plus Chinese characters (:func:`~rhythmflow.lyrics.units.sung_units`, at least 1); its *tokens*
``n`` are its G2P tokens plus the period the engine appends, one latent frame (≈ 46.4 ms) each.
``time(rate)`` is autotime's slot for the line: ``u / rate + BREATH_UNITS / rate`` seconds, each
language's units at its own :data:`~rhythmflow.lyrics.autotime.RATES` (slowest, comfortable,
fastest: English 2 / 3 / 6, Chinese 1.6 / 2.5 / 5 units per second; the breath at the line's
main language). A line's *slot* is the time from its start to the next timed lyric (to the song
end for the last one). Findings (:data:`KINDS`), each on a 1-based line of the text:

``order``
    A line whose earliest timestamp is before that of the timed line above it. The engine sorts
    lines by time, so it is sung earlier than the file says.
``duplicate``
    A line whose timestamp equals an earlier line's; reported on the later one.
``overlap``
    A line whose first frame (``int(start · 44100 / 2048)``) is before the end of the previous
    sung line's tokens, counted as the engine places them: it is started late, at that end.
``dense``
    A sung line whose slot is shorter than ``time(fastest)``, i.e. sung faster than autotime's
    fastest tempo (6 English / 5 Chinese units per second, plus one unit of breath). Not
    reported when the next line is an ``overlap`` or ``duplicate`` (that names the crowding).
``sparse``
    The repeat risk (the original's authors, ASLP-lab/DiffRhythm issue #27: "if [the time
    between two sentences] is too long, it tends to repeat"): a line shorter than the shortest
    instrumental pause autotime reserves, a ``[break]`` (``time(slowest) < BREAK`` = 4 s),
    followed by more than ``BREAK`` seconds of silence before the next line
    (slot − ``time(slowest)``). Longer lines before instrumental gaps are fine (the original's
    examples have them).
``past_end``
    A line starting at or after the song's end: never sung.
``dropped_last``
    With the 95 s model, the last line starting before the end: the original drops it (see
    :mod:`.tokens`, rule 2) unless ``keep_last_line``.
``empty``
    A timestamp with no lyric: read as an instrumental marker, it places nothing.
``unsingable``
    A line the G2P cannot sing (the engine refuses the whole text); its timing is not checked.

The song's end is ``duration``, else the model's longest song; with neither, the family's longest
(285 s) and no last-line rule. :func:`fix_lrc` proposes a retimed text.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from itertools import pairwise

from rhythmflow import specs
from rhythmflow.errors import LyricsError, UsageError
from rhythmflow.lyrics.autotime import BREATH_UNITS, RATES
from rhythmflow.lyrics.lrc import LyricLine, parse_lrc_lines, split_lines
from rhythmflow.lyrics.resources import DEFAULT_ASSETS, LyricsAssets
from rhythmflow.lyrics.sections import PAUSE_SECONDS
from rhythmflow.specs import FRAME_RATE, frame_of

log = logging.getLogger(__name__)

ORDER, DUPLICATE, OVERLAP, DENSE, SPARSE = "order", "duplicate", "overlap", "dense", "sparse"
PAST_END, DROPPED_LAST, EMPTY, UNSINGABLE = "past_end", "dropped_last", "empty", "unsingable"
#: Every finding kind, in the order findings on one line are listed.
KINDS = (ORDER, DUPLICATE, OVERLAP, DENSE, SPARSE, EMPTY, PAST_END, DROPPED_LAST, UNSINGABLE)
SLOWEST, COMFORTABLE, FASTEST = 0, 1, 2  # indices into RATES[language]
BREAK = PAUSE_SECONDS["break"]
_MARGIN = 0.02  # seconds a retimed line keeps beyond its bound (centisecond rounding)
_OFFSET_TAG = re.compile(r"\s*\[\s*offset\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One problem: the 1-based ``line`` of the LRC text, its ``kind`` (:data:`KINDS`) and a
    ``message`` saying what, where and how to fix it."""

    line: int
    kind: str
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class LintReport:
    """The findings of :func:`lint_lrc`, ordered by line; ``lines``: timed lyric lines checked
    (a line with two timestamps counts twice); ``duration``: the song end used; ``model``: the
    model name the rules are for (None: any model, no last-line rule)."""

    findings: tuple[Finding, ...]
    lines: int
    duration: float
    model: str | None
    keep_last_line: bool = False

    @property
    def clean(self) -> bool:
        return not self.findings

    def of_kind(self, *kinds: str) -> list[Finding]:
        return [f for f in self.findings if f.kind in kinds]

    def to_dict(self) -> dict[str, object]:
        """JSON-able: ``findings`` (line, kind, message), ``lines``, ``duration``, ``model``,
        ``keep_last_line``, ``clean``."""
        return {"findings": [f.to_dict() for f in self.findings], "lines": self.lines,
                "duration": self.duration, "model": self.model,
                "keep_last_line": self.keep_last_line, "clean": self.clean}


@dataclass(frozen=True)
class _Entry:
    """A timed lyric with its measure: English / Chinese units, tokens (with the final period)
    and the G2P error when it cannot be sung."""

    lyric: LyricLine
    en: int = 1
    zh: int = 0
    tokens: int = 1
    error: str | None = None

    @property
    def start(self) -> float:
        return self.lyric.start

    @property
    def units(self) -> int:
        return self.en + self.zh

    def time(self, rate: int) -> float:
        """Seconds to sing the line plus a breath at rate index ``rate`` (autotime's slot)."""
        main = "zh" if self.zh > self.en else "en"
        return (self.en / RATES["en"][rate] + self.zh / RATES["zh"][rate]
                + BREATH_UNITS / RATES[main][rate])

    @property
    def need(self) -> float:
        """The shortest slot the model sings the line in (the ``dense`` bound)."""
        return self.time(FASTEST)

    def fits_before(self, start: float, nxt: float) -> bool:
        """A next line at ``nxt`` is neither dense, overlapping nor a duplicate after this one
        starting at ``start``."""
        return (nxt - start >= self.need and nxt != start
                and frame_of(nxt) >= frame_of(start) + self.tokens)


def _measure(lyric: LyricLine, assets: LyricsAssets) -> _Entry:
    from rhythmflow.lyrics.g2p import g2p_tokens
    from rhythmflow.lyrics.units import sung_units

    try:
        en, zh = sung_units(lyric.text, assets=assets)
        tokens = len(g2p_tokens(lyric.text, assets=assets)) + 1
    except LyricsError as exc:
        return _Entry(lyric, error=str(exc))
    return _Entry(lyric, en if en + zh else 1, zh, tokens)


def _song(duration: float | None, model: str | None) -> tuple[float, specs.ModelSpec | None]:
    """The song end in seconds and the model spec (None: no model given or implied)."""
    if duration is not None and (isinstance(duration, bool)
                                 or not isinstance(duration, (int, float))
                                 or not math.isfinite(duration) or duration <= 0):
        raise UsageError(f"duration must be a positive number of seconds, got {duration!r}",
                         field="duration")
    if model is not None:
        spec = specs.get_spec(model)
    elif duration is not None:
        spec = specs.model_for_duration(duration)
    else:
        return specs.FULL.max_seconds, None
    end = spec.max_seconds if duration is None else float(duration)
    spec.check_duration(end)
    return end, spec


def _stamp(seconds: float) -> str:
    """``[mm:ss.xx]`` (``.xxx`` when the time has milliseconds)."""
    ms = max(0, round(seconds * 1000))
    minutes, rest = divmod(ms, 60000)
    if ms % 10:
        return f"[{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}]"
    return f"[{minutes:02d}:{rest // 1000:02d}.{rest % 1000 // 10:02d}]"


def _ceil(seconds: float) -> float:
    """``seconds`` rounded up to a centisecond, as the LRC reader reads its stamp back."""
    stamp = _stamp(math.ceil(seconds * 100 - 1e-6) / 100)
    return int(stamp[1:3]) * 60 + float(stamp[4:-1])


def _where(e: _Entry) -> str:
    text = e.lyric.text if len(e.lyric.text) <= 40 else e.lyric.text[:37] + "..."
    return f"line {e.lyric.line} {_stamp(e.start)} {text!r}"


def _crowding(song: list[_Entry], last: _Entry | None) -> tuple[list[Finding], set[int]]:
    """``duplicate`` and ``overlap`` findings over ``song`` (time order, as the engine places
    it; ``last``: the line the 95 s model drops) and the indices of the lines they move."""
    found: list[Finding] = []
    moved: set[int] = set()
    last_end, prev = 0, None
    for i, e in enumerate(song):
        if i and e.start == song[i - 1].start:
            moved.add(i)
            first = song[i - 1]
            found.append(Finding(e.lyric.line, DUPLICATE, (
                f"{_where(e)} has the same timestamp as line {first.lyric.line}: it is sung only "
                f"after that line; give it its own time, "
                f"{_stamp(_ceil(first.start + first.need))} or later")))
        elif e is not last and prev is not None and frame_of(e.start) < last_end:
            moved.add(i)
            at = last_end / FRAME_RATE
            found.append(Finding(e.lyric.line, OVERLAP, (
                f"{_where(e)} starts before the {prev.tokens} lyric tokens of line "
                f"{prev.lyric.line} end (one per 46 ms frame, at {at:.2f} s), so the engine "
                f"starts it late; move it to {_stamp(_ceil(max(at, prev.start + prev.need)))} "
                f"or later, or line {prev.lyric.line} earlier")))
        if e is not last:
            last_end, prev = max(frame_of(e.start), last_end) + e.tokens, e
    return found, moved


def _pace(song: list[_Entry], end: float, last: _Entry | None, moved: set[int]) -> list[Finding]:
    """``dense`` and ``sparse`` findings over ``song`` (as :func:`_crowding`)."""
    found: list[Finding] = []
    for i, e in enumerate(song):
        if e is last:
            continue
        nxt = song[i + 1] if i + 1 < len(song) else None
        slot = (nxt.start if nxt else end) - e.start
        if slot < e.need and (i + 1) not in moved:
            until = f"line {nxt.lyric.line} at {_stamp(nxt.start)}" if nxt else \
                f"the song ends at {end:g} s"
            fix = (f"move line {nxt.lyric.line} to {_stamp(_ceil(e.start + e.need))} or later"
                   if nxt else f"start it by {_stamp(math.floor((end - e.need) * 100) / 100)}")
            found.append(Finding(e.lyric.line, DENSE, (
                f"{_where(e)} has {e.units} sung units in {slot:.2f} s before {until} "
                f"({e.units / max(slot, 1e-9):.1f} units/s); the model sings at most "
                f"{RATES['en'][FASTEST]:g} English / {RATES['zh'][FASTEST]:g} Chinese units per "
                f"second plus a breath, {e.need:.2f} s for this line: {fix}, or shorten it")))
        sung = e.time(SLOWEST)
        if nxt is not None and sung < BREAK and slot - sung > BREAK:
            found.append(Finding(e.lyric.line, SPARSE, (
                f"{_where(e)} is short ({e.units} sung units, {sung:.1f} s even at the slowest "
                f"tempo) and {slot - sung:.1f} s of silence follow before line "
                f"{nxt.lyric.line} at {_stamp(nxt.start)}; the model tends to repeat a line "
                f"before a long gap: move this line to {_stamp(_ceil(nxt.start - sung - BREAK))}"
                f" or later, start line {nxt.lyric.line} earlier, or add words")))
    return found


def _order(entries: list[_Entry]) -> list[Finding]:
    """``order`` findings: each file line's earliest timestamp against the timed line above."""
    firsts: dict[int, float] = {}
    for e in entries:
        firsts[e.lyric.line] = min(e.start, firsts.get(e.lyric.line, math.inf))
    found: list[Finding] = []
    for (above, t_above), (line, t) in pairwise(sorted(firsts.items())):
        if t < t_above:
            found.append(Finding(line, ORDER, (
                f"line {line} {_stamp(t)} comes after line {above} {_stamp(t_above)} but starts "
                "earlier: lines are sung in time order, so it is sung before it; fix its "
                "timestamp or move the line")))
    return found


def lint_lrc(text: str, *, duration: float | None = None, model: str | None = None,
             keep_last_line: bool = False, assets: LyricsAssets = DEFAULT_ASSETS) -> LintReport:
    """Lint LRC ``text`` for ``model`` (a name or alias of :data:`~rhythmflow.specs.MODELS`) and
    a song of ``duration`` seconds (module docstring). Raises LrcError for text the LRC reader
    rejects (naming the line), UsageError for a bad duration / model or a combination the
    engine refuses, DependencyError / AssetError when the G2P is missing. Never writes files."""
    end, spec = _song(duration, model)
    lyrics, _ = parse_lrc_lines(text)
    found = [Finding(x.line, EMPTY, (
        f"line {x.line} {_stamp(x.start)} has a timestamp but no lyric: it sings nothing (read "
        "as an instrumental marker; the original fails on it); write the lyric after the "
        "timestamp or remove the line")) for x in lyrics if not x.text]
    entries = [_measure(x, assets) for x in lyrics if x.text]
    found += _order(entries)
    found += [Finding(e.lyric.line, UNSINGABLE, f"line {e.lyric.line}: {e.error}")
              for e in entries if e.error]
    ok = [e for e in entries if not e.error]
    song = [e for e in ok if e.start < end]
    where = f"the {spec.name} model's" if spec else "the longest"
    found += [Finding(e.lyric.line, PAST_END, (
        f"{_where(e)} starts at or after the end of {where} {end:g} s song and is not sung; "
        + (f"remove it or move it before {end:g} s" if end >= specs.FULL.max_seconds else
           f"remove it, or make the song longer (a full model sings up to "
           f"{specs.FULL.max_seconds:g} s)"))) for e in ok if e.start >= end]
    last = None
    if spec is not None and spec.max_frames == specs.BASE_FRAMES and song and not keep_last_line:
        last = song[-1]
        found.append(Finding(last.lyric.line, DROPPED_LAST, (
            f"{_where(last)} is the last line, which the 95 s model does not sing (the original "
            "DiffRhythm drops it); set keep_last_line to sing it, or end the lyrics with a line "
            "you can spare")))
    crowded, moved = _crowding(song, last)
    found += crowded + _pace(song, end, last, moved)
    found.sort(key=lambda f: (f.line, KINDS.index(f.kind)))
    log.debug("lint: %d timed lines, %d findings", len(entries), len(found))
    return LintReport(tuple(found), len(entries), end, spec.name if spec else None,
                      keep_last_line)


def _retime(song: list[_Entry], end: float) -> list[float]:
    """New start times for ``song`` (time order, all before ``end``). Lines whose previous line
    fits before them (:meth:`_Entry.fits_before`) are anchors and keep their time; the lines
    after an anchor follow it at the comfortable tempo, or faster (down to each line's
    ``room``) where the next anchor is nearer; a window too short for its lines at ``room``
    swallows the next anchor. Then lines too close to the end, and those before them that no longer fit, are pulled
    earlier by as little as needed."""
    n = len(song)
    x = [e.start for e in song]
    room = [max(e.need, e.tokens / FRAME_RATE) + _MARGIN for e in song]
    comfy = [max(r, e.time(COMFORTABLE)) for r, e in zip(room, song, strict=True)]
    anchors = [0] + [i for i in range(1, n) if song[i - 1].fits_before(x[i - 1], x[i])]
    j = 0
    while j < len(anchors):
        s = anchors[j]
        e = anchors[j + 1] if j + 1 < len(anchors) else n
        if e == s + 1:  # an anchor followed by an anchor: it fits as it is
            j += 1
            continue
        if e < n and x[s] + sum(room[s:e]) > x[e]:
            anchors.pop(j + 1)
            continue
        extra = [c - r for r, c in zip(room[s:e], comfy[s:e], strict=True)]
        if e < n and sum(extra) > 0:  # less than the comfortable tempo needs: share the slack
            scale = min(1.0, (x[e] - x[s] - sum(room[s:e])) / sum(extra))
            extra = [d * scale for d in extra]
        for i in range(s + 1, e):
            x[i] = x[i - 1] + room[i - 1] + extra[i - 1 - s]
        j += 1
    limit = end
    for i in reversed(range(n)):
        crowded = (x[i] + song[i].need > end if i == n - 1
                   else not song[i].fits_before(x[i], x[i + 1]))
        if crowded:
            x[i] = min(x[i], limit - room[i])
        limit = x[i]
    if n and x[0] < 0:  # more lyrics than the song holds: pack them from the start
        x[0] = 0.0
        for i in range(1, n):
            if not song[i - 1].fits_before(x[i - 1], x[i]):
                x[i] = x[i - 1] + room[i - 1]
    return x


def _settle(song: list[_Entry], x: list[float]) -> list[float]:
    """``x`` as the LRC reader reads the written times back, nudged by centiseconds where a
    rounded time would crowd the previous line."""
    out: list[float] = []
    for i, e in enumerate(song):
        t = e.start if x[i] == e.start else _ceil(x[i])
        for _ in range(1000):
            if not out or song[i - 1].fits_before(out[-1], t):
                break
            t = _ceil(t + 0.005)
        out.append(t)
    return out


def fix_lrc(text: str, *, duration: float | None = None, model: str | None = None,
            assets: LyricsAssets = DEFAULT_ASSETS) -> str:
    """A proposed retiming of LRC ``text`` (arguments as :func:`lint_lrc`): lines in time order,
    one timestamp each; lines whose timing is plausible keep their time; crowded lines
    (``dense``, ``overlap``, ``duplicate``) are spread by :func:`_retime`; timestamps without a
    lyric are dropped; an ``[offset:]`` tag is applied to the times and removed. Untimed lines
    before the first timed line stay on top, other untimed lines (section headers, blank lines)
    move with the timed line below them. Lines at or after the end keep their times. Where the
    lyrics fit in the song, the result has no ``dense``, ``order``, ``overlap`` or ``duplicate``
    finding. Raises as :func:`lint_lrc`, and LyricsError for a line that cannot be sung."""
    end, _ = _song(duration, model)
    lyrics, _ = parse_lrc_lines(text)
    entries = [_measure(x, assets) for x in lyrics if x.text]
    for e in entries:
        if e.error:
            raise LyricsError(f"LRC line {e.lyric.line}: {e.error}", field="lrc",
                              line=e.lyric.line)
    song = [e for e in entries if e.start < end]
    times = _settle(song, _retime(song, end))
    for e in entries[len(song):]:  # past the end: kept, only made distinct
        times.append(e.start if not times or e.start > times[-1] else _ceil(times[-1] + 0.005))
    return _write(text, {x.line for x in lyrics}, list(zip(times, entries, strict=True)))


def _write(text: str, timed_lines: set[int], placed: list[tuple[float, _Entry]]) -> str:
    """The LRC of ``placed`` (time, entry) with ``text``'s untimed lines (see :func:`fix_lrc`);
    ``timed_lines``: the line numbers holding a timestamp, with or without a lyric."""
    raw = split_lines(text)
    with_text = {e.lyric.line for _, e in placed}
    header: list[str] | None = None
    blocks: dict[int, list[str]] = {}
    pending: list[str] = []
    for no, line in enumerate(raw, start=1):
        if no in with_text:
            if header is None:
                header = pending
            else:
                blocks[no] = pending
            pending = []
        elif no not in timed_lines and not _OFFSET_TAG.match(line):
            pending.append(line)
    out = list(header or [])
    for t, e in sorted(placed, key=lambda p: p[0]):
        out += blocks.pop(e.lyric.line, [])
        out.append(_stamp(t) + e.lyric.text)
    out += pending
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n" if out else ""


__all__ = ["KINDS", "Finding", "LintReport", "fix_lrc", "lint_lrc"]
