"""What a job does after decoding, decided once: check, repair, takes (no torch).

``check`` transcribes every sung line and scores it by phoneme error rate (PER); ``repair``
regenerates, in latent space, the lines whose PER is over ``repair_threshold``, for up to
``repair_rounds`` rounds, each with its own seed (:func:`repair_seed`); ``takes`` N samples N
seeds and ranks them. Repair and takes with a recogniser imply a check. The recogniser is a
program (``asr_command``), a local Whisper folder (``asr_model``) or the pinned Whisper asset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rhythmflow.request import GenerationRequest

#: latent frames regenerated beyond each repaired line's region on each side (~0.19 s): the new
#: take's seam falls off the line's first and last sung frames
REPAIR_MARGIN_FRAMES = 4
_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: successive rounds' seeds spread far apart
_SEED_SPACE = 2**63


def repair_seed(song_seed: int, round_: int) -> int:
    """The seed of repair round ``round_`` (1-based) of the song drawn with ``song_seed``:
    deterministic, never the song's own seed, different every round."""
    return (song_seed + round_ * _GOLDEN) % _SEED_SPACE


@dataclass(frozen=True)
class Review:
    """The after-decoding steps of a plan. ``recognizer``: ``"command"``, ``"model"`` (a local
    Whisper folder), ``"whisper"`` (the pinned asset) or None when nothing is transcribed."""

    takes: int = 1
    check: bool = False
    repair_rounds: int = 0  # 0 = no repair
    repair_threshold: float = 0.5
    margin_frames: int = REPAIR_MARGIN_FRAMES
    recognizer: str | None = None
    asr_command: str | None = None
    asr_model: str | None = None
    reasons: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.check or self.repair_rounds > 0 or self.takes > 1

    def to_dict(self) -> dict[str, Any]:
        return {"takes": self.takes, "check": self.check, "repair_rounds": self.repair_rounds,
                "repair_threshold": self.repair_threshold, "margin_frames": self.margin_frames,
                "recognizer": self.recognizer, "asr_command": self.asr_command,
                "asr_model": self.asr_model}


def review_of(request: GenerationRequest) -> Review:
    """The :class:`Review` a request asks for, and why."""
    reasons: list[str] = []
    repair = request.repair_rounds if request.repair else 0
    recognizer = ("command" if request.asr_command is not None else
                  "model" if request.asr_model is not None else "whisper")
    # takes are scored by lyric PER only when a recogniser was named or a check asked for
    check = request.check or repair > 0 or (request.takes > 1 and (
        request.asr_command is not None or request.asr_model is not None))
    if not check:
        recognizer = None
    if repair:
        reasons.append(f"repair: up to {repair} round(s) on lines with PER > "
                       f"{request.repair_threshold:g}")
    if request.takes > 1:
        reasons.append(f"takes {request.takes}: seeds seed … seed+{request.takes - 1}, ranked "
                       "by style score" + (" and lyric PER" if check else ""))
    if check:
        reasons.append(f"check: every line transcribed by {recognizer_label(recognizer, request)}")
    return Review(request.takes, check, repair, request.repair_threshold,
                  REPAIR_MARGIN_FRAMES, recognizer, request.asr_command, request.asr_model,
                  tuple(reasons))


def recognizer_label(kind: str | None, request: GenerationRequest) -> str:
    if kind == "command":
        return f"the program {request.asr_command!r}"
    if kind == "model":
        return f"the Whisper model in {request.asr_model}"
    return "the pinned Whisper checkpoint (rhythmflow fetch with_asr=1)"


def lint_findings(request: GenerationRequest, duration: float, model: str,
                  assets) -> tuple[dict[str, Any], ...]:
    """The lint findings of a request's LRC (:func:`rhythmflow.lyrics.lint.lint_lrc`) for this
    model and duration; none for plain lyrics (autotime times them to fit) or an instrumental.
    A G2P that cannot be loaded here (missing espeak-ng or resources) skips the lint: the
    lyrics stage reports it."""
    from rhythmflow.errors import AssetError
    from rhythmflow.lyrics.lint import lint_lrc

    if request.lyrics is not None or not request.lrc.strip():
        return ()
    try:
        report = lint_lrc(request.lrc, duration=duration, model=model,
                          keep_last_line=request.keep_last_line, assets=assets)
    except AssetError as exc:  # DependencyError included
        # one line: the lyrics stage reports the missing files in full
        logging.getLogger(__name__).info("LRC lint skipped: %s", str(exc).splitlines()[0])
        return ()
    return tuple(f.to_dict() for f in report.findings)
