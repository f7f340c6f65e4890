"""The closed vocabulary of events a generation reports, one typed value each.

The library emits these (through one ``on_event`` callable); every front end renders them: the
CLI's bar and log lines (:mod:`rhythmflow.cli.console`), ``--progress json`` (one
:func:`to_dict` per line), and the service's Server-Sent Events. Nothing else is ever emitted,
so a front end that handles these six types handles everything.

=================  ==========================================================================
``type``           meaning
=================  ==========================================================================
stage_started      a stage began: load, lyrics, style, edit, estimate, sample, decode, write
stage_finished     a stage ended, with its wall seconds
sampling_step      one solver step done: step k of total, flow time t, elapsed, ETA, s/step
decode_chunk       one VAE window decoded: chunk k of total, elapsed, ETA
warning            something the user should know (a dropped lyric line, an anytime finish)
result             the job ended: status completed|timeout|cancelled|failed, files, seeds
=================  ==========================================================================

Importing this module is cheap (no torch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

STAGES = ("load", "lyrics", "style", "edit", "estimate", "sample", "decode", "write")


@dataclass(frozen=True)
class StageStarted:
    stage: str
    message: str
    type: ClassVar[str] = "stage_started"


@dataclass(frozen=True)
class StageFinished:
    stage: str
    message: str
    seconds: float
    type: ClassVar[str] = "stage_finished"


@dataclass(frozen=True)
class SamplingStep:
    step: int  # solver steps done, 1..total (counting steps done before a resume)
    total: int
    t: float  # flow time reached (0 noise, 1 data)
    elapsed: float  # seconds since sampling (re)started
    eta: float  # seconds until the last step is done
    sec_per_step: float
    evaluations: int
    type: ClassVar[str] = "sampling_step"


@dataclass(frozen=True)
class DecodeChunk:
    chunk: int  # windows decoded, 1..total
    total: int
    elapsed: float
    eta: float | None
    type: ClassVar[str] = "decode_chunk"


@dataclass(frozen=True)
class Warning:  # noqa: A001 - the event's name in the vocabulary
    message: str
    type: ClassVar[str] = "warning"


@dataclass(frozen=True)
class Result:
    status: str  # completed | timeout | cancelled | failed
    message: str = ""
    outputs: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    seconds: float | None = None
    state_path: str | None = None
    type: ClassVar[str] = "result"


Event = StageStarted | StageFinished | SamplingStep | DecodeChunk | Warning | Result
EventSink = Callable[[Event], None]
TYPES: dict[str, type] = {c.type: c for c in
                          (StageStarted, StageFinished, SamplingStep, DecodeChunk, Warning, Result)}


def to_dict(event: Event) -> dict[str, Any]:
    """``{"event": type, **fields}``, JSON-able."""
    d: dict[str, Any] = {"event": event.type}
    for f in dataclasses.fields(event):
        v = getattr(event, f.name)
        d[f.name] = list(v) if isinstance(v, tuple) else v
    return d


def from_dict(d: dict[str, Any]) -> Event:
    """The event back from :func:`to_dict`'s output; ValueError for an unknown type."""
    kind = d.get("event")
    if kind not in TYPES:
        raise ValueError(f"unknown event type {kind!r}; known: {', '.join(TYPES)}")
    cls = TYPES[kind]
    kwargs = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
    for name in ("outputs", "seeds"):
        if name in kwargs:
            kwargs[name] = tuple(kwargs[name])
    return cls(**kwargs)


def emit(sink: EventSink | None, event: Event) -> None:
    if sink is not None:
        sink(event)
