"""Resumable sampler state: what a stopped run needs to finish later, bit-identically.

A state file is ``torch.save`` of plain tensors, numbers and strings (loadable with
``weights_only=True``), written atomically (temporary file in the same folder, then rename).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rhythmflow.errors import UsageError

FORMAT = "rhythmflow-sampler-state"
VERSION = 1
#: Settings recorded by states written when the sampler built the grid itself; dropped on load.
_GRID_KEYS = ("schedule", "sway_coef")


@dataclass(frozen=True)
class SampleSettings:
    """Everything that determines the trajectory besides the conditioning inputs and the time
    grid (the grid is stored beside the settings, :attr:`SamplerState.grid`, and compared as a
    tensor: it carries the schedule and sway coefficient the caller chose).

    ``tag`` is a free-form fingerprint of the inputs (lyrics, style, checkpoint...) set by the
    caller; a resume with a different tag is refused like any other mismatch.
    ``guidance_layout`` ("batched" or "split") changes the GEMM rounding, so a resume must use
    the recorded one; states written before it was recorded read as "batched" (the only layout
    a plan chose then). States written when the sampler still built the grid also record
    ``schedule`` and ``sway_coef``; those keys are read and dropped (the stored grid holds them).
    """

    steps: int
    solver: str
    cfg_strength: float
    guidance_interval: tuple[float, float] | None
    seed: int | None
    shape: tuple[int, int, int]
    model_dtype: str
    tag: str = ""
    guidance_layout: str = "batched"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["guidance_interval"] = (
            None if self.guidance_interval is None else list(self.guidance_interval)
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {"guidance_layout": "batched", **d}  # states from before the layout was recorded
        d = {k: v for k, v in d.items() if k not in _GRID_KEYS}  # the stored grid holds them
        if set(d) != names:
            raise ValueError(f"settings keys {sorted(d)} differ from {sorted(names)}")
        gi = d["guidance_interval"]
        return cls(
            **{
                **d,
                "shape": tuple(d["shape"]),
                "guidance_interval": None if gi is None else tuple(gi),
            }
        )

    def mismatches(self, other: SampleSettings) -> list[str]:
        """``"name: <self> in the state, <other> now"`` for every differing field."""
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                out.append(f"{f.name}: {a!r} in the state, {b!r} now")
        return out


@dataclass(frozen=True)
class SamplerState:
    """The state after ``step`` completed solver steps of ``settings.steps``.

    x [b, n, m] float32 on the grid point ``grid[step]``; ``edit_mask`` [b, n] bool or None;
    ``evaluations`` and ``elapsed`` accumulate over every call that worked on this run;
    ``reason`` says why it stopped ("timeout" or "cancelled").
    """

    x: Tensor
    step: int
    grid: Tensor
    settings: SampleSettings
    edit_mask: Tensor | None
    evaluations: int
    elapsed: float
    reason: str

    @property
    def t(self) -> float:
        return float(self.grid[self.step])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state atomically to ``path`` (tmp file + rename) and return the path.
        On failure nothing is left behind and UsageError (ResourceError when the disk is full)
        says why."""
        path = Path(path)
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "x": self.x.detach().to("cpu", torch.float32).contiguous(),
            "step": self.step,
            "grid": self.grid.detach().cpu(),
            "settings": self.settings.to_dict(),
            "edit_mask": None if self.edit_mask is None else self.edit_mask.detach().cpu(),
            "evaluations": self.evaluations,
            "elapsed": self.elapsed,
            "reason": self.reason,
        }
        from rhythmflow.files import atomic_writer

        try:
            with atomic_writer(path, "save the sampler state to") as fh:
                torch.save(payload, fh)
        except RuntimeError as exc:  # torch's zip writer wraps the OSError of a failed write
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, OSError):
                from rhythmflow.files import os_error

                raise os_error(path, cause, "save the sampler state to") from exc
            raise UsageError(f"cannot save the sampler state to {path}: the write failed (is "
                             "the disk full or the folder read-only?)") from exc
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SamplerState:
        """Read a state written by :meth:`save`; anything else raises UsageError."""
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"sampler state {path} does not exist")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors come in many types
            from rhythmflow.errors import plain_reason

            raise UsageError(f"{path} is not a readable rhythmflow sampler state "
                             f"({plain_reason(exc)}); start again without resuming from it") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise UsageError(f"{path} is not a rhythmflow sampler state (no '{FORMAT}' marker)")
        if d.get("version") != VERSION:
            raise UsageError(
                f"{path} is a version {d.get('version')} sampler state; this rhythmflow reads "
                f"version {VERSION} — restart the generation without resuming"
            )
        try:
            return cls(
                x=d["x"],
                step=int(d["step"]),
                grid=d["grid"],
                settings=SampleSettings.from_dict(d["settings"]),
                edit_mask=d["edit_mask"],
                evaluations=int(d["evaluations"]),
                elapsed=float(d["elapsed"]),
                reason=str(d["reason"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(
                f"{path} is a damaged sampler state ({exc}); restart without resuming"
            ) from None


def check_resumable(
    state: SamplerState, settings: SampleSettings, grid: Tensor, edit_mask: Tensor | None
) -> None:
    """Raise UsageError naming every difference between ``state`` and the run about to resume it."""
    problems = state.settings.mismatches(settings)
    if not torch.equal(state.grid.cpu(), grid.cpu()):
        problems.append(
            f"time grid: {_describe_grid(state.grid)} in the state, {_describe_grid(grid)} now "
            "(made with other steps, schedule or sway_coef)"
        )
    if tuple(state.x.shape) != settings.shape:
        problems.append(
            f"state tensor shape {list(state.x.shape)}, expected {list(settings.shape)}"
        )
    mask_a = None if state.edit_mask is None else state.edit_mask.cpu()
    mask_b = None if edit_mask is None else edit_mask.cpu()
    if (mask_a is None) != (mask_b is None) or (
        mask_a is not None and not torch.equal(mask_a, mask_b)
    ):
        problems.append("edit mask differs")
    if not 0 <= state.step <= settings.steps:
        problems.append(f"step {state.step} is outside 0..{settings.steps}")
    if problems:
        raise UsageError(
            "the resume state does not match this run: "
            + "; ".join(problems)
            + ". Resume with the settings saved in the state, or start a new run without resuming."
        )


def _describe_grid(grid: Tensor) -> str:
    """``"9 points [0, 0.0123, 0.0489, …, 1]"``: enough to tell two grids apart in a message."""
    g = [f"{v:.4g}" for v in grid.detach().cpu().float().tolist()]
    shown = g if len(g) <= 5 else [*g[:3], "…", g[-1]]
    return f"{len(g)} points [{', '.join(shown)}]"
