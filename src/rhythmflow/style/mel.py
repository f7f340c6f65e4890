"""MuQ's log-mel front end on ``torch.stft``: what ``muq`` computes with torchaudio's
``MelSpectrogram`` (power 2, periodic Hann window, centred frames with reflect padding, HTK mel
scale, no filter normalisation) followed by ``AmplitudeToDB`` (power, ``amin`` 1e-10, ref 1,
no ``top_db``). The filterbank maths is torchaudio's ``melscale_fbanks``, written out here.

Shapes: b - batch, n - samples, f - frequency bins (n_fft // 2 + 1), m - mel bands, t - frames.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_SLANEY_F_SP = 200.0 / 3  # Slaney scale: linear below 1 kHz (3 bands per 200 Hz) ...
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_LOGSTEP = math.log(6.4) / 27.0  # ... and logarithmic above


def hz_to_mel(freq: float, scale: str = "htk") -> float:
    """One frequency in Hz on the HTK (``2595 log10(1 + f / 700)``) or Slaney mel scale."""
    if scale == "htk":
        return 2595.0 * math.log10(1.0 + freq / 700.0)
    if scale != "slaney":
        raise ValueError(f"mel scale must be 'htk' or 'slaney', not {scale!r}")
    if freq < _SLANEY_MIN_LOG_HZ:
        return freq / _SLANEY_F_SP
    return _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP + math.log(freq / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP


def mel_to_hz(mels: torch.Tensor, scale: str = "htk") -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`, elementwise on a tensor."""
    if scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    if scale != "slaney":
        raise ValueError(f"mel scale must be 'htk' or 'slaney', not {scale!r}")
    min_log_mel = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
    log_part = _SLANEY_MIN_LOG_HZ * torch.exp(_SLANEY_LOGSTEP * (mels - min_log_mel))
    return torch.where(mels >= min_log_mel, log_part, _SLANEY_F_SP * mels)


def mel_filterbank(
    n_freqs: int,
    f_min: float,
    f_max: float,
    n_mels: int,
    sample_rate: int,
    *,
    norm: str | None = None,
    scale: str = "htk",
) -> torch.Tensor:
    """Triangular mel filters ``[f, m]``: ``n_mels`` triangles whose corners are equally spaced
    on the mel scale between ``f_min`` and ``f_max``, sampled at the ``n_freqs`` STFT bin
    frequencies ``linspace(0, sample_rate // 2)``; ``norm="slaney"`` scales each to unit area."""
    if norm not in (None, "slaney"):
        raise ValueError(f"norm must be None or 'slaney', not {norm!r}")
    bins = torch.linspace(0, sample_rate // 2, n_freqs)  # [f]
    corners = mel_to_hz(
        torch.linspace(hz_to_mel(f_min, scale), hz_to_mel(f_max, scale), n_mels + 2), scale
    )  # [m + 2]
    widths = corners[1:] - corners[:-1]  # [m + 1]
    slopes = corners.unsqueeze(0) - bins.unsqueeze(1)  # [f, m + 2]
    rising = -slopes[:, :-2] / widths[:-1]  # [f, m]
    falling = slopes[:, 2:] / widths[1:]  # [f, m]
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)
    if norm == "slaney":
        fb = fb * (2.0 / (corners[2 : n_mels + 2] - corners[:n_mels])).unsqueeze(0)
    return fb


class LogMel(nn.Module):
    """Waveform ``[b, n]`` → power mel spectrogram in dB ``[b, m, t]``, ``t = n // hop + 1``.
    Always computed in float32. The window and filterbank are non-persistent buffers (they are
    derived from the arguments, so they never appear in a state dict)."""

    def __init__(
        self,
        sample_rate: int = 24000,
        n_fft: int = 2048,
        hop_length: int = 240,
        n_mels: int = 128,
        *,
        amin: float = 1e-10,
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.amin = n_fft, hop_length, amin
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)  # periodic
        fb = mel_filterbank(n_fft // 2 + 1, 0.0, float(sample_rate // 2), n_mels, sample_rate)
        self.register_buffer("fb", fb, persistent=False)  # [f, m]

    def power_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """``[b, n]`` → mel power ``[b, m, t]``."""
        spec = torch.stft(
            wav.float(), self.n_fft, hop_length=self.hop_length, win_length=self.n_fft,
            window=self.window, center=True, pad_mode="reflect", normalized=False,
            onesided=True, return_complex=True,
        ).abs().pow(2.0)  # [b, f, t]
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)  # [b, m, t]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(torch.clamp(self.power_mel(wav), min=self.amin))
