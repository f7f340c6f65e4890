"""Audio I/O on real files: formats, upstream peak normalisation, loudness, atomic writes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from rhythmflow.audio import io as audio
from rhythmflow.errors import DependencyError, NumericalError, UsageError

SR = 44100


def _tone(seconds: float, amp: float = 0.1, freq: float = 997.0, sr: int = SR, channels: int = 2):
    t = np.arange(int(seconds * sr)) / sr
    return np.repeat((amp * np.sin(2 * np.pi * freq * t))[None], channels, axis=0).astype(
        np.float32
    )


def _music(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, int(seconds * SR))) * 0.2).astype(np.float32)


def _upstream_int16(x: np.ndarray) -> np.ndarray:
    """infer.py: output.to(float32).div(max|output|).clamp(-1, 1).mul(32767).to(int16)."""
    t = torch.from_numpy(x)
    return (
        t.to(torch.float32)
        .div(torch.max(torch.abs(t)))
        .clamp(-1, 1)
        .mul(32767)
        .to(torch.int16)
        .numpy()
    )


def test_wav16_matches_upstream_peak_normalisation_bit_exactly(tmp_path):
    x = _music()
    out = audio.write_audio(tmp_path / "song.wav", torch.from_numpy(x), SR)
    data, sr = sf.read(out, dtype="int16", always_2d=True)
    info = sf.info(out)
    assert (sr, info.channels, info.subtype) == (SR, 2, "PCM_16")
    np.testing.assert_array_equal(data.T, _upstream_int16(x))
    assert np.abs(data).max() == 32767


@pytest.mark.parametrize(
    "suffix,sample_format,subtype,atol",
    [
        (".wav", "int24", "PCM_24", 2.0**-22),
        (".wav", "float32", "FLOAT", 0.0),
        (".flac", "int24", "PCM_24", 2.0**-22),
    ],
)
def test_other_sample_formats_peak_normalise_to_full_scale(
    tmp_path, suffix, sample_format, subtype, atol
):
    x = _music(0.5, seed=1)
    out = audio.write_audio(tmp_path / f"s{suffix}", x, SR, sample_format=sample_format)
    assert sf.info(out).subtype == subtype
    data, _ = sf.read(out, dtype="float32", always_2d=True)
    np.testing.assert_allclose(data.T, x / np.abs(x).max(), rtol=0, atol=atol + 1e-7)


def test_flac16_is_lossless_copy_of_wav16(tmp_path):
    x = _music(0.5, seed=2)
    wav = sf.read(audio.write_audio(tmp_path / "a.wav", x, SR), dtype="int16")[0]
    flac = sf.read(audio.write_audio(tmp_path / "a.flac", x, SR), dtype="int16")[0]
    np.testing.assert_array_equal(wav, flac)


@pytest.mark.parametrize("suffix", [".mp3", ".ogg"])
def test_lossy_formats_are_written_and_readable(tmp_path, suffix):
    x = _tone(2.0, amp=0.5)
    out = audio.write_audio(tmp_path / f"s{suffix}", x, SR)
    back, sr = audio.read_audio(out)
    assert sr == SR and back.shape[0] == 2
    assert abs(back.shape[1] - x.shape[1]) < 0.1 * SR
    assert 0.5 < np.abs(back).max() <= 1.2  # peak-normalised to ~0 dBFS


def test_bad_options_and_values(tmp_path):
    x = _music(0.1)
    with pytest.raises(UsageError, match="float32 samples need a .wav"):
        audio.write_audio(tmp_path / "a.flac", x, SR, sample_format="float32")
    with pytest.raises(UsageError, match="unknown output format"):
        audio.write_audio(tmp_path / "a.aiff", x, SR)
    with pytest.raises(UsageError, match="sample_format"):
        audio.write_audio(tmp_path / "a.wav", x, SR, sample_format="int8")
    with pytest.raises(UsageError, match="normalize"):
        audio.write_audio(tmp_path / "a.wav", x, SR, normalize="rms")
    x[1, 5] = np.nan
    with pytest.raises(NumericalError, match="NaN"):
        audio.write_audio(tmp_path / "a.wav", x, SR)
    assert list(tmp_path.iterdir()) == []


def test_silence_is_written_as_silence(tmp_path):
    out = audio.write_audio(tmp_path / "s.wav", np.zeros((2, 1000), np.float32), SR)
    assert not sf.read(out, dtype="int16")[0].any()


def test_unwritable_destinations_leave_nothing(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        audio.write_audio(tmp_path / "no" / "such" / "dir" / "a.wav", _music(0.1), SR)
    (tmp_path / "d.wav").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        audio.write_audio(tmp_path / "d.wav", _music(0.1), SR)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sysfs refuses new files on Linux")
def test_permission_denied_names_the_path():
    with pytest.raises(
        UsageError, match=r"cannot write /sys/rhythmflow-test\.wav: Permission denied"
    ):
        audio.write_audio("/sys/rhythmflow-test.wav", _music(0.1), SR)


@pytest.mark.slow
def test_disk_full_leaves_no_partial_file_and_keeps_the_old_one(tmp_path):
    # A real write failure: the file-size limit makes the kernel refuse the write (EFBIG), as a
    # full disk would (ENOSPC). Run in a child process so the limit cannot touch pytest's files.
    old = tmp_path / "song.wav"
    old.write_bytes(b"previous song")
    code = textwrap.dedent(f"""
        import resource, signal, sys, numpy as np
        from rhythmflow.audio import io as audio
        from rhythmflow.errors import ResourceError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        x = np.random.default_rng(0).standard_normal((2, 200000)).astype(np.float32)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))
        try:
            audio.write_audio({str(old)!r}, x, 44100)
        except ResourceError as e:
            print("ResourceError:", e)
            sys.exit(0)
        sys.exit(1)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert str(old) in run.stdout and "free disk space" in run.stdout
    assert old.read_bytes() == b"previous song"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]  # no temp file left


