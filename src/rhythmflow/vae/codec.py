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
a larger overlap costs time, a smaller one leaves seams.

Same seed, same bytes: the window geometry is FIXED (:data:`DECODE_GEOMETRY`, chosen from the
official decoder's receptive field and measured speed, never from free memory or the batch
size) and batch items are processed one at a time, so an item's audio is bit-identical whatever
the memory, the batch size or the batch position. Memory only decides whether the job fits
(:meth:`TorchScriptVAE.check_fits`, a ResourceError with a fix otherwise). The geometry used is
recorded in the song's metadata (:meth:`TorchScriptVAE.geometry`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F

from rhythmflow.assets import resolve
from rhythmflow.errors import CheckpointError, NumericalError, ResourceError, UsageError
from rhythmflow.specs import HOP, LATENT_CHANNELS, SAMPLE_RATE
from rhythmflow.vae.geometry import (  # noqa: F401 (part of this module's API)
    DECODE_GEOMETRY,
    DEFAULT_CHUNK,
    DEFAULT_OVERLAP,
    RECEPTIVE_MARGIN,
    UPSTREAM_CHUNK_SIZE,
    DecodeGeometry,
    Window,
    chunk_windows,
    decode_memory,
    decoded_frames,
)

log = logging.getLogger(__name__)

LATENT_DIM = LATENT_CHANNELS
AUDIO_CHANNELS = 2
# Rough peak activation memory of the official decoder per latent frame of one window (float32).


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

    def geometry(self) -> DecodeGeometry: ...


