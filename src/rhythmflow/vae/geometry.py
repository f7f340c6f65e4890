"""The fixed window geometry of chunked VAE passes (torch-free: ``plan`` and the estimate use it).

Windows of ``chunk`` frames every ``chunk - overlap`` frames, plus a last window aligned to the
end; only a window's centre is kept (see :mod:`rhythmflow.vae`).
"""

from __future__ import annotations

from typing import NamedTuple

from rhythmflow.errors import UsageError

#: Latent frames each side over which the official (Oobleck) decoder's output still depends on
#: its input: measured on the full-size architecture, a decode changes by < 1e-6 beyond 9 frames
#: from a window edge (docs/performance-log.md). Each inner window edge drops ``overlap // 2`` = 16.
RECEPTIVE_MARGIN = 16
DEFAULT_OVERLAP = 2 * RECEPTIVE_MARGIN
#: The fixed decode window (frames). Measured on the full-size decoder (2-core AMX Xeon, float32):
#: windows of 128–256 frames decode faster per frame than bigger ones (cache-resident
#: activations) and 256 wastes 12.5 % on overlap at 2048 frames (128: 37 %).
DEFAULT_CHUNK = 256
UPSTREAM_CHUNK_SIZE = 128


class DecodeGeometry(NamedTuple):
    """The window layout of a chunked VAE pass: ``chunk`` frames per window (0 = whole input in
    one window), ``overlap`` frames shared by neighbouring windows. Items run one at a time."""

    chunk: int
    overlap: int

    def to_dict(self) -> dict:
        return {"chunk": self.chunk, "overlap": self.overlap, "per_item": True}


#: What every decode uses unless a caller asks for another geometry explicitly.
DECODE_GEOMETRY = DecodeGeometry(DEFAULT_CHUNK, DEFAULT_OVERLAP)


class Window(NamedTuple):
    """Frames ``[start, stop)`` go in; frames ``[keep_start, keep_stop)`` of the result are kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


def chunk_windows(n: int, chunk_size: int, overlap: int) -> list[Window]:
    """Upstream's window layout for ``n`` frames (see :mod:`rhythmflow.vae`)."""
    if not 0 <= overlap < chunk_size:
        raise UsageError(
            f"VAE chunk overlap must be in [0, chunk_size={chunk_size}); got {overlap}"
        )
    if n <= chunk_size:
        return [Window(0, n, 0, n)]
    starts = list(range(0, n - chunk_size + 1, chunk_size - overlap))
    if starts[-1] + chunk_size != n:
        starts.append(n - chunk_size)
    cut, last = overlap // 2, len(starts) - 1
    return [
        Window(
            s, s + chunk_size, s + (cut if k > 0 else 0), s + chunk_size - (cut if k < last else 0)
        )
        for k, s in enumerate(starts)
    ]


#: peak activation bytes of the decoder per latent frame of a window (float32 estimate)
BYTES_PER_FRAME = 8 << 20
#: the TorchScript VAE's weights (0.63 GB) and what the runtime keeps around them
WEIGHT_BYTES = int(0.65 * 1024**3)


def decode_memory(frames: int, batch: int = 1, chunk: int = DEFAULT_CHUNK, *,
                  hop: int = 2048, channels: int = 2) -> int:
    """Peak bytes of a ``frames``-frame decode of ``batch`` items, one window and one item at
    a time (``chunk`` 0: the whole song in one window): one window's activations plus the
    float32 audio of every item. The one VAE memory formula (the plan and the VAE use it)."""
    window = frames if chunk == 0 else min(frames, chunk)
    return window * BYTES_PER_FRAME + batch * frames * hop * channels * 4


def decoded_frames(n: int, chunk: int = DEFAULT_CHUNK, overlap: int = DEFAULT_OVERLAP) -> int:
    """Latent frames a chunked pass over ``n`` frames decodes, overlaps included (2048 frames:
    9 windows of 256 = 2304)."""
    return sum(w.stop - w.start for w in chunk_windows(n, chunk, overlap))