def test_integrated_loudness_of_reference_tones():
    # BS.1770: a 997 Hz sine at amplitude A in both channels reads 20*log10(A) LUFS
    assert audio.integrated_loudness(_tone(5.0, amp=0.1), SR) == pytest.approx(-20.0, abs=0.1)
    assert audio.integrated_loudness(_tone(5.0, amp=0.5, sr=48000), 48000) == pytest.approx(
        20 * math.log10(0.5), abs=0.1
    )
    mono = _tone(5.0, amp=1.0, channels=1)  # one full-scale channel: -3.01 LUFS
    assert audio.integrated_loudness(mono, SR) == pytest.approx(-3.01, abs=0.1)
    # the absolute gate ignores silence
    padded = np.concatenate([_tone(5.0, amp=0.1), np.zeros((2, 5 * SR), np.float32)], axis=1)
    assert audio.integrated_loudness(padded, SR) == pytest.approx(-20.0, abs=0.3)
    assert audio.integrated_loudness(np.zeros((2, SR), np.float32), SR) == -math.inf
    assert audio.integrated_loudness(_tone(0.2), SR) == -math.inf


def test_loudness_normalisation(tmp_path, caplog):
    x = _tone(4.0, amp=0.05, freq=440.0)
    y = audio.loudness_normalize(x, SR, -14.0)
    assert audio.integrated_loudness(y, SR) == pytest.approx(-14.0, abs=0.1)
    out = audio.write_audio(tmp_path / "l.wav", x, SR, normalize="loudness", target_lufs=-16.0)
    assert audio.integrated_loudness(audio.read_audio(out)[0], SR) == pytest.approx(-16.0, abs=0.1)
    with caplog.at_level("WARNING"):
        loud = audio.loudness_normalize(x, SR, 3.0)  # would need a peak above full scale
    assert np.abs(loud).max() == pytest.approx(1.0, abs=1e-6) and "clip" in caplog.text