class TorchScriptVAE:
    """The official TorchScript VAE (or any module with the same two methods).

    ``decode(latents [b, 64, n]) -> float32 [b, 2, n * 2048]``;
    ``encode(audio [b, 2, s]) -> float32 [b, 64, s // 2048]`` (trailing partial frame dropped).
    ``chunked`` (default True) and ``chunk_size`` (frames; None → the fixed
    :data:`DEFAULT_CHUNK`) apply to both; neither depends on memory or batch size, and batch
    items are processed one at a time (see the module docstring). Inputs are moved to the
    module's device and dtype.
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
        decoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
        decoder_kind: str = "torchscript",
    ) -> None:
        self.module = module
        self.device = torch.device(device)
        self.dtype = next(iter(module.parameters()), torch.zeros(())).dtype
        #: What decodes a window: the file's ``decode_export`` or an eager decoder built from
        #: its weights (``oobleck_fast.eager_decoder``); ``decoder_kind`` names it for logs.
        #: An eager decoder is given each window's kept frames (``keep=``) and returns only
        #: their audio; ``decode_export`` decodes the whole window.
        self.decoder = decoder if decoder is not None else module.decode_export
        self.decoder_kind = decoder_kind
        self.chunked, self.chunk_size, self.overlap = chunked, chunk_size, overlap
        if chunk_size is not None:
            chunk_windows(chunk_size + 1, chunk_size, overlap)  # validates the pair early

    @property
    def residual_dtype(self) -> str:
        """``"bfloat16"`` when an eager decoder runs its residual convolutions so, else
        ``"float32"`` (the float32 eager decoder, or TorchScript)."""
        dtype = getattr(self.decoder, "residual_dtype", torch.float32)
        return str(dtype).removeprefix("torch.")

    def geometry(self) -> DecodeGeometry:
        """The fixed window geometry of every pass (recorded in the song's metadata)."""
        if not self.chunked:
            return DecodeGeometry(0, 0)
        return DecodeGeometry(self.chunk_size or DEFAULT_CHUNK, self.overlap)

    def memory_needed(self, frames: int) -> int:
        """Peak activation bytes of one window of a ``frames``-frame decode (one item at a time,
        float32 estimate), plus the float32 output of one item."""
        return decode_memory(frames, 1, self.geometry().chunk, hop=self.hop,
                             channels=self.channels)

    def check_fits(self, frames: int, batch: int = 1, *, available: int) -> None:
        """Raise ResourceError (with a fix) when a ``frames``-frame decode of ``batch`` items
        cannot fit in ``available`` bytes (the caller measures the VAE device's free memory). Memory
        decides only this, never the geometry."""
        free = available
        need = decode_memory(frames, batch, self.geometry().chunk, hop=self.hop,
                             channels=self.channels)
        if need > free:
            raise ResourceError(
                f"the VAE decode needs ~{need / 2**30:.1f} GiB ({self.geometry().chunk or frames}"
                f"-frame windows) but {free / 2**30:.1f} GiB is free on {self.device}: close other "
                "programs, set batch=1 or a shorter duration"
            )

    def _windows(self, n: int) -> list[Window]:
        g = self.geometry()
        if g.chunk == 0:
            return [Window(0, n, 0, n)]
        return chunk_windows(n, g.chunk, g.overlap)

    def _run(self, method, x, n: int, in_ratio: int, out_ratio: int, out_shape, on_chunk):
        """Apply ``method`` item by item, window by window over ``n`` frames; a frame is
        ``in_ratio`` input steps and ``out_ratio`` output steps."""
        out = torch.zeros(out_shape, dtype=torch.float32, device=self.device)
        wins = self._windows(n)
        total = len(wins) * x.shape[0]
        crops = getattr(method, "crops_to_keep", False)  # the eager decoder (see __init__)
        with torch.no_grad():
            for i in range(x.shape[0]):
                for k, w in enumerate(wins):
                    window = x[i : i + 1, :, w.start * in_ratio : w.stop * in_ratio]
                    if crops:  # only the kept frames come back
                        a, b = w.keep_start - w.start, w.keep_stop - w.start
                        y, first, frames = method(window, keep=(a, b)), a, b - a
                    else:
                        y, first, frames = method(window), 0, w.stop - w.start
                    expect = (1, out_shape[1], frames * out_ratio)
                    if tuple(y.shape) != expect:
                        raise CheckpointError(
                            f"the VAE returned shape {list(y.shape)} for input [1, "
                            f"{x.shape[1]}, {(w.stop - w.start) * in_ratio}]; expected "
                            f"{list(expect)} ({self.hop} samples per latent frame)"
                        )
                    lo = (w.keep_start - w.start - first) * out_ratio
                    hi = (w.keep_stop - w.start - first) * out_ratio
                    out[i, :, w.keep_start * out_ratio : w.keep_stop * out_ratio] = (
                        y[0, :, lo:hi].float()
                    )
                    if on_chunk is not None:
                        on_chunk(i * len(wins) + k + 1, total)
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
            self.decoder, z, n, 1, self.hop, (b, self.channels, n * self.hop), on_chunk
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
    decoder: str = "auto",
    residual_dtype: torch.dtype = torch.float32,
) -> TorchScriptVAE:
    """Load the TorchScript VAE from ``path`` or the ``vae`` asset (checksum-verified) onto
    ``device``. Raises AssetError (missing/corrupt asset) or CheckpointError (not a TorchScript
    file, or one without ``decode_export``/``encode_export``).

    ``decoder``: ``"auto"`` (default) decodes on the CPU with the eager Oobleck decoder built
    from the file's own weights when the file's decoder is Oobleck and the two agree on a probe
    window (:func:`rhythmflow.model.oobleck_fast.eager_decoder`; 1.3-1.45x faster on a busy AMX
    Xeon, same audio up to float rounding), else with the file's TorchScript (logged);
    ``"torchscript"`` always uses the file's TorchScript. ``residual_dtype=torch.bfloat16``
    (eager decoder only; what ``plan`` chooses as ``vae_dtype`` where measured faster) runs the
    residual units' convolutions in bfloat16 (1.7-2.0x on an AMX CPU, 0.35 % audio error on
    random full-size weights; docs/performance-log.md) — if its audio error on a probe window of
    *these* weights is within the limit, else float32 (logged)."""
    if decoder not in ("auto", "torchscript"):
        raise UsageError(f"VAE decoder must be 'auto' or 'torchscript'; got {decoder!r}")
    p = resolve("vae", path=path, assets_dir=assets_dir, offline=offline)
    try:
        with warnings.catch_warnings():  # the release *is* TorchScript; its deprecation is moot
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            module = torch.jit.load(str(p), map_location=torch.device(device))
    except (RuntimeError, ValueError, OSError) as exc:
        from rhythmflow.errors import plain_reason

        log.debug("torch.jit.load(%s) failed", p, exc_info=True)
        raise CheckpointError(
            f"{p} is not a TorchScript VAE file ({plain_reason(exc)}); pass the DiffRhythm "
            "vae_model.pt, or delete it and download it again"
        ) from exc
    missing = [m for m in ("decode_export", "encode_export") if not hasattr(module, m)]
    if missing:
        raise CheckpointError(
            f"{p} is a TorchScript module without {', '.join(missing)}; it is not the DiffRhythm VAE"
        )
    module.eval()
    log.info("VAE loaded from %s on %s", p, device)
    vae = TorchScriptVAE(
        module, device=device, chunked=chunked, chunk_size=chunk_size, overlap=overlap
    )
    probe_vae(vae, p, asset=path is None)
    if decoder == "auto" and vae.device.type == "cpu":
        from rhythmflow.model.oobleck_fast import eager_decoder

        fast = eager_decoder(module, residual_dtype=residual_dtype)
        if fast is not None:
            vae.decoder, vae.decoder_kind = fast, f"eager-oobleck ({fast.describe()})"
    log.info("VAE decode: %s", vae.decoder_kind)
    return vae


