"""Audio I/O: read, resample, normalise, write atomically; JSON metadata sidecars.

Arrays are channels-first float32 ``[c, n]`` (a torch tensor is accepted wherever audio goes
in). Files are written to a temporary file in the destination folder and renamed, so a failed
write (disk full, no permission) leaves no partial file. soundfile / soxr are imported lazily.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rhythmflow import files
from rhythmflow.errors import DependencyError, NumericalError, UsageError

log = logging.getLogger(__name__)

READ_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".mp3": "MP3", ".ogg": "OGG"}
_SUBTYPES = {"int16": "PCM_16", "int24": "PCM_24", "float32": "FLOAT"}


def _as_array(audio: Any) -> np.ndarray:
    if hasattr(audio, "detach"):  # torch.Tensor
        audio = audio.detach().float().cpu().numpy()
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise UsageError(f"audio must be [channels, samples]; got shape {tuple(x.shape)}")
    return x


def _check_readable(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if p.suffix.lower() not in READ_EXTENSIONS:
        raise UsageError(f"{p}: unsupported audio format; use one of {', '.join(READ_EXTENSIONS)}")
    if not p.is_file():
        raise UsageError(f"audio file {p} does not exist")
    return p


def _audio_reason(exc: Exception) -> str:
    """libsndfile's words without its internal codes: "Format not recognised." → plain text."""
    from rhythmflow.errors import plain_reason

    log.debug("libsndfile failed", exc_info=True)
    text = getattr(exc, "error_string", None)  # soundfile.LibsndfileError
    if isinstance(text, str) and text.strip():
        return text.strip().rstrip(".") + " (damaged, or not an audio file it can read)"
    return plain_reason(exc)


def audio_info(path: str | os.PathLike) -> tuple[float, int, int]:
    """(duration in seconds, sample rate, channels) of an audio file; UsageError if unreadable."""
    import soundfile as sf

    p = _check_readable(path)
    try:
        info = sf.info(str(p))
    except Exception as exc:
        raise UsageError(f"cannot read audio file {p}: {_audio_reason(exc)}") from exc
    return info.frames / info.samplerate, info.samplerate, info.channels


