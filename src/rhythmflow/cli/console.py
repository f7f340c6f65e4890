"""Progress rendering for the command line: a bar, log lines, or JSON events.

Library code emits the typed events of :mod:`rhythmflow.events`; only this module draws them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

from rhythmflow import events
from rhythmflow.cli.flags import in_flags

log = logging.getLogger("rhythmflow")


class ProgressView:
    """Turns events into output. mode: "bar" (stderr, redrawn), "log" (logging lines), "json"
    (one JSON object per line on stdout), "none". Warnings are shown in every mode but "json"
    (where they are events) unless ``quiet`` (``-q``)."""

    def __init__(self, mode: str = "bar", stream: TextIO | None = None, width: int = 28,
                 quiet: bool = False) -> None:
        self.mode = mode
        self.quiet = quiet
        self.stream = stream
        self.width = width
        self._open_bar = False

    @property
    def out(self) -> TextIO:
        return self.stream or (sys.stdout if self.mode == "json" else sys.stderr)

    def __call__(self, event: events.Event) -> None:
        if self.mode == "json":
            self.out.write(json.dumps(events.to_dict(event)) + "\n")
            self.out.flush()
            return
        if isinstance(event, events.Warning):
            if not self.quiet:
                self._end_bar()
                log.warning("warning: %s", in_flags(event.message))
            return
        if self.mode == "none":
            return
        if isinstance(event, (events.StageStarted, events.StageFinished)):
            self._end_bar()
            took = f" ({event.seconds:.1f}s)" if isinstance(event, events.StageFinished) else ""
            log.info("%s: %s%s", event.stage, event.message, took)
            return
        if isinstance(event, events.SamplingStep):
            self._progress(event.step, event.total, self._line("step", event, event.t,
                                                               event.sec_per_step))
        elif isinstance(event, events.DecodeChunk):
            self._progress(event.chunk, event.total, self._line("decode chunk", event))

    def _progress(self, step: int, total: int, line: str) -> None:
        if self.mode == "bar" and self.out.isatty():
            filled = round(self.width * step / total)
            bar = "█" * filled + "·" * (self.width - filled)
            self.out.write(f"\r{bar} {line}")
            self.out.flush()
            self._open_bar = True
            if step == total:
                self._end_bar()
        else:  # log lines (also the bar's fallback when stderr is not a terminal)
            log.info("%s", line)

    @staticmethod
    def _line(label: str, event, t: float | None = None, sec_per_step: float | None = None) -> str:
        # imported here: rhythmflow.sampling imports torch, which `rhythmflow serve` never loads
        from rhythmflow.sampling.progress import format_seconds

        done = event.step if isinstance(event, events.SamplingStep) else event.chunk
        parts = [f"{label} {done}/{event.total}"]
        if t is not None:
            parts.append(f"t={t:.3f}")
        parts.append(f"elapsed {format_seconds(event.elapsed)}")
        if event.eta is not None:
            parts.append(f"ETA {format_seconds(event.eta)}")
        if sec_per_step:
            parts.append(f"{sec_per_step:.2f} s/step")
        return " | ".join(parts)

    def _end_bar(self) -> None:
        if self._open_bar:
            self.out.write("\n")
            self.out.flush()
            self._open_bar = False


def setup_logging(verbosity: int) -> None:
    """-q → warnings only, default → info, -v → debug. Logs go to stderr."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s" if verbosity <= 0 else
                                           "%(asctime)s %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("jieba", "phonemizer", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
