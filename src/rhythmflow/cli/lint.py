"""``rhythmflow lint FILE [--duration S] [--model M] [--keep-last-line] [--json] [--fix -o OUT]``.

Exit 0 when the file lints clean, 1 when it has findings, 2 when it cannot be read or is not an
LRC the reader accepts. ``--json`` prints :meth:`LintReport.to_dict` (``{"findings": [{"line",
"kind", "message"}], ...}``); ``--fix`` writes :func:`fix_lrc`'s proposal to ``-o`` (stdout
without ``-o``) and still exits by the findings of FILE as given.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rhythmflow import errors

log = logging.getLogger("rhythmflow")

EXIT_FINDINGS = 1


def add_parser(sub) -> None:
    p = sub.add_parser("lint", help="check an LRC's timing before any compute (exit 1 on "
                       "findings)")
    p.add_argument("file", type=Path, help="LRC lyrics file (UTF-8 or UTF-16)")
    p.add_argument("--duration", type=float, help="song length in seconds (default: the "
                   "model's longest, else 285)")
    p.add_argument("--model", help="official model the song is for (base, full, v1.2-base …): "
                   "its song length and the 95 s model's dropped last line")
    p.add_argument("--keep-last-line", action="store_true", help="the song keeps the 95 s "
                   "model's last line (generate --keep-last-line)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("--fix", action="store_true", help="propose a retimed LRC that keeps the "
                   "lines whose timing is plausible")
    p.add_argument("-o", "--output", type=Path, help="with --fix: write the proposal here "
                   "(default: stdout)")
    p.add_argument("--assets-dir", type=Path, help="local asset folder (G2P vocabulary)")
    p.add_argument("--offline", action="store_true", help="never use the network")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")


def run_lint(args: argparse.Namespace) -> int:
    from rhythmflow.audio.io import atomic_write_bytes
    from rhythmflow.cli.lrc import read_text
    from rhythmflow.lyrics.lint import fix_lrc, lint_lrc
    from rhythmflow.lyrics.resources import LyricsAssets

    if args.output is not None and not args.fix:
        raise errors.UsageError("-o is the file --fix writes; add --fix")
    if args.output is not None and not Path(args.output).parent.is_dir():
        raise errors.UsageError(f"output folder {Path(args.output).parent} does not exist")
    if args.output is not None and Path(args.output).resolve() == Path(args.file).resolve():
        raise errors.UsageError(f"-o {args.output} would overwrite the file being linted")
    text = read_text(args.file, "lyrics file")
    assets = LyricsAssets.of(args.assets_dir, True if args.offline else None)
    options = {"duration": args.duration, "model": args.model, "assets": assets}
    try:
        report = lint_lrc(text, keep_last_line=args.keep_last_line, **options)
    except errors.LrcError as exc:
        raise type(exc)(f"lyrics file {args.file}: {exc}", field=exc.field,
                        line=exc.line) from exc
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for f in report.findings:
            print(f"{args.file}:{f.line}: {f.kind}: {f.message}")
        log.info("%s: %d timed line(s), %d finding(s) (%g s song%s)", args.file, report.lines,
                 len(report.findings), report.duration,
                 f", {report.model} model" if report.model else "")
    if args.fix:
        fixed = fix_lrc(text, **options)
        if args.output is None:
            print(fixed, end="")
        else:
            atomic_write_bytes(args.output, fixed.encode("utf-8"))
            log.info("wrote the proposed retiming to %s", args.output)
    return errors.EXIT_OK if report.clean else EXIT_FINDINGS
