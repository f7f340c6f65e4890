"""The VAE boundary: latents ``[b, d, n]`` ↔ audio ``[b, c, n * hop]``.

Shapes: b - batch, d - latent channels (64), n - latent frames, c - audio channels (2),
hop - audio samples per latent frame (2048); 44.1 kHz. The sampler works in ``[b, n, d]``:
transpose (``x.transpose(1, 2)``) at this boundary.

The official VAE is a TorchScript module with ``decode_export(z [b, 64, n]) -> [b, 2, n*2048]``
and ``encode_export(x [b, 2, s]) -> [b, 128, s // 2048]`` (mean and pre-softplus scale).

Chunked decoding/encoding (upstream ``decode_audio``/``encode_audio``, chunked=True): windows of
``chunk_size`` frames every ``chunk_size - overlap`` frames, plus a last window aligned to the
end; each window is processed alone and only its centre is pasted — ``overlap // 2`` frames are
dropped at every inner window edge, later windows overwrite earlier ones. A convolutional VAE
whose receptive field is within ``overlap // 2`` frames gives the same result chunked and whole;
a larger overlap costs time, a smaller one leaves seams. Memory grows with ``chunk_size``, so the
default is chosen from the free memory of the device (:func:`auto_chunk_size`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F

from rhythmflow.assets import resolve
from rhythmflow.errors import CheckpointError, NumericalError, UsageError
from rhythmflow.runtime import available_memory
from rhythmflow.specs import HOP, LATENT_CHANNELS, SAMPLE_RATE

log = logging.getLogger(__name__)

LATENT_DIM = LATENT_CHANNELS
AUDIO_CHANNELS = 2
DEFAULT_OVERLAP = 32
UPSTREAM_CHUNK_SIZE = 128
# Rough peak activation memory of the official decoder per latent frame and batch item (float32).
BYTES_PER_FRAME = 8 << 20

ChunkCallback = Callable[[int, int], None]  # (chunks done, chunks total)


class VAE(Protocol):
    """What the pipeline needs from a VAE; another implementation can be dropped in."""

    sample_rate: int
    hop: int
    latent_dim: int
    channels: int

    def decode(
        self, latents: torch.Tensor, *, on_chunk: ChunkCallback | None = None
    ) -> torch.Tensor: ...

    def encode(
        self, audio: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


class Window(NamedTuple):
    """Frames ``[start, stop)`` go in; frames ``[keep_start, keep_stop)`` of the result are kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


def chunk_windows(n: int, chunk_size: int, overlap: int) -> list[Window]:
    """Upstream's window layout for ``n`` frames (see the module docstring)."""
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


