"""Edit mode in the sampler: the reference latents and the mask of the frames to regenerate.

Shapes: n - latent frames of the song being generated, d - latent channels (64). The sampler gets
``latent_pred_segments`` (``[start, end)`` frame pairs: generated), the bool mask ``[n]`` (True =
generated) and the reference latents ``[1, n, d]`` (sampler layout), cut to ``n`` frames or
zero-padded; frames that are kept must lie inside the reference song.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rhythmflow.errors import UsageError
from rhythmflow.sampling.guidance import segments_to_mask
from rhythmflow.specs import HOP, SAMPLE_RATE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EditPlan:
    """What the sampler needs for an edit: ``reference`` ``[1, n, d]``, ``latent_pred_segments``
    (``[start, end)`` frames regenerated), ``mask`` bool ``[n]`` (True = regenerated), and the
    reference song's own length ``ref_frames``."""

    reference: torch.Tensor
    latent_pred_segments: list[tuple[int, int]]
    mask: torch.Tensor
    ref_frames: int


def plan_edit(
    reference: torch.Tensor,
    pred: Sequence[tuple[int, int]],
    n_frames: int,
    *,
    sample_rate: int = SAMPLE_RATE,
    hop: int = HOP,
) -> EditPlan:
    """Combine reference latents ``[1, n_ref, d]`` and the plan's regenerated frames ``pred``
    (``[start, end)`` pairs, :attr:`rhythmflow.planner.core.Plan.edit_frames`) for a song of
    ``n_frames``. The reference is cut to ``n_frames`` or zero-padded; UsageError if a frame that
    is kept (outside every segment) lies past the end of the reference song."""
    if reference.dim() != 3 or reference.shape[0] != 1:
        raise UsageError(f"reference latents must be [1, n, d]; got {list(reference.shape)}")
    pred = [(int(s), int(e)) for s, e in pred]
    mask = segments_to_mask(pred, n_frames)
    n_ref = reference.shape[1]
    if n_ref < n_frames and not bool(mask[n_ref:].all()):
        first = n_ref + int(torch.nonzero(~mask[n_ref:])[0])
        ref_s = math.floor(n_ref * hop / sample_rate * 100) / 100
        raise UsageError(
            f"the reference song is {ref_s:.2f} s but the song being generated is "
            f"{n_frames * hop / sample_rate:.2f} s, and from {first * hop / sample_rate:.2f} s on "
            f"there is nothing to keep; add a segment [{ref_s:.2f}, -1] or generate a shorter song",
            field="edit_segments")
    ref = reference[:, :n_frames]
    if n_ref < n_frames:
        ref = torch.nn.functional.pad(ref, (0, 0, 0, n_frames - n_ref))
    log.info("edit: regenerating frames %s of %d", pred, n_frames)
    return EditPlan(ref.float().contiguous(), pred, mask, n_ref)
