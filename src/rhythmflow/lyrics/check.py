"""Were the lyrics sung? Each line's window is transcribed and scored by phoneme error rate.

Both sides go through rhythmflow's own G2P (:mod:`.g2p`), so English and Chinese are scored
alike: the lyric line and the recogniser's transcript become phone sequences (the ``|``-separated
phones of :func:`~rhythmflow.lyrics.g2p.g2p_phonemes` without word breaks, punctuation and
Mandarin tone marks — a sung melody overrides lexical tone, and a recogniser's choice between
homophones must not count), and the line's PER is their Levenshtein distance divided by the
line's phone count, capped at 1 (a line is never worse than missing).

Verdicts (thresholds on one line):

``missing``
    the transcript has fewer than :data:`MISSING_HEARD` (25 %) as many phones as the line:
    next to nothing was recognised in its window.
``sung``
    PER <= :data:`SUNG_MAX_PER` (0.5). Sung words are recognised far worse than speech (held
    vowels, melody, the mix): a correctly sung line through a small Whisper commonly scores
    0.2–0.4, while a wrong, skipped or mumbled line scores above 0.6; 0.5 sits between.
``garbled``
    anything else: something was sung there, but not this line's words.

The song's PER is the sum of the lines' capped edit counts over the sum of their phone counts.

Windows: a sung line's *region* runs from its first latent frame to the next line's first frame
(the last line: :data:`LAST_REGION_SECONDS` at most, to the song end); its *window* adds
:data:`WINDOW_MARGIN` seconds on each side (a singer starts early or holds the last note). The
window is cut out of the song, mixed to mono and resampled to 16 kHz, and handed to a
*recogniser*: any callable ``(wav16k float32 [n], Window) -> str``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rhythmflow.errors import LyricsError
from rhythmflow.lyrics.lrc import parse_lrc_lines
from rhythmflow.lyrics.resources import DEFAULT_ASSETS, LyricsAssets
from rhythmflow.specs import FRAME_RATE, frame_of

log = logging.getLogger(__name__)

ASR_SAMPLE_RATE = 16000
WINDOW_MARGIN = 0.5  # seconds before and after a line's region
LAST_REGION_SECONDS = 10.0
SUNG_MAX_PER = 0.5
MISSING_HEARD = 0.25
VERDICTS = ("sung", "garbled", "missing")
_TONES = str.maketrans("", "", "↑↓→")


@dataclass(frozen=True)
class SungLine:
    """A lyric line as the song was conditioned on it: ``line`` its 1-based line number in the
    song's ``.lrc``, ``start_frame``/``end_frame`` the latent frames of its tokens
    (:class:`~rhythmflow.lyrics.tokens.Placement`), ``source_line`` its line in the request's
    LRC (None when unknown)."""

    line: int
    text: str
    start_frame: int
    end_frame: int
    source_line: int | None = None
    start: float | None = None  # the LRC timestamp, seconds (its frame may be pushed later)

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "text": self.text, "start_frame": self.start_frame,
                "end_frame": self.end_frame, "source_line": self.source_line,
                "start": self.start}

    @classmethod
    def from_dict(cls, d: dict) -> SungLine:
        return cls(int(d["line"]), str(d["text"]), int(d["start_frame"]), int(d["end_frame"]),
                   d.get("source_line"), d.get("start"))


@dataclass(frozen=True)
class Window:
    """What a recogniser is told about one window: the ``.lrc`` ``line``, ``start``/``end`` in
    seconds of the song, and ``lang`` (``en`` or ``zh``, the line's main script)."""

    line: int
    start: float
    end: float
    lang: str


Recognizer = Callable[[np.ndarray, Window], str]


@dataclass(frozen=True)
class LineCheck:
    """One line's score: ``per`` in [0, 1], ``verdict`` (:data:`VERDICTS`), what was ``heard``,
    its window, and the edit count and phone count the song's PER sums."""

    line: int
    text: str
    per: float
    verdict: str
    heard: str
    start: float
    end: float
    errors: int
    phones: int

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "text": self.text, "per": round(self.per, 4),
                "verdict": self.verdict, "heard": self.heard, "start": round(self.start, 3),
                "end": round(self.end, 3)}


