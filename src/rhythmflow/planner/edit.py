"""Edit mode: regenerate chosen time segments of a reference song and keep the rest.

Shapes: n - latent frames of the song being generated, d - latent channels (64).

Segments are given in seconds, ``[[start, end], ...]``; ``-1`` as a start means the song's start
and as an end the end of the song being generated (upstream maps it to ``max_frames``). Seconds
become frames as upstream ``get_reference_latent`` does: ``int(seconds * 44100 / 2048)``.
The sampler gets ``latent_pred_segments`` (``[start, end)`` frame pairs: generated), the bool
mask ``[n]`` (True = generated) and the reference latents ``[1, n, d]`` (sampler layout), cut to
``n`` frames or zero-padded; frames that are kept must lie inside the reference song.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from numbers import Real

import torch

from rhythmflow.audio import io as audio
from rhythmflow.errors import UsageError
from rhythmflow.sampling.guidance import segments_to_mask
from rhythmflow.specs import HOP, SAMPLE_RATE
from rhythmflow.vae.codec import VAE

log = logging.getLogger(__name__)

REFERENCE_PEAK_DBFS = -6.0  # upstream normalises the reference song to -6 dBFS before encoding


def parse_segments(spec: str | Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """``"[[0, 10], [40.5, -1]]"`` (JSON) or a list of pairs → ``[(start, end), ...]`` seconds.
    UsageError for anything else, an empty list, or a negative time other than -1."""
    what = f"edit segments {spec!r}"
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            raise UsageError(
                f'{what} are not valid JSON; write e.g. "[[0, 10], [40.5, -1]]"'
            ) from None
    if not isinstance(spec, (list, tuple)) or not spec:
        raise UsageError(
            f'{what}: give a non-empty list of [start, end] pairs in seconds, e.g. "[[0, 10]]"'
        )
    out = []
    for seg in spec:
        if (
            not isinstance(seg, (list, tuple))
            or len(seg) != 2
            or not all(isinstance(t, Real) and not isinstance(t, bool) for t in seg)
        ):
            raise UsageError(f"{what}: {seg!r} is not a [start, end] pair of numbers (seconds)")
        start, end = float(seg[0]), float(seg[1])
        for t in (start, end):
            if not math.isfinite(t) or (t < 0 and t != -1):
                raise UsageError(
                    f"{what}: {t:g} in {list(seg)} is not a time; use seconds ≥ 0, or -1 for start/end"
                )
        out.append((start, end))
    return out


def segments_to_frames(
    segments: Sequence[tuple[float, float]],
    n_frames: int,
    *,
    sample_rate: int = SAMPLE_RATE,
    hop: int = HOP,
) -> list[tuple[int, int]]:
    """Seconds → sorted ``[start, end)`` frame pairs within ``n_frames`` (-1 → 0 / n_frames).
    UsageError for a segment that is empty (shorter than one frame), reversed, past the end of
    the song being generated, or that overlaps another."""
    seconds = n_frames * hop / sample_rate
    frames = []
    for start, end in segments:
        sf = 0 if start == -1 else int(start * sample_rate / hop)
        ef = n_frames if end == -1 else int(end * sample_rate / hop)
        label = f"edit segment [{start:g}, {end:g}]"
        if end != -1 and start != -1 and end <= start:
            raise UsageError(f"{label} ends before it starts; write [start, end] with end > start")
        if sf >= n_frames or ef > n_frames:
            raise UsageError(
                f"{label} reaches past the end of the {seconds:.2f} s song being generated"
            )
        if ef <= sf:
            raise UsageError(
                f"{label} is empty: shorter than one latent frame ({hop / sample_rate * 1000:.0f} ms)"
            )
        frames.append((sf, ef, label))
    frames.sort()
    for (_, e0, a), (s1, _, b) in pairwise(frames):
        if s1 < e0:
            raise UsageError(f"{a} and {b} overlap; merge them into one segment")
    return [(s, e) for s, e, _ in frames]


def load_reference_song(path: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A reference song as the VAE wants it (upstream ``prepare_audio`` + ``normalize_audio``):
    float32 ``[1, 2, s]`` at ``sample_rate``, stereo, peak at -6 dBFS."""
    x, sr = audio.read_audio(path)
    x = audio.set_channels(audio.resample(x, sr, sample_rate), 2)
    if not float(abs(x).max()) > 0:
        raise UsageError(f"reference song {path} is silent; nothing to edit")
    return torch.from_numpy(audio.peak_normalize(x, REFERENCE_PEAK_DBFS)).unsqueeze(0)


def reference_latents(
    path: str | os.PathLike, vae: VAE, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Encode a reference song: float32 latents ``[1, n_ref, d]`` (sampler layout), sampled from
    the VAE posterior with ``generator`` as upstream."""
    song = load_reference_song(path, sample_rate=vae.sample_rate)
    return vae.encode(song, generator=generator).transpose(1, 2).contiguous()


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
    segments: str | Sequence[Sequence[float]],
    n_frames: int,
    *,
    sample_rate: int = SAMPLE_RATE,
    hop: int = HOP,
) -> EditPlan:
    """Combine reference latents ``[1, n_ref, d]`` and segments (seconds, see
    :func:`parse_segments`) for a song of ``n_frames``. The reference is cut to ``n_frames`` or
    zero-padded; UsageError if a frame that is kept (outside every segment) lies past the end of
    the reference song."""
    if reference.dim() != 3 or reference.shape[0] != 1:
        raise UsageError(f"reference latents must be [1, n, d]; got {list(reference.shape)}")
    pred = segments_to_frames(parse_segments(segments), n_frames, sample_rate=sample_rate, hop=hop)
    mask = segments_to_mask(pred, n_frames)
    n_ref = reference.shape[1]
    if n_ref < n_frames and not bool(mask[n_ref:].all()):
        first = n_ref + int(torch.nonzero(~mask[n_ref:])[0])
        ref_s = math.floor(n_ref * hop / sample_rate * 100) / 100
        raise UsageError(
            f"the reference song is {ref_s:.2f} s but the song being generated is "
            f"{n_frames * hop / sample_rate:.2f} s, and from {first * hop / sample_rate:.2f} s on "
            f"there is nothing to keep; add a segment [{ref_s:.2f}, -1] or generate a shorter song"
        )
    ref = reference[:, :n_frames]
    if n_ref < n_frames:
        ref = torch.nn.functional.pad(ref, (0, 0, 0, n_frames - n_ref))
    log.info("edit: regenerating frames %s of %d", pred, n_frames)
    return EditPlan(ref.float().contiguous(), pred, mask, n_ref)
