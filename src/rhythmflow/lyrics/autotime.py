"""Plain or sectioned lyrics + a song duration → a timed LRC, deterministically.

Input: see :mod:`rhythmflow.lyrics.sections` (one sung line per text line, blank lines between
stanzas, ``[verse]``/``[chorus]``/``【副歌】``… markers that are never sung).

Timing model
------------
* **Sung units** of a line ``u``: English syllables (counted from the phonemes our G2P makes)
  + Chinese characters, see :mod:`rhythmflow.lyrics.units`. At least 1 per line.
* **Beat** ``b``: seconds per unit, the song's tempo. A line's *slot* (its start to the next
  line's start in the same stanza) is ``(u + 1) · b`` — its units plus one unit of breath — but
  never shorter than the frames its tokens occupy in the model's lyric track plus two frames
  (``(tokens + 2) / FRAME_RATE``), so no line pushes the next one back.
* **Stanza gap**: ``GAP_BEATS · b`` extra between stanzas (a blank line or a sung-section marker).
* **Pauses** (seconds, scaled together by a factor ``p``): the lead-in ``intro`` before the first
  line; the instrumental time a marker reserves (``[intro]``/``[instrumental]`` 8 s, ``[break]``
  4 s; it replaces the stanza gap at its place); ``[outro]`` markers reserve 8 s after the last
  line; then ``outro`` seconds of ending.
* **Filling the duration** ``D``: with ``b`` between ``1/max_rate`` and ``1/min_rate`` (per
  language, :data:`RATES`):

  1. lyrics too few even at the slowest tempo: ``b = 1/min_rate``; the leftover time lengthens
     every pause except the lead-in (the song ends with a long instrumental);
  2. otherwise ``b`` is solved so that the song fills ``D`` exactly with ``p = 1``;
  3. lyrics too dense at the fastest tempo: ``b = 1/max_rate`` and the pauses shrink
     (``p`` down to :data:`MIN_PAUSE_SCALE`), with a warning that suggests a duration;
  4. still too many: the last lines are dropped (a warning names each one and suggests the
     duration the whole text needs at the comfortable rate); none fitting is a UsageError.

Times are written as ``[mm:ss.xx]`` and nudged up by centiseconds where needed so that each
line's first frame is at or after the previous line's last token. The result is checked with
:func:`~rhythmflow.lyrics.tokens.lrc_to_track` (the code LRC input goes through): every line
places all its tokens at its own frame, inside the song. Section markers and blank lines are
copied to the LRC as untimed lines, which LRC readers skip.

The 95 s model drops the last LRC line (rule 2 of :mod:`~rhythmflow.lyrics.tokens`); an empty
marker line cannot absorb that rule. So the LRC holds exactly the given lines and
``AutotimeResult.last_line_rule`` says the rule applies: plain ``lyrics`` keep the last line;
an LRC from ``rhythmflow lrc`` needs ``keep_last_line``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from rhythmflow import specs
from rhythmflow.errors import LyricsError, UsageError
from rhythmflow.lyrics.lrc import parse_lrc
from rhythmflow.lyrics.resources import DEFAULT_ASSETS, LyricsAssets
from rhythmflow.lyrics.sections import Blank, Item, Marker, PlainLine, parse_plain
from rhythmflow.lyrics.tokens import end_frame_for, frame_of, lrc_to_track
from rhythmflow.lyrics.units import sung_units
from rhythmflow.specs import BASE_FRAMES, FRAME_RATE

log = logging.getLogger(__name__)

#: Sung units per second (slowest, comfortable, fastest) per language. Heuristics: ordinary
#: pop sits around the comfortable rate, fast rap near the fastest.
RATES: dict[str, tuple[float, float, float]] = {"en": (2.0, 3.0, 6.0), "zh": (1.6, 2.5, 5.0)}
BREATH_UNITS = 1.0  # rest after each line, in units
GAP_BEATS = 4.0  # extra beats between stanzas
SLACK_FRAMES = 2  # frames beyond a line's tokens before the next line may start
MIN_PAUSE_SCALE = 0.5  # pauses shrink at most to this fraction before lines are dropped
INTRO_SECONDS = 6.0
OUTRO_SECONDS = 6.0


@dataclass(frozen=True)
class TimedLine:
    """A kept lyric line: ``start`` seconds (as the LRC reader reads it back), its first latent
    ``frame``, sung ``units``, ``tokens`` in the lyric track (with the final period), input
    ``line`` number and ``text``."""

    text: str
    line: int
    start: float
    frame: int
    units: int
    tokens: int


@dataclass(frozen=True)
class AutotimeResult:
    """What :func:`time_lyrics` produced and decided.

    ``lrc``: the LRC text; ``lines``: the kept lines in order; ``dropped``: lines that did not fit
    (in order); ``warnings``: messages for the user; ``beat``: seconds per sung unit;
    ``pause_scale``: factor applied to the nominal pauses; ``suggested_duration``: seconds the
    whole text needs at the comfortable rate (set when the tempo was forced or lines dropped);
    ``last_line_rule``: the 95 s model's last-line rule applies (see the module docstring).
    """

    lrc: str
    lines: tuple[TimedLine, ...]
    dropped: tuple[PlainLine, ...]
    warnings: tuple[str, ...]
    duration: float
    max_frames: int
    language: str
    beat: float
    pause_scale: float
    suggested_duration: int | None
    last_line_rule: bool

    def summary(self) -> dict:
        """What a sidecar / plan records of the timing (JSON-able)."""
        return {"lrc": self.lrc, "language": self.language,
                "units_per_second": round(1 / self.beat, 3),
                "pause_scale": round(self.pause_scale, 3),
                "dropped": [{"line": x.line, "text": x.text} for x in self.dropped],
                "warnings": list(self.warnings)}


@dataclass(frozen=True)
class _Line:
    src: PlainLine
    units: int
    tokens: int
    before_beats: float  # stanza gap before the line, in beats
    before_pause: float  # nominal pause seconds before the line (replaces the gap)

    def slot(self, beat: float) -> float:
        return max((self.units + BREATH_UNITS) * beat, (self.tokens + SLACK_FRAMES) / FRAME_RATE)


@dataclass(frozen=True)
class _Layout:
    """The first ``len(lines)`` lines with their gaps and pauses; ``tail``: nominal pause
    seconds after the last line (``[outro]`` markers and trailing instrumental markers)."""

    lines: tuple[_Line, ...]
    tail: float

    def sung(self, beat: float) -> float:
        return sum(x.slot(beat) + x.before_beats * beat for x in self.lines)

    def pauses(self) -> float:
        return sum(x.before_pause for x in self.lines) + self.tail


def _measure(items: Sequence[Item],
             assets: LyricsAssets) -> tuple[list[_Line], float, int, int]:
    """Lines with units/tokens/gaps, the tail pause of the whole text, and the English / Chinese
    unit totals. LyricsError names the input line that cannot be sung or written as LRC."""
    from rhythmflow.lyrics.g2p import g2p_tokens

    lines: list[_Line] = []
    gap = pause = tail = 0.0
    en_total = zh_total = 0
    for item in items:
        if isinstance(item, Marker):
            if item.kind == "outro":
                tail += item.pause
                gap = GAP_BEATS
            elif item.pause:
                pause += item.pause
            else:
                gap = GAP_BEATS
        elif isinstance(item, Blank):
            gap = GAP_BEATS
        else:
            text = item.text
            back = parse_lrc("[00:00.00]" + text)
            if [x.text for x in back] != [text]:
                raise LyricsError(
                    f"line {item.line} ({text!r}) contains LRC timing syntax that would change "
                    "when read back; remove the [mm:ss] / <mm:ss> tags from it"
                )
            try:
                en, zh = sung_units(text, assets=assets)
                tokens = len(g2p_tokens(text, assets=assets)) + 1  # + the period the placement appends
            except LyricsError as exc:
                raise LyricsError(f"line {item.line} ({text!r}): {exc}") from exc
            en_total, zh_total = en_total + en, zh_total + zh
            first = not lines
            lines.append(
                _Line(item, max(1, en + zh), tokens, 0.0 if first or pause else gap, pause)
            )
            gap = pause = 0.0
    return lines, tail + pause, en_total, zh_total


def _solve_beat(layout: _Layout, target: float, lo: float, hi: float) -> float:
    """The beat in [lo, hi] whose sung time is ``target`` (sung time increases with the beat)."""
    for _ in range(80):
        mid = (lo + hi) / 2
        if layout.sung(mid) > target:
            hi = mid
        else:
            lo = mid
    return lo


def _lrc_time(cs: int) -> tuple[str, float]:
    """``[mm:ss.xx]`` for ``cs`` centiseconds and the seconds the LRC reader computes from it."""
    minutes, rest = divmod(cs, 6000)
    tag = f"{minutes:02d}:{rest // 100:02d}.{rest % 100:02d}"
    return f"[{tag}]", minutes * 60 + float(tag[3:])


def _check_arguments(duration, max_frames, intro, outro, language) -> int:
    """Validate the arguments; returns ``max_frames`` (defaulted from the duration)."""
    for name, value in (("duration", duration), ("intro", intro), ("outro", outro)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
            or (name == "duration" and value == 0)
        ):
            kind = "positive" if name == "duration" else "non-negative"
            raise UsageError(f"{name} must be a {kind} number of seconds, got {value!r}")
    if language not in (None, *RATES):
        raise UsageError(
            f"language must be one of {sorted(RATES)} or None (detect), got {language!r}"
        )
    if max_frames is None:
        max_frames = specs.model_for_duration(duration).max_frames
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise UsageError(f"max_frames must be a positive integer, got {max_frames!r}")
    if duration >= 6000:  # LRC minutes have two digits
        raise UsageError(f"duration {duration:g} s does not fit LRC times (below 100 minutes)")
    if duration > max_frames / FRAME_RATE:
        raise UsageError(
            f"duration {duration:g} s is longer than the model's {max_frames} frames "
            f"({max_frames / FRAME_RATE:.1f} s); pass a shorter duration"
        )
    return max_frames


def _suggestion(needed: float) -> str:
    longest = specs.FULL.max_seconds
    if needed > longest:
        return (
            f"the whole text needs about {needed:.0f} s, more than the longest song "
            f"({longest:.0f} s): split it into several songs or shorten it"
        )
    return f"the whole text needs about {needed:.0f} s: set duration={needed:.0f} or shorten it"


def _describe(lines: Sequence[PlainLine]) -> str:
    def short(t: str) -> str:
        return t if len(t) <= 40 else t[:37] + "..."

    return ", ".join(f"line {x.line} {short(x.text)!r}" for x in lines)


def time_lyrics(
    text: str,
    duration: float,
    *,
    language: str | None = None,
    max_frames: int | None = None,
    intro: float = INTRO_SECONDS,
    outro: float = OUTRO_SECONDS,
    assets: LyricsAssets = DEFAULT_ASSETS,
) -> AutotimeResult:
    """Time plain or sectioned lyrics for a song of ``duration`` seconds (module docstring).

    ``language``: ``"en"``, ``"zh"`` or None (the language with more sung units) picks the
    :data:`RATES`. ``max_frames``: the model's frame count (default: the 95 s model up to its
    length, else the full model). ``intro``/``outro``: lead-in and ending seconds.
    Raises UsageError for bad arguments or lyrics none of which fit; LrcError for text that is
    already LRC; LyricsError for empty lyrics or naming the input line that cannot be sung;
    DependencyError/AssetError when the G2P is missing (its files are read from ``assets``).
    Never writes files.
    """
    max_frames = _check_arguments(duration, max_frames, intro, outro, language)
    items = parse_plain(text)
    markers = [x for x in items if isinstance(x, Marker)]
    lines, all_tail, en, zh = _measure(items, assets)
    if not lines and not markers:
        raise LyricsError(
            "the lyrics are empty: write one sung line per line (blank lines "
            "between stanzas), or generate without lyrics for an instrumental"
        )
    lang = language or ("zh" if zh > en else "en")
    slowest, comfortable, fastest = RATES[lang]
    b_min, b_max = 1 / fastest, 1 / slowest
    # Lines start before the duration and end (tokens included) before the track's last frame.
    limit = min(float(duration), end_frame_for(max_frames, duration) / FRAME_RATE)
    outro_tail = sum(m.pause for m in markers if m.kind == "outro")

    def layout(k: int) -> _Layout:
        return _Layout(tuple(lines[:k]), all_tail if k == len(lines) else outro_tail)

    def fixed(lay: _Layout) -> float:
        return intro + lay.pauses() + outro

    full = layout(len(lines))
    needed = fixed(full) + full.sung(1 / comfortable)

    def fits(k: int) -> bool:  # at the fastest tempo and shortest pauses; monotone in k
        return layout(k).sung(b_min) + MIN_PAUSE_SCALE * fixed(layout(k)) <= limit

    k = len(lines)
    if not fits(k):  # keep the longest prefix that fits (binary search)
        lo, hi = 0, k - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        k = lo
    if lines and not k:
        raise UsageError(f"none of the lyrics fit in {duration:g} s; {_suggestion(needed)}")
    dropped = tuple(x.src for x in lines[k:])
    warnings: list[str] = []
    suggested = math.ceil(needed) if dropped else None
    if dropped:
        warnings.append(
            f"{len(dropped)} line(s) do not fit in {duration:g} s and were dropped: "
            f"{_describe(dropped)}; {_suggestion(needed)}"
        )
    lay = layout(k)
    beat, lead_scale, pause_scale = b_max, 1.0, 1.0
    if lay.sung(b_max) + fixed(lay) <= limit:  # few lyrics: slowest tempo, longer pauses
        stretchable = fixed(lay) - intro
        if stretchable > 0:
            pause_scale = 1 + (limit - lay.sung(b_max) - fixed(lay)) / stretchable
        if lines:
            log.info("few lyrics for %g s: slowest tempo, the rest is instrumental", duration)
    elif lay.sung(b_min) + fixed(lay) <= limit:  # the tempo that fills the song
        beat = _solve_beat(lay, limit - fixed(lay), b_min, b_max)
    else:  # dense: fastest tempo, shorter pauses
        beat = b_min
        lead_scale = pause_scale = (limit - lay.sung(b_min)) / fixed(lay)
        if lines and not dropped:
            suggested = math.ceil(needed)
            warnings.append(
                f"the lyrics are dense for {duration:g} s: sung at the fastest rate "
                f"with shortened pauses; {_suggestion(needed)}"
            )
    if not lines:
        warnings.append("no lines to sing (section markers only): the song is instrumental")
    timed = _place(lay, beat, intro * lead_scale, pause_scale)
    lrc = _write_lrc(items, timed, complete=not dropped)
    _verify(lrc, timed, max_frames, float(duration), assets)
    for message in warnings:
        log.debug("%s", message)  # returned in the result; front ends show them
    return AutotimeResult(
        lrc,
        tuple(timed),
        dropped,
        tuple(warnings),
        float(duration),
        max_frames,
        lang,
        beat,
        pause_scale,
        suggested,
        max_frames == BASE_FRAMES,
    )


def _place(layout: _Layout, beat: float, lead: float, pause_scale: float) -> list[TimedLine]:
    """Start times (rounded to centiseconds, nudged so no line pushes the next one back)."""
    timed: list[TimedLine] = []
    t = lead
    next_frame = 0
    for x in layout.lines:
        t += x.before_pause * pause_scale + x.before_beats * beat
        cs = max(0, round(t * 100))
        tag_seconds = _lrc_time(cs)[1]
        for _ in range(16):  # at most a few centiseconds per missing frame
            if frame_of(tag_seconds) >= next_frame:
                break
            cs += 1
            tag_seconds = _lrc_time(cs)[1]
        frame = frame_of(tag_seconds)
        timed.append(TimedLine(x.src.text, x.src.line, tag_seconds, frame, x.units, x.tokens))
        next_frame = frame + x.tokens
        t = max(t, tag_seconds) + x.slot(beat)
    return timed


def _write_lrc(items: Sequence[Item], timed: Sequence[TimedLine], complete: bool) -> str:
    """The LRC text: timed lines, markers and stanza breaks as untimed lines, in input order;
    after the last kept line only what follows it in a complete text (else ``[outro]`` markers)."""
    by_line = {(t.line, t.text): t for t in timed}
    last = timed[-1].line if timed else None
    out: list[str] = []
    for item in items:
        after = last is not None and item.line > last
        if after and not complete and not (isinstance(item, Marker) and item.kind == "outro"):
            continue
        if isinstance(item, Blank):
            out.append("")
        elif isinstance(item, Marker):  # a header LRC readers (and ours) skip without a warning
            bracketed = item.text.startswith("[") and item.text.endswith("]") or (
                item.text.startswith("【") and item.text.endswith("】"))
            out.append(item.text if bracketed else f"[{item.text}]")
        elif (item.line, item.text) in by_line:
            t = by_line[(item.line, item.text)]
            out.append(_lrc_time(round(t.start * 100))[0] + t.text)
    return "\n".join(out).strip("\n") + "\n" if out else ""


def _verify(lrc: str, timed: Sequence[TimedLine], max_frames: int, duration: float,
            assets: LyricsAssets) -> None:
    """Internal invariant: the LRC reads back to exactly ``timed`` and places every token."""
    back = parse_lrc(lrc)
    if not timed:  # markers only: an instrumental (run conditions on no lyrics at all)
        if back:
            raise RuntimeError(f"autotime timed lines it did not plan (a bug): {lrc!r}")
        return
    track = lrc_to_track(lrc, max_frames=max_frames, audio_length=duration, keep_last_line=True,
                         assets=assets)
    got = [(x.text, x.start) for x in back]
    want = [(t.text, t.start) for t in timed]
    placed = [(p.line.text, p.frame_start, p.frame_len) for p in track.placed]
    ok = (
        got == want
        and not track.dropped
        and not track.truncated
        and placed == [(t.text, t.frame, t.tokens) for t in timed]
    )
    if not ok:
        raise RuntimeError(
            f"autotime produced an LRC that does not place as planned (a bug; "
            f"please report it): {lrc!r}"
        )


def autotime(text: str, duration: float, **options) -> str:
    """The timed LRC of :func:`time_lyrics` (same ``options``; its warnings are dropped: use
    :func:`time_lyrics` to see them)."""
    return time_lyrics(text, duration, **options).lrc


__all__ = ["AutotimeResult", "TimedLine", "autotime", "time_lyrics"]
