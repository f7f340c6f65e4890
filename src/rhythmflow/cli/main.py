"""Command line: ``rhythmflow generate | lint | check | repair | lrc | fetch | diagnose``. ``main(argv) -> exit code``.

Exit codes: see :mod:`rhythmflow.errors` (0 ok, 2 usage, 3 asset, 4 resources, 5 timeout,
6 numerical, 130 cancelled).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from rhythmflow import errors, specs
from rhythmflow.cli.console import ProgressView, setup_logging
from rhythmflow.request import DTYPE_NAMES, FORMATS, QUANTIZE, SAMPLE_FORMATS, VAE_DTYPE_NAMES

log = logging.getLogger("rhythmflow")

MODELS = list(specs.MODEL_NAMES)
_B, _F = specs.BASE, specs.FULL


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors → our exit code 2 with a hint
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n(see `{self.prog} --help`)\n")
        raise SystemExit(errors.EXIT_USAGE)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def _assets(p: argparse.ArgumentParser) -> None:
    p.add_argument("--assets-dir", type=Path, help="local folder laid out as the Hub repos "
                   "(default: $RHYTHMFLOW_ASSETS_DIR, then the Hugging Face cache)")
    p.add_argument("--offline", action="store_true",
                   help="never use the network (also: HF_HUB_OFFLINE=1)")


def _serve_parsers(sub) -> None:
    """``serve`` (HTTP API + page + an embedded worker) and ``worker`` (scale-out)."""
    for name, text in (("serve", "web page + HTTP API with a durable job queue"),
                       ("worker", "run queued jobs (one per GPU or CPU box)")):
        p = sub.add_parser(name, help=text)
        if name == "serve":
            p.add_argument("--host", default="127.0.0.1", help="address to bind (default: "
                           "127.0.0.1; others need --api-key or print a warning)")
            p.add_argument("--port", type=int, default=7860)
            p.add_argument("--no-worker", action="store_true", help="API only; jobs run in "
                           "separate `rhythmflow worker` processes")
            from rhythmflow.serve.commands import add_serve_arguments

            add_serve_arguments(p)  # --api-key, --api-key-file, --allow-origin, --allow-host
        p.add_argument("--data-dir", type=Path, help="jobs, states and audio (default: "
                       "$RHYTHMFLOW_DATA_DIR, else ~/.local/share/rhythmflow); shared by all")
        p.add_argument("--queue", help="redis://HOST:PORT/DB for many machines (default: a "
                       "SQLite queue in --data-dir)")
        p.add_argument("--model", choices=MODELS, help="official model (default: base)")
        p.add_argument("--checkpoint", type=Path, help="a local DiT checkpoint")
        p.add_argument("--model-config", type=Path, help="official config JSON for --checkpoint")
        p.add_argument("--vae", type=Path, help="local TorchScript VAE file")
        _assets(p)
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
        p.add_argument("--dtype", default="auto", choices=DTYPE_NAMES, help="auto, float32, bfloat16, float16")
        p.add_argument("--quantize", choices=QUANTIZE, default="none")
        p.add_argument("--vae-dtype", default="auto", choices=VAE_DTYPE_NAMES,
                       help="the CPU VAE decoder's residual convolutions (see generate)")
        p.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
        p.add_argument("--lease", type=float, default=15.0, help="seconds a job stays owned "
                       "without a heartbeat before another worker resumes it")
        p.add_argument("--heartbeat", type=float, default=2.0, help="seconds between heartbeats")
        p.add_argument("--poll", type=float, default=0.5, help="seconds between queue polls")
        from rhythmflow.serve.commands import add_recognizer_arguments

        add_recognizer_arguments(p)  # --asr-command / --asr-model: check and repair jobs
        _common(p)
    from rhythmflow.serve.commands import add_keys_parser

    add_keys_parser(sub, _common)  # `rhythmflow keys add NAME`: a key for `serve --keys`


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rhythmflow", description="DiffRhythm song generation that never stalls.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    g = sub.add_parser("generate", help="generate a song from timed lyrics and a style")
    words = g.add_mutually_exclusive_group()
    words.add_argument("--lrc", type=Path, help="LRC lyrics file (omit for an instrumental)")
    words.add_argument("--lyrics", type=Path, help="plain lyrics file (one line per sung line, "
                       "optional [verse]/[chorus] markers): timed automatically; the LRC used "
                       "is written beside the output")
    style = g.add_mutually_exclusive_group(required=True)
    style.add_argument("--style-prompt", help="text describing the style, e.g. 'jazzy nightclub'")
    style.add_argument("--style-audio", type=Path, help="reference audio (>= 10 s) for the style")
    style.add_argument("--style-embedding", type=Path, help="a [1, 512] .npy style embedding")
    g.add_argument("--negative-style", type=Path, help="negative style .npy (default: the release's)")
    g.add_argument("--model", choices=MODELS, help=f"official model (default: base for "
                   f"{_B.max_seconds:g} s, full for longer songs)")
    g.add_argument("--checkpoint", type=Path, help="a local DiT checkpoint (.pt/.safetensors); "
                   "the architecture is read from it")
    g.add_argument("--model-config", type=Path, help="official config JSON for --checkpoint")
    g.add_argument("--vae", type=Path, help="local TorchScript VAE file (vae_model.pt)")
    _assets(g)
    g.add_argument("--duration", type=float, help=f"song length in seconds: {_B.max_seconds:g} "
                   f"(base) or {_F.min_seconds:g}-{_F.max_seconds:g} (full); default "
                   f"{_B.max_seconds:g}, or {_F.max_seconds:g} with a full model")
    g.add_argument("--steps", type=int, help="ODE solver steps (default: 8 on CPU, 32 on GPU; "
                   "the original's steps=32 is 31 of ours)")
    g.add_argument("--solver", default="euler", help="euler (default), midpoint, heun, rk4")
    g.add_argument("--schedule", default="uniform", help="time grid: uniform (default) or sway")
    g.add_argument("--cfg-strength", type=float, default=4.0, help="guidance strength (0 = off)")
    g.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LO", "HI"),
                   help="apply guidance only for flow time t in [LO, HI] (saves evaluations)")
    g.add_argument("--seed", type=int, help="random seed (default: random, recorded in sidecar)")
    g.add_argument("--batch", type=int, default=1, help="songs to generate (seeds seed..seed+N-1)")
    g.add_argument("--timeout", type=float, help="stop sampling after this many seconds, save the "
                   "state and exit 5")
    g.add_argument("--anytime", action="store_true", help="on timeout, still write a (lower "
                   "quality) song by jumping to the end")
    g.add_argument("--time-budget", type=float, help="seconds the whole run may take: picks the "
                   "most steps that fit, or refuses")
    g.add_argument("--save-state", type=Path, help="where to save the resume state on timeout / "
                   "Ctrl-C (default: <output>.resume.pt)")
    g.add_argument("--resume", type=Path, help="resume from a saved state (same command)")
    g.add_argument("--edit", action="store_true", help="edit a reference song (needs --ref-song "
                   "and --edit-segments)")
    g.add_argument("--ref-song", type=Path, help="reference song for --edit")
    g.add_argument("--edit-segments", help='segments to regenerate, seconds: "[[0, 10], [40, -1]]"')
    g.add_argument("--keep-last-line", action="store_true", help="keep the last lyric line for "
                   "base-model songs (the original drops it)")
    g.add_argument("--no-chunked", dest="chunked", action="store_false",
                   help="decode the whole song at once (needs more memory)")
    g.add_argument("--quantize", choices=QUANTIZE, default="none",
                   help="int8 dynamic quantization of linear layers (CPU)")
    g.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    g.add_argument("--dtype", default="auto", choices=DTYPE_NAMES, help="auto (float32 on CPU, bf16/fp16 on GPU), "
                   "float32, bfloat16, float16")
    g.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
    g.add_argument("--vae-dtype", default="auto", choices=VAE_DTYPE_NAMES,
                   help="the CPU VAE decoder's residual convolutions (auto: bfloat16 where "
                   "measured faster and the DiT runs low precision, if accurate on the weights)")
    g.add_argument("--skip-estimate", action="store_true", help="do not time one evaluation "
                   "before sampling")
    g.add_argument("-o", "--output", type=Path, default=Path("output.wav"),
                   help="output audio file (default output.wav; batch: name_0.wav, name_1.wav …)")
    g.add_argument("--format", choices=FORMATS, help="audio format (default: from "
                   "the output suffix, else wav)")
    g.add_argument("--sample-format", choices=SAMPLE_FORMATS, default="int16",
                   help="wav sample format (int16 as the original; int24, float32)")
    g.add_argument("--loudness", type=float, metavar="LUFS", help="normalise to this integrated "
                   "loudness (e.g. -14) instead of the original's peak normalisation")
    g.add_argument("--progress", choices=["bar", "log", "json", "none"], default="bar",
                   help="progress display on stderr (json: one object per line on stdout)")
    g.add_argument("--plan", action="store_true", help="print the plan (every decision, the "
                   "time and memory estimate) and exit without loading anything")
    g.add_argument("--json", action="store_true", help="with --plan: print it as JSON")
    _review_flags(g)
    _common(g)

    f = sub.add_parser("fetch", help="download (or, offline, verify) the files a model needs")
    f.add_argument("--model", choices=MODELS, default="base")
    f.add_argument("--with-chinese", action="store_true", help="also the Chinese G2P resources")
    f.add_argument("--with-asr", action="store_true", help="also the pinned Whisper checkpoint "
                   "that check / --check / --repair use by default")
    _assets(f)
    _common(f)

    t = sub.add_parser("lrc", help="time plain lyrics into an LRC file (no timestamps needed)")
    t.add_argument("lyrics", type=Path, help="plain lyrics file (UTF-8): one sung line per line, "
                   "blank lines between stanzas, optional [verse]/[chorus]/[instrumental] markers")
    t.add_argument("--duration", type=float, required=True, help="song length in seconds (95 "
                   "for the base model, 96-285 for full)")
    t.add_argument("--language", choices=["en", "zh"], help="tempo table (default: detected)")
    t.add_argument("--intro", type=float, help="seconds before the first line (default 6)")
    t.add_argument("--outro", type=float, help="seconds after the last line (default 6)")
    t.add_argument("-o", "--output", type=Path, help="write the LRC here (default: stdout)")
    _assets(t)
    _common(t)

    d = sub.add_parser("diagnose", help="system report, model size, benchmark, recommendations")
    d.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    d.add_argument("--smoke", action="store_true", help="run the whole pipeline end to end on a "
                   "tiny random model (seconds)")
    d.add_argument("--duration", type=float, default=_B.max_seconds,
                   help="song length to estimate for")
    d.add_argument("--bench-frames", type=int, default=128,
                   help="frames for the full-size transformer benchmark (0 to skip)")
    d.add_argument("--refresh", action="store_true",
                   help="measure this machine again (the cached probe: dtype speeds, guidance "
                        "layout, per-forward overhead)")
    _assets(d)  # --smoke reads the G2P vocabulary locally, never from the network
    _common(d)
    from rhythmflow.cli import check as check_cli
    from rhythmflow.cli import lint as lint_cli

    lint_cli.add_parser(sub)
    check_cli.add_parsers(sub, _assets, _common, _asr_flags, _repair_flags)
    _serve_parsers(sub)
    return parser


def _asr_flags(p: argparse.ArgumentParser) -> None:
    asr = p.add_mutually_exclusive_group()
    asr.add_argument("--asr-command", metavar="T", help="recogniser program run on each line's "
                     "16 kHz mono window; transcript = its stdout; placeholders {wav} {start} "
                     "{end} {line} {lang} (default: Whisper through transformers)")
    asr.add_argument("--asr-model", type=Path, help="a local transformers Whisper folder "
                     "(default: the pinned checkpoint, `rhythmflow fetch --with-asr`)")


def _repair_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repair-rounds", type=int, default=2, metavar="K",
                   help="repair rounds at most (default 2)")
    p.add_argument("--repair-threshold", type=float, default=0.5, metavar="P",
                   help="lines with a phoneme error rate above P are regenerated (default 0.5)")


def _review_flags(g: argparse.ArgumentParser) -> None:
    """generate's after-decoding flags: --check, --repair, --takes (rhythmflow.review)."""
    g.add_argument("--check", action="store_true", help="transcribe every line after decoding "
                   "and score it (phoneme error rate); the table goes in the sidecar")
    g.add_argument("--repair", action="store_true", help="regenerate the lines that fail the "
                   "check (edit mask over their frames, the rest kept bit for bit)")
    _repair_flags(g)
    g.add_argument("--takes", type=int, default=1, metavar="N", help="N seeds, every take kept "
                   "and scored (style, lyric PER), best first in the file names")
    _asr_flags(g)