def auto_chunk_size(
    device: torch.device | str = "cpu",
    *,
    batch: int = 1,
    overlap: int = DEFAULT_OVERLAP,
    available_bytes: int | None = None,
) -> int:
    """Chunk size in frames that keeps the decoder within a quarter of the free memory: a
    multiple of 32 in [max(64, overlap + 32), 1024]; upstream uses 128."""
    free = available_memory(device) if available_bytes is None else available_bytes
    frames = int(free // 4 // (BYTES_PER_FRAME * max(batch, 1)))
    lo = max(64, (overlap // 32 + 1) * 32)
    return max(lo, min(1024, frames // 32 * 32))


class TorchScriptVAE:
    """The official TorchScript VAE (or any module with the same two methods).

    ``decode(latents [b, 64, n]) -> float32 [b, 2, n * 2048]``;
    ``encode(audio [b, 2, s]) -> float32 [b, 64, s // 2048]`` (trailing partial frame dropped).
    ``chunked`` (default True) and ``chunk_size`` (frames; None → :func:`auto_chunk_size`) apply
    to both. Inputs are moved to the module's device and dtype.
    """

    sample_rate = SAMPLE_RATE
    hop = HOP
    latent_dim = LATENT_DIM
    channels = AUDIO_CHANNELS

    def __init__(
        self,
        module: torch.jit.ScriptModule,
        *,
        device: torch.device | str = "cpu",
        chunked: bool = True,
        chunk_size: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
    ) -> None:
        self.module = module
        self.device = torch.device(device)
        self.dtype = next(iter(module.parameters()), torch.zeros(())).dtype
        self.chunked, self.chunk_size, self.overlap = chunked, chunk_size, overlap
        if chunk_size is not None:
            chunk_windows(chunk_size + 1, chunk_size, overlap)  # validates the pair early

    def _windows(self, n: int, batch: int) -> list[Window]:
        if not self.chunked:
            return [Window(0, n, 0, n)]
        size = self.chunk_size or auto_chunk_size(self.device, batch=batch, overlap=self.overlap)
        return chunk_windows(n, size, self.overlap)

    def _run(self, method, x, n: int, in_ratio: int, out_ratio: int, out_shape, on_chunk):
        """Apply ``method`` window by window over ``n`` frames; a frame is ``in_ratio`` input
        steps and ``out_ratio`` output steps."""
        out = torch.zeros(out_shape, dtype=torch.float32, device=self.device)
        wins = self._windows(n, x.shape[0])
        with torch.no_grad():
            for k, w in enumerate(wins):
                y = method(x[..., w.start * in_ratio : w.stop * in_ratio])
                expect = (out_shape[0], out_shape[1], (w.stop - w.start) * out_ratio)
                if tuple(y.shape) != expect:
                    raise CheckpointError(
                        f"the VAE returned shape {list(y.shape)} for input {list(x.shape[:2])}"
                        f"+[{(w.stop - w.start) * in_ratio}]; expected {list(expect)} "
                        f"({self.hop} samples per latent frame)"
                    )
                lo, hi = (w.keep_start - w.start) * out_ratio, (w.keep_stop - w.start) * out_ratio
                out[..., w.keep_start * out_ratio : w.keep_stop * out_ratio] = y[..., lo:hi].float()
                if on_chunk is not None:
                    on_chunk(k + 1, len(wins))
        return out

    def decode(
        self, latents: torch.Tensor, *, on_chunk: ChunkCallback | None = None
    ) -> torch.Tensor:
        """Latents ``[b, 64, n]`` → float32 audio ``[b, 2, n * 2048]`` on the VAE's device;
        ``on_chunk(done, total)`` is called after each chunk."""
        if latents.dim() != 3 or latents.shape[1] != self.latent_dim:
            hint = (
                " (sampler layout [b, n, 64]? pass x.transpose(1, 2))"
                if latents.shape[-1] == self.latent_dim
                else ""
            )
            raise UsageError(
                f"VAE latents must be [b, {self.latent_dim}, n]; got {list(latents.shape)}{hint}"
            )
        if not torch.isfinite(latents).all():
            raise NumericalError("the latents to decode contain NaN or Inf")
        b, _, n = latents.shape
        z = latents.to(self.device, self.dtype)
        return self._run(
            self.module.decode_export, z, n, 1, self.hop, (b, self.channels, n * self.hop), on_chunk
        )

    def encode(
        self,
        audio: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        sample: bool = True,
        on_chunk: ChunkCallback | None = None,
    ) -> torch.Tensor:
        """Audio ``[b, 2, s]`` (44.1 kHz) → float32 latents ``[b, 64, s // 2048]``: the posterior
        ``mean + N(0,1) * (softplus(scale) + 1e-4)`` as upstream (noise from ``generator``), or
        the mean when ``sample`` is False."""
        if audio.dim() != 3 or audio.shape[1] != self.channels:
            raise UsageError(
                f"audio to encode must be [b, {self.channels}, samples]; got {list(audio.shape)}"
            )
        b, _, s = audio.shape
        n = s // self.hop
        if n == 0:
            raise UsageError(f"audio to encode is {s} samples; at least {self.hop} are needed")
        x = audio[..., : n * self.hop].to(self.device, self.dtype)
        raw = self._run(
            self.module.encode_export, x, n, self.hop, 1, (b, 2 * self.latent_dim, n), on_chunk
        )
        mean, scale = raw.chunk(2, dim=1)
        if not sample:
            return mean
        dev = generator.device if generator is not None else mean.device
        noise = torch.randn(mean.shape, generator=generator, device=dev).to(mean.device)
        return mean + noise * (F.softplus(scale) + 1e-4)


def load_vae(
    path: str | os.PathLike | None = None,
    *,
    device: torch.device | str = "cpu",
    assets_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
    chunked: bool = True,
    chunk_size: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
) -> TorchScriptVAE:
    """Load the TorchScript VAE from ``path`` or the ``vae`` asset (checksum-verified) onto
    ``device``. Raises AssetError (missing/corrupt asset) or CheckpointError (not a TorchScript
    file, or one without ``decode_export``/``encode_export``)."""
    p = resolve("vae", path=path, assets_dir=assets_dir, offline=offline)
    try:
        with warnings.catch_warnings():  # the release *is* TorchScript; its deprecation is moot
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            module = torch.jit.load(str(p), map_location=torch.device(device))
    except (RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(
            f"{p} is not a TorchScript VAE file ({str(exc).splitlines()[0]})"
        ) from exc
    missing = [m for m in ("decode_export", "encode_export") if not hasattr(module, m)]
    if missing:
        raise CheckpointError(
            f"{p} is a TorchScript module without {', '.join(missing)}; it is not the DiffRhythm VAE"
        )
    module.eval()
    log.info("VAE loaded from %s on %s", p, device)
    return TorchScriptVAE(
        module, device=device, chunked=chunked, chunk_size=chunk_size, overlap=overlap
    )
