"""Shared pieces of the serve tests: the tiny model files, settings, bounded waiting, processes."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rhythmflow.testing import TINY, build_tiny_vae, random_dit, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
CFG = dataclasses.replace(TINY, depth=1, dim=64)
LRC = "[00:01.00]Hello little song\n[00:03.50]Another line of words\n"
EMBEDDING = np.random.default_rng(0).standard_normal(512).round(4).tolist()


def build_files(folder: Path) -> dict[str, Path]:
    """A tiny official-format checkpoint and a tiny TorchScript VAE."""
    folder.mkdir(parents=True, exist_ok=True)
    return {"checkpoint": save_checkpoint(random_dit(CFG, seed=7), folder / "cfm_model.pt"),
            "vae": build_tiny_vae(folder / "vae_model.pt")}


def job_body(**overrides: Any) -> dict[str, Any]:
    return {"lrc": LRC, "style_embedding": EMBEDDING, "steps": 3, "seed": 11, **overrides}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0,
             every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONUNBUFFERED="1")


def weights(files: dict[str, Path]) -> list[str]:
    return ["--checkpoint", str(files["checkpoint"]), "--vae", str(files["vae"]),
            "--device", "cpu", "--dtype", "float32", "--threads", "1"]


def start(args: list[str], log: Path) -> subprocess.Popen:
    """``python -m rhythmflow ARGS`` with its output in ``log``."""
    fh = open(log, "ab")  # noqa: SIM115 (closed with the process by stop())
    proc = subprocess.Popen([sys.executable, "-m", "rhythmflow", *args], stdout=fh,
                            stderr=subprocess.STDOUT, env=env())
    proc.log_file = fh
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
    """Send ``sig`` and wait (bounded); SIGKILL if it does not exit. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            raise AssertionError(f"{proc.args} did not stop on signal {sig}") from None
    proc.log_file.close()
    return proc.returncode


def process_state(pid: int) -> str:
    """The kernel's one-letter state of ``pid`` (R, S, T stopped, Z zombie …) from
    ``/proc/<pid>/stat``; raises OSError when there is no such process."""
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is gone for our purposes
        return process_state(pid) != "Z"
    except OSError:
        return False
