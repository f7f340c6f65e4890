"""Timed lyric lines → the frame-level lyric token track the DiT is conditioned on.

Placement rules (those of DiffRhythm's ``get_lrc_token``; one latent frame = 2048 samples at
44.1 kHz, about 46.4 ms):

1. Lines starting at or after ``audio_length`` seconds are dropped (strict ``<``).
2. With ``max_frames == 2048`` (the 95 s model) the last remaining line is dropped, because the
   model was trained and used that way; ``keep_last_line=True`` keeps it. Instrumental markers
   (lines with empty text) place nothing and never count as that last line.
3. ``end_frame`` is 2048 for ``max_frames == 2048``, else ``int(audio_length * 44100 / 2048)``,
   capped at ``max_frames``; the track has ``end_frame`` frames (0 = no lyric).
4. In order, each line's tokens have every period (id 2) turned into a comma (id 1) and one
   period appended; the line starts at ``max(int(start * 44100 / 2048), end of previous line)``
   (lines never overlap) and is cut at ``end_frame``.

Unlike the original, nothing here touches Python's global ``random`` state.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rhythmflow.errors import LrcError, LyricsError, UsageError
from rhythmflow.lyrics.lrc import LyricLine, parse_lrc_lines
from rhythmflow.lyrics.resources import DEFAULT_ASSETS, LyricsAssets
from rhythmflow.specs import BASE_FRAMES, frame_of, frames_for

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

COMMA, PERIOD = 1, 2
PAST_END = "past song end"
LAST_LINE_RULE = "last line dropped (95 s model rule)"
AFTER_END_FRAME = "starts after the last frame"
NO_TIMESTAMP = "no timestamp"


@dataclass(frozen=True)
class DroppedLine:
    """A lyric line that was not placed, and why (:data:`PAST_END`, :data:`LAST_LINE_RULE`…)."""

    line: LyricLine
    reason: str


@dataclass(frozen=True)
class Placement:
    """Where one line went: first frame, token count (with the final period), frames written."""

    line: LyricLine
    frame_start: int
    n_tokens: int
    frame_len: int


@dataclass(frozen=True)
class LyricsTrack:
    """The lyric conditioning for one song.

    ``ids``: the token id of every frame (0 = no lyric); :attr:`tokens` is the same as an int64
    tensor ``[1, end_frame]`` (built on access: planning needs no torch); ``start_time`` is 0.0;
    ``song_duration`` is ``end_frame / max_frames`` rounded through float16 as the model saw it.
    ``placed``, ``dropped`` and ``truncated`` (lines that lost tokens at ``end_frame``) say what
    happened to each line.
    """

    ids: tuple[int, ...]
    end_frame: int
    start_time: float
    song_duration: float
    max_frames: int
    audio_length: float
    placed: tuple[Placement, ...] = ()
    dropped: tuple[DroppedLine, ...] = ()
    truncated: tuple[LyricLine, ...] = ()

    @property
    def tokens(self) -> torch.Tensor:
        """int64 ``[1, end_frame]`` token track."""
        import torch

        return torch.tensor(self.ids, dtype=torch.long).reshape(1, self.end_frame)


def end_frame_for(max_frames: int, audio_length: float) -> int:
    """Number of frames in the track (see rule 3 in the module docstring)."""
    return frames_for(max_frames, audio_length)


def song_duration_half(end_frame: int, max_frames: int) -> float:
    """``end_frame / max_frames`` as float32 then float16 (round to nearest even, as torch's
    ``.half()``), returned as a Python float."""
    import numpy as np

    return float(np.float16(np.float32(end_frame / max_frames)))


def _check_sizes(max_frames: int, audio_length: float) -> None:
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise UsageError(f"max_frames must be a positive integer, got {max_frames!r}")
    if (not isinstance(audio_length, (int, float)) or not audio_length > 0
            or not math.isfinite(audio_length)):
        raise UsageError(f"audio_length must be a positive, finite number of seconds, got "
                         f"{audio_length!r}")


def place_tokens(
    lines: Sequence[LyricLine],
    line_tokens: Sequence[Sequence[int]],
    *,
    max_frames: int,
    audio_length: float,
    keep_last_line: bool = False,
) -> LyricsTrack:
    """Place already-tokenised lines (in the given order) into a frame track.

    ``line_tokens[i]`` are the token ids (vocab ids + 1) of ``lines[i]``; lines with empty text
    are instrumental markers and their tokens are ignored. The order of ``lines`` is used as is
    (:func:`parse_lrc` returns them sorted by time).
    """
    _check_sizes(max_frames, audio_length)
    if len(lines) != len(line_tokens):
        raise UsageError(f"{len(lines)} lines but {len(line_tokens)} token lists")
    dropped: list[DroppedLine] = []
    kept: list[tuple[LyricLine, Sequence[int]]] = []
    for line, toks in zip(lines, line_tokens, strict=True):
        if not line.text:
            continue
        if line.start < audio_length:
            kept.append((line, toks))
        else:
            dropped.append(DroppedLine(line, PAST_END))
    if max_frames == BASE_FRAMES and kept and not keep_last_line:
        dropped.append(DroppedLine(kept.pop()[0], LAST_LINE_RULE))

    end_frame = end_frame_for(max_frames, audio_length)
    track = [0] * end_frame
    placed: list[Placement] = []
    truncated: list[LyricLine] = []
    last_end = 0
    for line, toks in kept:
        tokens = [COMMA if t == PERIOD else int(t) for t in toks] + [PERIOD]
        frame_start = max(frame_of(line.start), last_end)
        if frame_start >= end_frame:
            dropped.append(DroppedLine(line, AFTER_END_FRAME))
            last_end = frame_start
            continue
        frame_len = min(len(tokens), end_frame - frame_start)
        track[frame_start : frame_start + frame_len] = tokens[:frame_len]
        last_end = frame_start + frame_len
        placed.append(Placement(line, frame_start, len(tokens), frame_len))
        if frame_len < len(tokens):
            truncated.append(line)
    for d in dropped:
        log.debug("lyric line %d (%.2f s) not placed: %s", d.line.line, d.line.start, d.reason)
    for line in truncated:
        log.debug("lyric line %d (%.2f s) cut at the end of the song", line.line, line.start)
    return LyricsTrack(
        ids=tuple(track),
        end_frame=end_frame,
        start_time=0.0,
        song_duration=song_duration_half(end_frame, max_frames),
        max_frames=max_frames,
        audio_length=float(audio_length),
        placed=tuple(placed),
        dropped=tuple(dropped),
        truncated=tuple(truncated),
    )


def tokenize_lines(lines: Sequence[LyricLine], *,
                   assets: LyricsAssets = DEFAULT_ASSETS) -> list[list[int]]:
    """Token ids for each line (``[]`` for instrumental markers); a G2P failure is re-raised as
    LyricsError naming the LRC line number and text."""
    from rhythmflow.lyrics.g2p import g2p_tokens

    result: list[list[int]] = []
    for line in lines:
        if not line.text:
            result.append([])
            continue
        try:
            result.append(g2p_tokens(line.text, assets=assets))
        except LyricsError as exc:
            raise LyricsError(f"LRC line {line.line} ({line.text!r}): {exc}", field="lrc",
                              line=line.line) from exc
    return result


def check_lrc(lrc_text: str) -> tuple[list[LyricLine], list[LyricLine]]:
    """The cheap lyric checks, before any model is loaded: :func:`parse_lrc_lines`, a non-empty
    text must hold at least one timed lyric (an instrumental is asked for with an empty text:
    without ``--lrc``), and every line must be singable
    (:func:`~rhythmflow.lyrics.g2p.check_singable`). Returns ``(timed, untimed)``; raises
    LrcError / LyricsError naming the line and the fix."""
    from rhythmflow.lyrics.g2p import check_singable

    lines, untimed = parse_lrc_lines(lrc_text)
    if lrc_text.strip() and not any(line.text for line in lines):
        hint = (f" ({len(untimed)} line(s) of text without a timestamp, first on line "
                f"{untimed[0].line}: {untimed[0].text[:40]!r})" if untimed else "")
        raise LrcError(
            f"the lyrics hold no timed lyric line{hint}; start each lyric with a timestamp "
            "such as [00:12.00] (for an instrumental, give no lyrics: leave lrc empty)")
    for line in lines:
        if line.text:
            try:
                check_singable(line.text)
            except LyricsError as exc:
                raise LyricsError(f"LRC line {line.line} ({line.text!r}): {exc}") from None
    return lines, untimed


def lrc_to_track(
    lrc_text: str,
    *,
    max_frames: int,
    audio_length: float,
    keep_last_line: bool = False,
    assets: LyricsAssets = DEFAULT_ASSETS,
) -> LyricsTrack:
    """LRC text → :class:`LyricsTrack`: :func:`parse_lrc`, G2P of every line (including lines
    past the song end, so a file's errors do not depend on the song length), then
    :func:`place_tokens`.

    Lines of text without a timestamp are listed in ``dropped`` (reason :data:`NO_TIMESTAMP`,
    ``start`` NaN); dropped and truncated lines are logged at debug level (``run`` reports them
    as warning events).

    Raises LrcError (bad LRC, or a non-empty text without any timed lyric), LyricsError (a line
    that cannot be phonemized or holds letters the G2P cannot sing; names the LRC line),
    UsageError (bad sizes), DependencyError/AssetError (missing espeak-ng or resources).
    Resource files are read from ``assets``.
    """
    _check_sizes(max_frames, audio_length)
    lines, untimed = check_lrc(lrc_text)
    for line in untimed:
        log.debug("lyric line %d has no timestamp; not sung: %r", line.line, line.text[:60])
    track = place_tokens(
        lines,
        tokenize_lines(lines, assets=assets),
        max_frames=max_frames,
        audio_length=audio_length,
        keep_last_line=keep_last_line,
    )
    if not untimed:
        return track
    dropped = sorted([*(DroppedLine(x, NO_TIMESTAMP) for x in untimed), *track.dropped],
                     key=lambda d: d.line.line)
    return dataclasses.replace(track, dropped=tuple(dropped))
