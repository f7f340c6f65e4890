"""Shared pieces of the serve tests: the tiny model files, settings, bounded waiting, processes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from rhythmflow.testing import TINY, build_tiny_vae, random_dit, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
CFG = dataclasses.replace(TINY, depth=1, dim=64)
LRC = "[00:01.00]Hello little song\n[00:03.50]Another line of words\n"
FAST = ["--lease", "3", "--heartbeat", "0.5", "--poll", "0.1"]
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


def start(args: list[str], log: Path, extra_env: dict[str, str] | None = None
          ) -> subprocess.Popen:
    """``python -m rhythmflow ARGS`` with its output in ``log``."""
    fh = open(log, "ab")  # noqa: SIM115 (closed with the process by stop())
    proc = subprocess.Popen([sys.executable, "-m", "rhythmflow", *args], stdout=fh,
                            stderr=subprocess.STDOUT, env={**env(), **(extra_env or {})})
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


class Service:
    """``rhythmflow serve`` on a free 127.0.0.1 port plus any number of workers."""

    def __init__(self, files, folder, queue: str | None = None, data: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.files, self.folder, self.queue = files, folder, queue
        self.data = data or folder / "data"
        self.extra_env = extra_env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def common(self) -> list[str]:
        return ["--data-dir", str(self.data), *weights(self.files), *FAST,
                *(["--queue", self.queue] if self.queue else [])]

    def serve(self, *extra: str) -> subprocess.Popen:
        proc = start(["serve", "--host", "127.0.0.1", "--port", str(self.port), *extra,
                      *self.common()], self.folder / "serve.log", self.extra_env)
        self.procs.append(proc)
        wait_for("the server", self._up, timeout=60)
        return proc

    def worker(self, name: str) -> subprocess.Popen:
        proc = start(["worker", *self.common()], self.folder / f"{name}.log")
        self.procs.append(proc)
        return proc

    def _up(self) -> bool:
        try:
            r = httpx.get(f"{self.url}/api/health", timeout=2)  # 503 until a worker beats
            return r.status_code in (200, 503) and "status" in r.json()
        except (httpx.HTTPError, ValueError):
            return False

    def get(self, path: str):
        return httpx.get(f"{self.url}{path}", timeout=10).json()

    def submit(self, **kw) -> str:
        r = httpx.post(f"{self.url}/api/jobs", json=job_body(**kw), timeout=30)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def job(self, job_id: str) -> dict:
        return self.get(f"/api/jobs/{job_id}")

    def done(self, job_id: str, timeout: float = 240) -> dict:
        return wait_for(f"job {job_id} to complete", lambda: (j := self.job(job_id))["status"]
                        == "completed" and j, timeout=timeout, every=0.2)

    def events(self, job_id: str) -> list[dict]:
        with httpx.stream("GET", f"{self.url}/api/jobs/{job_id}/events", timeout=30) as r:
            text = "".join(r.iter_text())
        return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]

    def statuses(self, job_id: str) -> list[str]:
        return [e["status"] for e in self.events(job_id) if e["event"] == "status"]

    def steps(self, job_id: str) -> list[int]:
        return [e["step"] for e in self.events(job_id) if e["event"] == "sampling_step"]

    def latents(self, job_id: str) -> np.ndarray:
        return np.load(self.data / "jobs" / job_id / "latents.npy")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            proc.log_file.close()

    def log(self, name: str = "serve") -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")


def _ping(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    """A throw-away ``redis-server`` on 127.0.0.1 and a free port (no persistence); returns
    (the process, its ``redis://`` URL). Stop it with ``proc.terminate()``."""
    import shutil

    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        raise AssertionError("redis-server is missing: install the Debian package redis-server "
                             "(scripts/setup.sh test does)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port)
    wait_for("redis", lambda: _ping(client), timeout=30)
    return proc, f"redis://127.0.0.1:{port}/0"


def sse_blocks(text: str) -> list[tuple[str, dict]]:
    """``(event type, data)`` of every block of a Server-Sent Events text."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if ": " in line and not line.startswith(":"))
        if "data" in fields:
            out.append((fields.get("event", "message"), json.loads(fields["data"])))
    return out


def service_settings(files: dict[str, Path], data_dir: Path, **kw: Any):
    """The settings of an in-process (TestClient) service on the tiny files: no worker, short
    lease and heartbeat, ``testserver`` an allowed host."""
    from rhythmflow.serve.settings import Settings

    return Settings(data_dir=data_dir, checkpoint=files["checkpoint"], vae=files["vae"],
                    worker=False, device="cpu", dtype="float32", threads=1, heartbeat=0.2,
                    lease=2.0, poll=0.05, allow_hosts=("testserver",), **kw)
