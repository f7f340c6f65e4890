"""Progress rendering for the command line: a bar, log lines, or JSON events.

Library code emits typed events (:class:`StageEvent`, sampling ``SampleEvent``, VAE chunk events);
only this module draws them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, TextIO

from rhythmflow.sampling.progress import format_seconds

log = logging.getLogger("rhythmflow")


@dataclass(frozen=True)
class StageEvent:
    """A pipeline stage started or finished: load, lyrics, style, estimate, sample, decode, write."""

    stage: str
    message: str
    done: bool = False
    seconds: float | None = None


def event_dict(event: Any) -> dict[str, Any]:
    """A JSON-able dict of an event (tensors left out)."""
    d: dict[str, Any] = {"event": type(event).__name__}
    if is_dataclass(event):
        for f in fields(event):
            v = getattr(event, f.name)
            if isinstance(v, str | int | float | bool) or v is None:
                d[f.name] = v
            elif isinstance(v, list | tuple) and all(isinstance(i, int | float | str) for i in v):
                d[f.name] = list(v)
    return d


class ProgressView:
    """Turns events into output. mode: "bar" (stderr, redrawn), "log" (logging lines), "json"
    (one JSON object per line on stdout), "none"."""

    def __init__(self, mode: str = "bar", stream: TextIO | None = None, width: int = 28) -> None:
        self.mode = mode
        self.stream = stream
        self.width = width
        self._open_bar = False
        self._last_log = 0.0

    @property
    def out(self) -> TextIO:
        return self.stream or (sys.stdout if self.mode == "json" else sys.stderr)

    def __call__(self, event: Any) -> None:
        if self.mode == "none":
            return
        if self.mode == "json":
            self.out.write(json.dumps(event_dict(event)) + "\n")
            self.out.flush()
            return
        if isinstance(event, StageEvent):
            self._end_bar()
            took = f" ({event.seconds:.1f}s)" if event.seconds is not None else ""
            log.info("%s: %s%s", event.stage, event.message, took)
            return
        step, total = getattr(event, "step", None), getattr(event, "total", None)
        if step is None or not total:
            return
        line = self._line(event)
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

    def _line(self, event: Any) -> str:
        label = "decode chunk" if hasattr(event, "chunk") or type(event).__name__.startswith(
            ("Decode", "Chunk", "Vae")) else "step"
        parts = [f"{label} {event.step}/{event.total}"]
        if hasattr(event, "t"):
            parts.append(f"t={event.t:.3f}")
        if hasattr(event, "elapsed"):
            parts.append(f"elapsed {format_seconds(event.elapsed)}")
        if getattr(event, "eta", None) is not None:
            parts.append(f"ETA {format_seconds(event.eta)}")
        if getattr(event, "sec_per_step", None):
            parts.append(f"{event.sec_per_step:.2f} s/step")
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
