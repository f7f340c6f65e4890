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

from collections.abc import Sequence
from itertools import pairwise

from rhythmflow.errors import UsageError
from rhythmflow.specs import HOP, SAMPLE_RATE

FIELD = "edit_segments"


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
            raise UsageError(f"{label} ends before it starts; write [start, end] with end > start",
                             field=FIELD)
        if sf >= n_frames or ef > n_frames:
            raise UsageError(
                f"{label} reaches past the end of the {seconds:.2f} s song being generated"
            , field=FIELD)
        if ef <= sf:
            raise UsageError(
                f"{label} is empty: shorter than one latent frame ({hop / sample_rate * 1000:.0f} ms)"
            , field=FIELD)
        frames.append((sf, ef, label))
    frames.sort()
    for (_, e0, a), (s1, _, b) in pairwise(frames):
        if s1 < e0:
            raise UsageError(f"{a} and {b} overlap; merge them into one segment", field=FIELD)
    return [(s, e) for s, e, _ in frames]