def test_read_audio_regions_channels_and_errors(tmp_path):
    x = _music(2.0)
    p = tmp_path / "in.flac"
    sf.write(p, x.T, SR, subtype="PCM_24")
    full, sr = audio.read_audio(p)
    assert sr == SR and full.shape == x.shape
    part, _ = audio.read_audio(p, start=0.5, duration=1.0)
    np.testing.assert_array_equal(part, full[:, SR // 2 : SR // 2 + SR])
    assert audio.audio_info(p) == (pytest.approx(2.0), SR, 2)
    mono = tmp_path / "mono.wav"
    sf.write(mono, x[0], 22050)
    m, sr = audio.read_audio(mono)
    assert m.shape == (1, 2 * SR) and sr == 22050
    with pytest.raises(UsageError, match="does not exist"):
        audio.read_audio(tmp_path / "missing.wav")
    with pytest.raises(UsageError, match="unsupported audio format"):
        audio.read_audio(tmp_path / "notes.txt")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....not really a wave file")
    with pytest.raises(UsageError, match="cannot read audio file"):
        audio.read_audio(junk)


def test_resample_and_channels():
    x = _tone(1.0, sr=48000)
    y = audio.resample(x, 48000, SR)
    assert y.shape == (2, SR) and y.dtype == np.float32
    assert audio.set_channels(x, 1).shape == (1, 48000)
    assert audio.set_channels(x[:1], 2).shape == (2, 48000)
    assert audio.set_channels(np.zeros((3, 10)), 2).shape == (2, 10)
    with pytest.raises(UsageError):
        audio.set_channels(x, 3)


def test_sidecar_round_trip_and_errors(tmp_path):
    meta = {
        "seed": np.int64(1234),
        "settings": {"steps": 8, "cfg": 4.0, "segments": ((0, 10), (20, 30))},
        "output": tmp_path / "song.wav",
        "style": torch.ones(2),
        "timings": {"sample_s": 1.5},
        "prompt": "流行, piano",
    }
    path = audio.write_sidecar(tmp_path / "song.wav", meta)
    assert path == tmp_path / "song.json"
    back = json.loads(path.read_text(encoding="utf-8"))
    assert back["seed"] == 1234 and back["settings"]["segments"] == [[0, 10], [20, 30]]
    assert back["output"] == str(tmp_path / "song.wav") and back["style"] == [1.0, 1.0]
    assert back["prompt"] == "流行, piano"
    assert audio.sidecar_path(tmp_path / "x.json") == tmp_path / "x.json"
    with pytest.raises(UsageError, match="cannot write metadata"):
        audio.write_sidecar(tmp_path / "bad.wav", {"t": float("nan")})
    with pytest.raises(UsageError, match="not JSON serialisable"):
        audio.write_sidecar(tmp_path / "bad.wav", {"f": object()})
    assert not (tmp_path / "bad.json").exists()


def test_atomic_write_replaces_existing_file(tmp_path):
    p = tmp_path / "a.wav"
    p.write_bytes(b"old")
    audio.write_audio(p, _music(0.1), SR)
    assert sf.info(p).frames == int(0.1 * SR)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.wav"]
    assert isinstance(audio.atomic_write_bytes(tmp_path / "b.bin", b"data"), Path)


def test_mp3_without_an_encoder_is_a_dependency_error(tmp_path, monkeypatch):
    no_mp3 = {k: v for k, v in sf.available_formats().items() if k != "MP3"}
    monkeypatch.setattr(sf, "available_formats", lambda: no_mp3)
    monkeypatch.setitem(sys.modules, "lameenc", None)
    with pytest.raises(DependencyError, match=r"rhythmflow\[mp3\]"):
        audio.write_audio(tmp_path / "a.mp3", _music(0.1), SR)
    assert list(tmp_path.iterdir()) == []


def test_mp3_falls_back_to_lameenc_when_libsndfile_cannot_write_it(tmp_path, monkeypatch):
    import lameenc  # noqa: F401  (the mp3 extra; installed by scripts/setup.sh)

    t = np.arange(2 * SR) / SR
    x = np.stack([0.5 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 1.5 * t),
                  0.3 * np.sin(2 * np.pi * 660 * t + 0.3)]).astype(np.float32)
    no_mp3 = {k: v for k, v in sf.available_formats().items() if k != "MP3"}
    monkeypatch.setattr(sf, "available_formats", lambda: no_mp3)
    path = audio.write_audio(tmp_path / "a.mp3", x, SR)
    monkeypatch.undo()
    head = path.read_bytes()[:3]
    assert head == b"ID3" or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0)  # an MPEG frame
    y, sr = sf.read(path, always_2d=True)  # libsndfile decodes what lameenc wrote
    assert sr == SR and y.shape[1] == 2 and abs(len(y) - x.shape[1]) < 3 * 1152
    # mp3 adds an encoder delay: align on the best lag, then the waveform must match closely
    ref = x[0] / np.abs(x).max()
    lag = max(range(0, 3000), key=lambda k: float(np.dot(ref[: SR // 2], y[k : k + SR // 2, 0])))
    seg = y[lag : lag + SR, 0]
    corr = np.corrcoef(ref[: len(seg)], seg)[0, 1]
    assert corr > 0.98, corr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp3"]