def _install_signal_handlers(cancel) -> None:
    def handler(signum, _frame):
        if cancel.is_set():  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        log.warning("\n%s received: stopping at the next safe point (model evaluation or VAE "
                    "chunk) and keeping the work done (press Ctrl-C again to abort)",
                    signal.Signals(signum).name)
        cancel.cancel(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _run(args: argparse.Namespace) -> int:
    if args.command == "generate":
        from rhythmflow.cli.commands import run_generate
        from rhythmflow.sampling import CancelToken

        cancel = CancelToken()
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        _install_signal_handlers(cancel)
        try:
            return run_generate(args, ProgressView(args.progress, quiet=args.quiet), cancel)
        finally:  # main() may be called in-process (tests, notebooks): leave no handler behind
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if args.command == "keys":
        from rhythmflow.serve.commands import run_keys

        return run_keys(args)
    if args.command in ("serve", "worker"):
        from rhythmflow.serve import commands as serve_commands

        return serve_commands.run_serve(args) if args.command == "serve" else \
            serve_commands.run_worker(args)
    if args.command == "lint":
        from rhythmflow.cli.lint import run_lint

        return run_lint(args)
    if args.command == "check":
        from rhythmflow.cli.check import run_check

        return run_check(args)
    if args.command == "repair":
        from rhythmflow.cli.repair import repair_file

        return repair_file(args)
    if args.command == "lrc":
        from rhythmflow.cli.lrc import run_lrc

        return run_lrc(args)
    if args.command == "fetch":
        from rhythmflow.cli.commands import run_fetch

        return run_fetch(args)
    from rhythmflow.cli.diagnose import run_diagnose

    return run_diagnose(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    setup_logging(-1 if args.quiet else args.verbose)
    try:
        return _run(args)
    except errors.RhythmflowError as exc:
        log.error("error: %s", _in_flags(exc))
        path = getattr(exc, "state_path", None)
        if path:
            log.error("resume with the same command plus: --resume %s", path)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("aborted")
        return errors.EXIT_CANCELLED
    except MemoryError:
        log.error("error: out of memory; try --batch 1, a shorter --duration, --quantize int8 or "
                  "a machine with more memory")
        return errors.EXIT_RESOURCES


def _in_flags(exc: errors.RhythmflowError) -> str:
    """The error message in the command line's words: library messages name request fields (a
    leading ``field:`` and ``field=value`` settings); here each becomes its flag
    (``batch=1`` → ``--batch 1``). Only the CLI knows flags."""
    from rhythmflow.cli.flags import in_flags

    return in_flags(str(exc), getattr(exc, "field", None))


def _json_default(o):
    return str(o)


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")


if __name__ == "__main__":
    sys.exit(main())