@dataclass(frozen=True)
class CheckReport:
    """Every checked line, and the whole song's PER (``rhythmflow check --json``)."""

    lines: tuple[LineCheck, ...]

    @property
    def per(self) -> float:
        total = sum(c.phones for c in self.lines)
        return sum(c.errors for c in self.lines) / total if total else 0.0

    def of_line(self, line: int) -> LineCheck | None:
        return next((c for c in self.lines if c.line == line), None)

    def to_dict(self) -> dict[str, object]:
        return {"lines": [c.to_dict() for c in self.lines], "per": round(self.per, 4),
                "thresholds": {"sung_max_per": SUNG_MAX_PER, "missing_heard": MISSING_HEARD}}


def sung_lines(track, *, renumber: bool) -> list[SungLine]:
    """The placed lines of a :class:`~rhythmflow.lyrics.tokens.LyricsTrack`. ``renumber``: line
    k of the song's ``.lrc`` is the k-th placed line (the ``.lrc`` is :func:`sung_lrc`); else the
    ``.lrc`` is the LRC the track was made from and keeps its line numbers."""
    return [SungLine(k if renumber else p.line.line, p.line.text, p.frame_start,
                     p.frame_start + p.frame_len, p.line.line, p.line.start)
            for k, p in enumerate(track.placed, start=1)]


def frame_stamp(frame: int, seconds: float | None = None) -> str:
    """``[mm:ss.xx]``: ``seconds`` rounded to a centisecond where that falls in latent
    ``frame``, else the first centisecond that does."""
    cs = None if seconds is None else round(seconds * 100)
    if cs is None or frame_of(cs / 100) != frame:
        cs = math.ceil(frame / FRAME_RATE * 100 - 1e-9)
        while frame_of(cs / 100) < frame:
            cs += 1
    minutes, rest = divmod(cs, 6000)
    return f"[{minutes:02d}:{rest // 100:02d}.{rest % 100:02d}]"


def sung_lrc(lines: Sequence[SungLine]) -> str:
    """The LRC of ``lines``, one per line in order (line k = ``lines[k-1]``), each stamped at the
    frame it was sung from (after any push past an overlap)."""
    return "".join(f"{frame_stamp(x.start_frame, x.start)}{x.text}\n" for x in lines)


def lines_of_lrc(text: str) -> list[SungLine]:
    """The timed lyric lines of an LRC text (a song's ``.lrc``) with their file line numbers;
    start frames from the timestamps (token ends unknown: ``end_frame = start_frame``)."""
    lyrics, _ = parse_lrc_lines(text)
    return [SungLine(x.line, x.text, frame_of(x.start), frame_of(x.start), x.line, x.start)
            for x in lyrics if x.text]


def regions(lines: Sequence[SungLine], total_frames: int) -> list[tuple[int, int]]:
    """Each line's ``[start, end)`` latent frames: to the next line's start (the last line: up to
    :data:`LAST_REGION_SECONDS`, at least its tokens, within the song)."""
    out = []
    for i, x in enumerate(lines):
        if i + 1 < len(lines):
            end = max(lines[i + 1].start_frame, x.start_frame + 1)
        else:
            end = max(x.end_frame, x.start_frame + round(LAST_REGION_SECONDS * FRAME_RATE))
        out.append((x.start_frame, max(x.start_frame + 1, min(end, total_frames))))
    return out


def line_language(text: str) -> str:
    """``zh`` when a line has more Chinese characters than English letters, else ``en``."""
    from rhythmflow.lyrics.g2p import EN, ZH, char_language

    kinds = [char_language(ch) for ch in text]
    return "zh" if kinds.count(ZH) > kinds.count(EN) else "en"


