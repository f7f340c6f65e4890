"""Plain lyrics on the command line: the ``lrc`` subcommand and ``generate --lyrics``.

``rhythmflow lrc PLAIN.txt --duration S [-o out.lrc]`` prints (or writes) the timed LRC of
:func:`rhythmflow.lyrics.autotime.time_lyrics`; warnings go to stderr. ``generate --lyrics``
calls :func:`lyrics_for_generate` where it reads the lyrics and :func:`write_autotimed` beside
each output file.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rhythmflow import errors
from rhythmflow.cli.flags import in_flags

if TYPE_CHECKING:
    from rhythmflow.lyrics.autotime import AutotimeResult

log = logging.getLogger("rhythmflow")


def read_lyrics_file(path: Path) -> str:
    """UTF-8 text of a lyrics file; UsageError saying what is wrong with it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise errors.UsageError(f"lyrics file {path} does not exist") from None
    except IsADirectoryError:
        raise errors.UsageError(f"lyrics file {path} is a folder; give a text file") from None
    except UnicodeDecodeError as exc:
        raise errors.UsageError(
            f"lyrics file {path} is not UTF-8 text ({exc.reason} at byte "
            f"{exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise errors.UsageError(f"cannot read lyrics file {path}: {exc.strerror}") from None


def autotime_file(
    path: Path,
    duration: float,
    *,
    language: str | None = None,
    max_frames: int | None = None,
    intro: float | None = None,
    outro: float | None = None,
    assets_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
) -> AutotimeResult:
    """Read a plain lyrics file and time it (G2P resources from ``assets_dir``/``offline``).
    Errors about the text (LyricsError, LrcError) name the file."""
    from rhythmflow.lyrics.autotime import time_lyrics
    from rhythmflow.lyrics.resources import LyricsAssets

    text = read_lyrics_file(path)
    optional = {k: v for k, v in (("intro", intro), ("outro", outro)) if v is not None}
    try:
        return time_lyrics(text, duration, language=language, max_frames=max_frames,
                           assets=LyricsAssets.of(assets_dir, offline), **optional)
    except (errors.LyricsError, errors.LrcError) as exc:  # about the text: name the file
        raise type(exc)(f"lyrics file {path}: {exc}") from exc


def run_lrc(args: argparse.Namespace) -> int:
    """``rhythmflow lrc``: the LRC on stdout, or atomically in ``-o``; warnings on stderr."""
    from rhythmflow.audio.io import atomic_write_bytes

    if args.output is not None and not Path(args.output).parent.is_dir():
        raise errors.UsageError(
            f"output folder {Path(args.output).parent} does not exist; create it first"
        )
    if args.output is not None and Path(args.output).resolve() == Path(args.lyrics).resolve():
        raise errors.UsageError(
            f"-o {args.output} would overwrite the lyrics file; choose another name"
        )
    result = autotime_file(
        args.lyrics,
        args.duration,
        language=args.language,
        intro=args.intro,
        outro=args.outro,
        assets_dir=args.assets_dir,
        offline=True if args.offline else None,
    )
    for message in result.warnings:
        log.warning("warning: %s", in_flags(message))
    if result.last_line_rule and result.lines:
        log.warning(
            "note: the 95 s model drops the last LRC line; pass --keep-last-line to "
            "`generate --lrc` with this file (or use `generate --lyrics`, which does)"
        )
    if args.output is None:
        print(result.lrc, end="")
    else:
        atomic_write_bytes(args.output, result.lrc.encode("utf-8"))
        log.info(
            "wrote %s: %d lines, %.2f units/s", args.output, len(result.lines), 1 / result.beat
        )
    return errors.EXIT_OK


def lrc_path(output: Path) -> Path:
    """Where the LRC used for ``output`` (``song.wav``) is written: ``song.lrc``."""
    return Path(output).with_suffix(".lrc")


def write_autotimed(output: Path, autotime: dict[str, Any], source: Path) -> dict[str, Any]:
    """Write the LRC a plan timed (``autotime``: :meth:`AutotimeResult.summary`) beside
    ``output`` (atomically) and return the sidecar's ``autotime`` entry."""
    from rhythmflow.audio.io import atomic_write_bytes

    target = atomic_write_bytes(lrc_path(output), autotime["lrc"].encode("utf-8"))
    return {"lyrics_file": str(source), "lrc_file": str(target), **autotime}


def check_lrc_outputs(outputs: list[Path], lyrics: Path) -> None:
    """Refuse outputs whose LRC would overwrite the ``--lyrics`` file."""
    for out in outputs:
        if lrc_path(out).resolve() == Path(lyrics).resolve():
            raise errors.UsageError(f"the LRC written beside {out} would overwrite the --lyrics "
                                    f"file {lyrics}; choose another -o")


def read_text(path: Path, what: str) -> str:
    """The text of a lyrics file (UTF-8, or UTF-16 with or without BOM); UsageError if unreadable."""
    from rhythmflow.lyrics import decode_lrc

    try:
        return decode_lrc(path.read_bytes(), f"{what} {path}")  # UTF-8, or UTF-16 (BOM or not)
    except FileNotFoundError:
        raise errors.UsageError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise errors.UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
