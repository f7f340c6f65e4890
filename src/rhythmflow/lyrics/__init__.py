"""Lyrics front-end: LRC text → timed lines → phoneme tokens → frame-level token track.

Importing this package is cheap: phonemizer, inflect, torch and the Chinese G2P are loaded on
first use.
"""

from __future__ import annotations

from rhythmflow.lyrics.autotime import AutotimeResult, autotime, time_lyrics
from rhythmflow.lyrics.g2p import g2p_phonemes, g2p_tokens
from rhythmflow.lyrics.lint import Finding, LintReport, fix_lrc, lint_lrc
from rhythmflow.lyrics.lrc import LyricLine, decode_lrc, parse_lrc
from rhythmflow.lyrics.tokens import (
    DroppedLine,
    LyricsTrack,
    Placement,
    check_lrc,
    lrc_to_track,
    place_tokens,
    tokenize_lines,
)

# Note: the name ``autotime`` is the function; import the module's other names with
# ``from rhythmflow.lyrics.autotime import ...``.
__all__ = [
    "AutotimeResult",
    "DroppedLine",
    "Finding",
    "LintReport",
    "check_lrc",
    "decode_lrc",
    "fix_lrc",
    "LyricLine",
    "LyricsTrack",
    "Placement",
    "autotime",
    "g2p_phonemes",
    "g2p_tokens",
    "lint_lrc",
    "lrc_to_track",
    "parse_lrc",
    "place_tokens",
    "time_lyrics",
    "tokenize_lines",
]