def read_audio(
    path: str | os.PathLike, *, start: float = 0.0, duration: float | None = None
) -> tuple[np.ndarray, int]:
    """Read wav/flac/mp3/ogg as float32 ``[c, n]`` plus its sample rate; ``start``/``duration``
    in seconds select a region (sample index ``int(seconds * rate)``). UsageError if unreadable."""
    import soundfile as sf

    p = _check_readable(path)
    try:
        with sf.SoundFile(str(p)) as f:
            sr = f.samplerate
            first = int(start * sr)
            if first:
                f.seek(min(first, f.frames))
            frames = -1 if duration is None else int(duration * sr)
            data = f.read(frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise UsageError(f"cannot read audio file {p}: {_audio_reason(exc)}") from exc
    if data.shape[0] == 0:
        raise UsageError(f"audio file {p} holds no samples (at {start:.2f} s)")
    return np.ascontiguousarray(data.T), sr


def resample(audio: Any, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``[c, n]`` from ``sr_in`` to ``sr_out`` with soxr (high quality)."""
    x = _as_array(audio)
    if sr_in == sr_out:
        return x
    import soxr

    return np.ascontiguousarray(soxr.resample(x.T, sr_in, sr_out, quality="HQ").T, np.float32)


def set_channels(audio: Any, channels: int) -> np.ndarray:
    """Mono → mean of channels; stereo → duplicate a mono track or keep the first two."""
    x = _as_array(audio)
    if channels == 1:
        return x.mean(axis=0, keepdims=True)
    if channels == 2:
        return np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x[:2]
    raise UsageError(f"channels must be 1 or 2, not {channels}")


def peak_normalize(audio: Any, target_dbfs: float = 0.0) -> np.ndarray:
    """Scale so the largest |sample| is ``10**(target_dbfs/20)``; silence is returned unchanged."""
    x = _as_array(audio)
    peak = float(np.max(np.abs(x)))
    if peak == 0.0:
        log.warning("audio is silent; peak normalisation skipped")
        return x
    return x * np.float32(10.0 ** (target_dbfs / 20.0) / peak)


def to_pcm16(audio: Any) -> np.ndarray:
    """int16 ``[c, n]`` exactly as upstream infer.py: divide by the peak, clamp to [-1, 1],
    multiply by 32767 and truncate toward zero."""
    x = _as_array(audio)
    peak = float(np.max(np.abs(x)))
    y = x / np.float32(peak) if peak > 0 else x
    return np.trunc(np.clip(y, -1.0, 1.0) * np.float32(32767.0)).astype(np.int16)


# ITU-R BS.1770-4 K-weighting biquads at 48 kHz (pre-filter shelf, then RLB high-pass).
_K_FILTERS = (
    (
        (1.53512485958697, -2.69169618940638, 1.19839281085285),
        (1.0, -1.69065929318241, 0.73248077421585),
    ),
    ((1.0, -2.0, 1.0), (1.0, -1.99004745483398, 0.99007225036621)),
)


def integrated_loudness(audio: Any, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4: K-weighting, 400 ms blocks, 75 % overlap,
    absolute gate −70 LUFS, relative gate −10 LU). −inf for silence or audio shorter than 0.4 s."""
    x = resample(audio, sample_rate, 48000)  # float32 FFTs: ample precision for a level
    n = x.shape[1]
    block, step = 19200, 4800
    if n < block:
        return -math.inf
    size = 1 << int(math.ceil(math.log2(n + 48000)))  # ≥ 1 s of zero padding holds the IIR tail
    z = np.exp(np.linspace(0, -1j * np.pi, size // 2 + 1, dtype=np.complex64))  # e^{-jω}
    h = np.ones_like(z)
    for b, a in _K_FILTERS:  # Horner form of each biquad's transfer function
        h *= (b[0] + z * (b[1] + z * b[2])) / (a[0] + z * (a[1] + z * a[2]))
    power = np.zeros(n)
    for ch in x:  # one channel at a time keeps memory bounded
        power += np.fft.irfft(np.fft.rfft(ch, size) * h, size)[:n].astype(np.float64) ** 2
    csum = np.concatenate([[0.0], np.cumsum(power)])
    starts = np.arange(0, n - block + 1, step)
    z_j = (csum[starts + block] - csum[starts]) / block  # Σ over channels of mean square
    with np.errstate(divide="ignore"):
        l_j = -0.691 + 10 * np.log10(z_j)
    kept = z_j[l_j > -70.0]
    if kept.size == 0:
        return -math.inf
    rel_gate = -0.691 + 10 * math.log10(kept.mean()) - 10.0
    kept = z_j[(l_j > -70.0) & (l_j > rel_gate)]
    return -0.691 + 10 * math.log10(kept.mean())


def loudness_normalize(audio: Any, sample_rate: int, target_lufs: float = -14.0) -> np.ndarray:
    """Scale to ``target_lufs`` integrated loudness, limited so the peak stays ≤ 1.0 (a warning
    says when that limit kept the target from being reached). Silence is returned unchanged."""
    x = _as_array(audio)
    current = integrated_loudness(x, sample_rate)
    if not math.isfinite(current):
        log.warning("audio is silent or shorter than 0.4 s; loudness normalisation skipped")
        return x
    gain = 10.0 ** ((target_lufs - current) / 20.0)
    peak = float(np.max(np.abs(x)))
    if peak * gain > 1.0:
        log.warning(
            "loudness target %.1f LUFS would clip; reached %.1f LUFS at peak 0 dBFS",
            target_lufs,
            current + 20 * math.log10(1.0 / peak),
        )
        gain = 1.0 / peak
    return x * np.float32(gain)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.
    On failure no file (partial or temporary) is left and UsageError / ResourceError names
    the path and the reason. The file's mode follows the umask; stale temporary files of a
    killed run are removed first (see :mod:`rhythmflow.files`)."""
    return files.atomic_write_bytes(path, data)


def _encode_mp3(x: np.ndarray, sample_rate: int) -> bytes:
    import soundfile as sf

    if "MP3" in sf.available_formats():
        buf = io.BytesIO()
        try:  # best VBR quality; soundfile < 0.13 has no compression_level
            sf.write(buf, x.T, sample_rate, format="MP3", compression_level=0.0)
        except TypeError:
            sf.write(buf, x.T, sample_rate, format="MP3")
        return buf.getvalue()
    try:
        import lameenc
    except ImportError:
        raise DependencyError(
            "mp3 output needs libsndfile ≥ 1.1 with MP3 support or the lameenc package: "
            "`pip install 'rhythmflow[mp3]'`, or write .wav/.flac instead"
        ) from None
    enc = lameenc.Encoder()
    enc.set_bit_rate(320)
    enc.set_in_sample_rate(sample_rate)
    enc.set_channels(x.shape[0])
    enc.set_quality(2)
    pcm = np.trunc(np.clip(x, -1, 1) * 32767).astype("<i2").T.tobytes()
    return bytes(enc.encode(pcm) + enc.flush())


def write_audio(
    path: str | os.PathLike,
    audio: Any,
    sample_rate: int,
    *,
    sample_format: str = "int16",
    normalize: str | None = "peak",
    target_lufs: float = -14.0,
) -> Path:
    """Write ``audio`` ([c, n] or [n]; array or tensor) to ``path``; the format follows the
    suffix (.wav, .flac, .mp3, .ogg). ``sample_format``: "int16" (upstream's), "int24" or
    "float32" (wav only). ``normalize``: "peak" (to 0 dBFS; int16 quantised exactly as upstream),
    "loudness" (to ``target_lufs``, peak-limited) or None. Atomic; returns the path. Raises
    UsageError (bad option or unwritable path), ResourceError (disk full), NumericalError
    (NaN/Inf in the audio)."""
    path = Path(path).expanduser()
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"{path}: unknown output format; use one of {', '.join(_FORMATS)}")
    if sample_format not in _SUBTYPES:
        raise UsageError(
            f"sample_format must be one of {', '.join(_SUBTYPES)}, not {sample_format!r}"
        )
    if sample_format == "float32" and fmt != "WAV":
        raise UsageError(f"{path}: float32 samples need a .wav file")
    x = _as_array(audio)
    if not np.isfinite(x).all():
        raise NumericalError(f"audio for {path} contains NaN or Inf; nothing was written")
    if normalize == "loudness":
        x = loudness_normalize(x, sample_rate, target_lufs)
    elif normalize == "peak":
        x = peak_normalize(x) if sample_format != "int16" else x
    elif normalize is not None:
        raise UsageError(f"normalize must be 'peak', 'loudness' or None, not {normalize!r}")
    if fmt == "MP3":
        data = _encode_mp3(np.clip(x, -1.0, 1.0), sample_rate)
    else:
        import soundfile as sf

        if sample_format == "int16":  # integer samples, so libsndfile stores them unchanged
            pcm = to_pcm16(x) if normalize == "peak" else np.trunc(np.clip(x, -1, 1) * 32767)
            frames, subtype = pcm.astype(np.int16).T, "PCM_16"
        else:
            frames = (np.clip(x, -1.0, 1.0) if sample_format == "int24" else x).T
            subtype = _SUBTYPES[sample_format]
        buf = io.BytesIO()
        subtype = "VORBIS" if fmt == "OGG" else subtype
        with sf.SoundFile(buf, "w", sample_rate, frames.shape[1], subtype, format=fmt) as f:
            # one second at a time: libsndfile 1.2's Vorbis encoder segfaults on one big write
            for i in range(0, frames.shape[0], sample_rate):
                f.write(frames[i : i + sample_rate])
        data = buf.getvalue()
    return atomic_write_bytes(path, data)


def sidecar_path(audio_path: str | os.PathLike) -> Path:
    """The JSON sidecar of an audio file: ``song.wav`` → ``song.json`` (a .json path as is)."""
    p = Path(audio_path).expanduser()
    return p if p.suffix.lower() == ".json" else p.with_suffix(".json")


def _jsonable(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return value.tolist()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_sidecar(path: str | os.PathLike, metadata: Mapping[str, Any]) -> Path:
    """Write ``metadata`` (settings, seed, model revision, timings — whatever the caller puts
    in) as UTF-8 JSON to :func:`sidecar_path` of ``path``, atomically; returns the written path.
    Paths, numpy/torch values, tuples and dataclasses are converted; anything else (or NaN)
    raises UsageError."""
    target = sidecar_path(path)
    try:
        text = json.dumps(
            dict(metadata),
            indent=2,
            sort_keys=True,
            ensure_ascii=False,
            allow_nan=False,
            default=_jsonable,
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot write metadata {target}: {exc}") from exc
    return atomic_write_bytes(target, (text + "\n").encode("utf-8"))
