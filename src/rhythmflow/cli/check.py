"""``rhythmflow check`` and ``rhythmflow repair``, and generate's ``--check/--repair/--takes``.

``check SONG --lrc LRC [--asr-command T | --asr-model DIR] [--json]`` transcribes each line's
window and prints the per-line phoneme error rates and verdicts (:mod:`rhythmflow.lyrics.check`);
``--json`` prints ``{"lines": [{"line", "text", "per", "verdict", ...}], "per": x}``.
``repair SONG --lrc LRC`` regenerates the failing lines of a song rhythmflow made (it reads the
song's sidecar for the request and seed, and ``<stem>.latents.npy`` for its latents) and writes
``-o`` (default ``<stem>.repaired.wav``) with its sidecar, ``.lrc`` and latents.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from rhythmflow import errors

log = logging.getLogger("rhythmflow")


def add_parsers(sub, assets, common, asr_flags, repair_flags) -> None:
    c = sub.add_parser("check", help="transcribe each lyric line of a song and score it "
                       "(phoneme error rate: sung / garbled / missing)")
    r = sub.add_parser("repair", help="regenerate the lines of a rhythmflow song that fail the "
                       "check; the rest of the song is kept bit for bit")
    for p in (c, r):
        p.add_argument("song", type=Path, help="the song's audio file")
        p.add_argument("--lrc", type=Path, required=True, help="the song's .lrc (the one "
                       "written beside it: the lines as sung)")
        asr_flags(p)
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        assets(p)
        common(p)
    repair_flags(r)
    r.add_argument("-o", "--output", type=Path, help="the repaired song (default: "
                   "<stem>.repaired.wav beside SONG)")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")


def recognizer(args: argparse.Namespace, review=None, device: str = "cpu"):
    """The recogniser the arguments (or a plan's review) name."""
    from rhythmflow.asr import recognizer_for

    command = getattr(args, "asr_command", None)
    model = getattr(args, "asr_model", None)
    kind = (review.recognizer if review is not None else
            "command" if command else "model" if model else "whisper")
    return recognizer_for(kind, command=command, model=model, assets_dir=args.assets_dir,
                          offline=True if args.offline else None, device=device)


def _table(report) -> list[str]:
    rows = [f"{'line':>4}  {'PER':>5}  {'verdict':<8} lyric  →  heard"]
    rows += [f"{c.line:>4}  {c.per:5.2f}  {c.verdict:<8} {c.text!r}  →  {c.heard!r}"
             for c in report.lines]
    return rows + [f"song PER {report.per:.3f} over {len(report.lines)} lines"]


def run_check(args: argparse.Namespace) -> int:
    from rhythmflow.audio.io import read_audio
    from rhythmflow.cli.lrc import read_text
    from rhythmflow.lyrics.check import check_audio, lines_of_lrc
    from rhythmflow.lyrics.resources import LyricsAssets

    if args.asr_command is not None:
        from rhythmflow.request import GenerationRequest

        GenerationRequest(asr_command=args.asr_command)  # the template's checks, field-named
    lines = lines_of_lrc(read_text(args.lrc, "lyrics file"))
    if not lines:
        raise errors.UsageError(f"lyrics file {args.lrc} holds no timed lyric line to check")
    audio, sr = read_audio(args.song)
    report = check_audio(audio, sr, lines, recognizer(args),
                         assets=LyricsAssets.of(args.assets_dir,
                                                True if args.offline else None))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(_table(report)))
    return errors.EXIT_OK


# ---- generate --check / --repair / --takes --------------------------------------------------


def review_song(args: argparse.Namespace, p, gen, song, view, cancel) -> tuple[Any, list, list]:
    """Run the plan's review (``rhythmflow.review``) on a generated song; print the check and
    takes tables on stderr. Returns (song, items, order best first)."""
    from rhythmflow.review import review

    rec = recognizer(args, p.review, p.runtime.device if p.runtime.kind == "cuda" else "cpu") \
        if p.review.check else None
    song, items, order = review(p, gen, song, recognizer=rec, on_event=view, cancel=cancel)
    for i, item in enumerate(items):
        if item.check is not None and not args.quiet:
            log.info("take %d (seed %s):\n%s", i, song.seeds[i], "\n".join(_table(item.check)))
    return song, items, order


def print_takes(takes: list[dict]) -> None:
    log.info("takes, best first:\n%s", "\n".join(
        f"{k + 1:>3}. seed {t['seed']:<12} style {_num(t['style_score'])}  PER "
        f"{_num(t['per'])}  {t['file']}" for k, t in enumerate(takes)))


def _num(x: float | None) -> str:
    return "  -  " if x is None else f"{x:5.3f}"
