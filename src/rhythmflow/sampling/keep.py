"""Never lose finished work (issue 14): what to do when a run is stopped or fails after sampling.

Sampling is the expensive part (minutes to hours on a CPU). Once it has finished, a Ctrl-C during
the VAE decode or the audio write, a full disk, a VAE error or any other failure first saves the
sampler state (a resume from it only decodes) and then reports the failure with the ``--resume``
path. Before sampling starts, a Ctrl-C stops the run at the next stage boundary with nothing to
keep (no 0-step state file).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, NoReturn

from rhythmflow.errors import (
    EXIT_CANCELLED,
    ResourceError,
    RhythmflowError,
    SamplingCancelled,
)

log = logging.getLogger(__name__)


class StoppedAfterSampling(SamplingCancelled):
    """Ctrl-C / SIGTERM during the VAE decode or the write: the sampled latents were kept."""

    exit_code = EXIT_CANCELLED


def check_cancel(cancel: Any, before: str) -> None:
    """Raise SamplingCancelled (exit 130) when ``cancel`` (a CancelToken or None) is set; the
    message says that nothing was computed yet, so nothing was saved."""
    if cancel is not None and cancel.is_set():
        raise SamplingCancelled(f"cancelled before {before}: sampling had not started, so "
                                "there is nothing to keep (no state saved)")


def decode_cancelled(cancel: Any, done: int, total: int) -> None:
    """Called after each VAE chunk: raise StoppedAfterSampling when ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise StoppedAfterSampling(f"cancelled during the VAE decode (after chunk {done}/{total})")


def _save(state: Any, path: str | os.PathLike | None) -> tuple[Path | None, str]:
    if state is None or path is None:
        return None, "the sampled latents could not be kept (no state path)"
    try:
        saved = state.save(path)
    except RhythmflowError as exc:
        return None, f"the sampled latents could NOT be saved ({exc})"
    return saved, f"the finished sampling was saved to {saved}"


def keep_and_reraise(exc: BaseException, state: Any, path: str | os.PathLike | None) -> NoReturn:
    """Save ``state`` (the finished sampler state) to ``path`` first, then re-raise ``exc`` as a
    typed error carrying ``state_path`` (the CLI prints the ``--resume`` command). A second
    Ctrl-C (KeyboardInterrupt) is re-raised as is after the save; an unexpected exception too,
    after logging where the work was kept."""
    saved, kept = _save(state, path)
    if isinstance(exc, StoppedAfterSampling):
        raise StoppedAfterSampling(f"{exc}; {kept}", state, saved) from None
    if isinstance(exc, RhythmflowError):
        exc.args = (f"{exc}; {kept}",)
        exc.state_path = saved  # type: ignore[attr-defined]
        raise exc
    if isinstance(exc, MemoryError):
        raise _with_path(ResourceError(
            f"out of memory after sampling (in the VAE decode or the write): {kept}; resume "
            "with batch=1 on a machine with more free memory"), saved) from None
    log.error("%s%s", kept, f"; resume from {saved}" if saved
              else "")
    raise exc


def _with_path(err: RhythmflowError, path: Path | None) -> RhythmflowError:
    err.state_path = path  # type: ignore[attr-defined]
    return err