PROBE_FRAMES = 2


def probe_vae(vae: TorchScriptVAE, source: str | os.PathLike, *, asset: bool = False) -> None:
    """Check at load time, with a tiny decode and encode of :data:`PROBE_FRAMES` zero frames,
    that the module is DiffRhythm's VAE: 64-channel latents, 2048 samples per latent frame,
    stereo. Raises CheckpointError (a user's file: exit 2) or AssetError (a downloaded asset:
    exit 3) naming the file, what it does instead and the fix — before minutes of sampling."""
    from rhythmflow.errors import AssetError

    def fail(what: str) -> None:
        if asset:
            raise AssetError(f"{source} is not the DiffRhythm VAE: {what}; delete it and run "
                             "`rhythmflow fetch` again")
        raise CheckpointError(f"vae: {source} is not the DiffRhythm VAE: {what}; give the "
                              "DiffRhythm VAE (vae_model.pt from ASLP-lab/DiffRhythm-vae), or "
                              "leave vae out to use the official one", field="vae")

    n = PROBE_FRAMES
    z = torch.zeros(1, LATENT_DIM, n, device=vae.device, dtype=vae.dtype)
    x = torch.zeros(1, AUDIO_CHANNELS, n * HOP, device=vae.device, dtype=vae.dtype)
    with torch.no_grad():
        try:
            y = vae.module.decode_export(z)
        except Exception as exc:  # a TorchScript shape error, whatever its text
            fail(f"decoding {LATENT_DIM}-channel latents failed ({type(exc).__name__}); it "
                 f"expects another latent width")
        if not isinstance(y, torch.Tensor) or y.dim() != 3 or tuple(y.shape[:2]) != (
                1, AUDIO_CHANNELS):
            got = list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            fail(f"decoding [1, {LATENT_DIM}, {n}] gave {got}, not [1, {AUDIO_CHANNELS}, "
                 f"{n * HOP}] (stereo audio)")
        if y.shape[2] != n * HOP:
            fail(f"it makes {y.shape[2] / n:g} audio samples per latent frame, not {HOP} "
                 f"(hop length)")
        try:
            e = vae.module.encode_export(x)
        except Exception as exc:
            fail(f"encoding stereo audio failed ({type(exc).__name__})")
        if not isinstance(e, torch.Tensor) or tuple(e.shape) != (1, 2 * LATENT_DIM, n):
            got = list(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            fail(f"encoding {n * HOP} samples gave {got}, not [1, {2 * LATENT_DIM}, {n}]")