def phones(text: str, *, assets: LyricsAssets = DEFAULT_ASSETS) -> list[str]:
    """The phones scored for ``text`` (module docstring). A transcript is first cut to what the
    G2P reads (English and Chinese letters, digits, apostrophes); text without any letter it
    can sing has no phones."""
    from rhythmflow.lyrics.g2p import EN, OTHER, ZH, char_language, g2p_phonemes

    kept = "".join(ch if char_language(ch) in (EN, ZH) or ch.isdigit() or ch == "'" else " "
                   for ch in text)
    words = " ".join(kept.split())
    if not any(char_language(ch) != OTHER for ch in words):
        return []
    try:
        string = g2p_phonemes(words, assets=assets)
    except LyricsError:  # e.g. digits the English G2P cannot read: keep the letters only
        letters = " ".join("".join(ch if not ch.isdigit() else " " for ch in words).split())
        string = g2p_phonemes(letters, assets=assets) if letters else ""
    out = [p.translate(_TONES) for p in string.split("|")]
    return [p for p in out if any(ch.isalpha() for ch in p)]


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance (substitution, insertion, deletion each 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i]
        for j, y in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def score_line(reference: Sequence[str], heard: Sequence[str]) -> tuple[float, int, str]:
    """(PER capped at 1, capped edit count, verdict) of a line's phones and a transcript's."""
    n = max(len(reference), 1)
    errors = min(edit_distance(reference, heard), n)
    per = errors / n
    if len(heard) < MISSING_HEARD * len(reference):
        verdict = "missing"
    else:
        verdict = "sung" if per <= SUNG_MAX_PER else "garbled"
    return per, errors, verdict


def window_audio(audio: np.ndarray, sample_rate: int, start: float, end: float) -> np.ndarray:
    """``audio`` ``[c, s]`` between ``start`` and ``end`` seconds as float32 16 kHz mono."""
    from rhythmflow.audio.io import resample

    a, b = int(start * sample_rate), int(end * sample_rate)
    mono = np.asarray(audio[:, a:b], dtype=np.float32).mean(axis=0, keepdims=True)
    if sample_rate != ASR_SAMPLE_RATE:
        mono = resample(mono, sample_rate, ASR_SAMPLE_RATE)
    return np.ascontiguousarray(mono[0], dtype=np.float32)


def check_audio(audio: np.ndarray, sample_rate: int, lines: Sequence[SungLine],
                recognizer: Recognizer, *, only: Iterable[int] | None = None,
                assets: LyricsAssets = DEFAULT_ASSETS) -> CheckReport:
    """Transcribe and score every line of ``lines`` sung in ``audio`` ``[c, s]`` (or those whose
    ``line`` is in ``only``). Raises what the recogniser raises."""
    seconds = audio.shape[-1] / sample_rate
    total = max(1, int(seconds * FRAME_RATE))
    wanted = None if only is None else set(only)
    found: list[LineCheck] = []
    for x, (a, b) in zip(lines, regions(lines, total), strict=True):
        if wanted is not None and x.line not in wanted:
            continue
        start = max(0.0, a / FRAME_RATE - WINDOW_MARGIN)
        end = min(seconds, b / FRAME_RATE + WINDOW_MARGIN)
        window = Window(x.line, start, end, line_language(x.text))
        heard = recognizer(window_audio(audio, sample_rate, start, end), window).strip()
        per, errors, verdict = score_line(phones(x.text, assets=assets),
                                          phones(heard, assets=assets))
        log.debug("line %d %.2f-%.2f s: PER %.2f %s, heard %r", x.line, start, end, per,
                  verdict, heard)
        found.append(LineCheck(x.line, x.text, per, verdict, heard, start, end, errors,
                               max(len(phones(x.text, assets=assets)), 1)))
    return CheckReport(tuple(found))


def merge(old: CheckReport, new: CheckReport) -> CheckReport:
    """``old`` with the lines ``new`` checked again replaced."""
    redone = {c.line: c for c in new.lines}
    return CheckReport(tuple(redone.get(c.line, c) for c in old.lines))


__all__ = ["VERDICTS", "CheckReport", "LineCheck", "Recognizer", "SungLine", "Window",
           "check_audio", "lines_of_lrc", "phones", "regions", "score_line", "sung_lines",
           "sung_lrc"]
