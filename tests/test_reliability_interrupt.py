"""Ctrl-C and failures never lose finished work (issue 14), with real processes and signals on
the tiny model: a Ctrl-C while loading stops before sampling and saves nothing; a Ctrl-C during
the VAE decode stops there (exit 130) and keeps the finished sampling; a failure after sampling
(here a full disk for the song) saves the sampler state first and says how to resume; resuming
from it only decodes."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from rhythmflow import errors
from rhythmflow.cli.main import main
from rhythmflow.files import TEMP_SUFFIX
from tests.reliability_support import make_files
from tests.test_cli import base_args

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("interrupt-cli"))


@pytest.fixture(scope="module")
def reference(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "ref.wav"
    assert main(base_args(files, out, "--progress", "none")) == 0
    return sf.read(out)[0]


def _popen(args, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "rhythmflow", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _signal_at(proc: subprocess.Popen, stage: str, times: int = 1, sig=signal.SIGINT) -> str:
    """Send ``sig`` when the JSON progress announces ``stage``; return stderr after exit."""
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "stage_started" and event["stage"] == stage:
            for _ in range(times):
                proc.send_signal(sig)
            break
    proc.stdout.read()
    return proc.stderr.read()


def _leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def test_ctrl_c_while_loading_stops_before_sampling_and_saves_nothing(files, tmp_path):
    out, state = tmp_path / "s.wav", tmp_path / "s.resume.pt"
    proc = _popen(base_args(files, out, "--progress", "json"))
    stderr = _signal_at(proc, "load")
    assert proc.wait(timeout=120) == errors.EXIT_CANCELLED, stderr
    assert "sampling had not started" in stderr and "Traceback" not in stderr
    assert not state.exists() and not out.exists() and not _leftovers(tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_decode_stops_keeps_the_sampling_and_resume_only_decodes(
        files, tmp_path, reference, sig):
    out, state = tmp_path / "s.wav", tmp_path / "s.resume.pt"
    proc = _popen(base_args(files, out, "--progress", "json"))
    stderr = _signal_at(proc, "decode", sig=sig)
    assert proc.wait(timeout=120) == errors.EXIT_CANCELLED, stderr
    assert "cancelled during the VAE decode" in stderr or "before writing" in stderr, stderr
    assert f"saved to {state}" in stderr and f"--resume {state}" in stderr
    assert not out.exists() and state.is_file() and not _leftovers(tmp_path)
    assert main(base_args(files, out, "--progress", "none", "--resume", str(state))) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["evaluations"] == 0 and meta["status"] == "completed"  # only decoded
    assert np.array_equal(sf.read(out)[0], reference)  # the same song, bit for bit
    assert not state.exists()


def test_second_ctrl_c_aborts_without_traceback_or_partial_files(files, tmp_path):
    out = tmp_path / "s.wav"
    proc = _popen(base_args(files, out, "--progress", "json"))
    stderr = _signal_at(proc, "sample", times=2)
    assert proc.wait(timeout=120) == errors.EXIT_CANCELLED, stderr
    assert "Traceback" not in stderr and not out.exists() and not _leftovers(tmp_path)


def _limit_file_size():
    # 2 MB: the 0.5 MB state fits, the 16 MB song does not (EFBIG, as a full disk: ENOSPC)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, resource.RLIM_INFINITY))


def test_failure_after_sampling_saves_the_state_first(files, tmp_path, reference):
    out, state = tmp_path / "s.wav", tmp_path / "s.resume.pt"
    proc = _popen(base_args(files, out, "--progress", "none"), preexec_fn=_limit_file_size)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == errors.EXIT_RESOURCES, stderr
    assert "free disk space" in stderr and f"saved to {state}" in stderr
    assert f"--resume {state}" in stderr and "Traceback" not in stderr
    assert state.is_file() and not out.exists() and not _leftovers(tmp_path)
    assert main(base_args(files, out, "--progress", "none", "--resume", str(state))) == 0
    assert np.abs(sf.read(out)[0] - reference).max() <= 2 / 32767
