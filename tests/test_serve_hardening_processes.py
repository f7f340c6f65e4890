"""Issue 20, the high and medium items, with real processes: a real ``rhythmflow serve`` on
127.0.0.1, real signals, a tmpfs mounted for the full disk, a ``redis-server`` the test starts,
stops and starts again. Every wait is bounded; nothing is timed."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.servekit import (
    EMBEDDING,
    LRC,
    Service,
    _ping,
    build_files,
    free_port,
    job_body,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_files(tmp_path_factory.mktemp("hardening-files"))


def multipart(fields: dict[str, str]) -> dict:
    """Text fields sent as multipart/form-data (httpx: a part without a file name)."""
    return {k: (None, v.encode()) for k, v in fields.items()}


def rows(svc: Service) -> list[str]:
    return [j["id"] for j in svc.get("/api/jobs?limit=100")["jobs"]]


def health(svc: Service) -> httpx.Response:
    return httpx.get(f"{svc.url}/api/health", timeout=10)


def worker_pids(svc: Service) -> list[int]:
    return [int(w["id"].split("-")[-2]) for w in svc.get("/api/workers")["workers"]]


# ---- 1. no client field becomes a server path ----------------------------------------------

PRIVATE = ["_style_audio", "_STYLE_AUDIO", "\uff3fstyle_audio", " _style_audio",
           "\uff33\uff34\uff39\uff2c\uff25_audio", "Style_Audio", "style_audio", "checkpoint",
           "CHECKPOINT", "vae", "ref_song", "style_embedding_file", "_anything"]


def test_no_client_field_can_name_a_server_file(files, tmp_path):
    svc = Service(files, tmp_path)
    try:
        svc.serve("--no-worker")
        secret = tmp_path / "secret.wav"
        secret.write_bytes(b"RIFF")
        for name in PRIVATE:
            for value in (str(secret), "../../secret.wav"):
                body = dict(job_body(style_embedding=None), **{name: value})
                r = httpx.post(f"{svc.url}/api/jobs", json=body, timeout=30)
                assert r.status_code == 422, (name, r.text)
                field = r.json()["error"]["field"]
                assert field and field.strip("\\u0") != "", r.text
                assert str(secret) not in r.text
                # the same field as a multipart text field, and inside the "request" field
                r = httpx.post(f"{svc.url}/api/jobs", timeout=30, files=multipart(
                    {name: value, "lrc": LRC, "style_prompt": "pop"}))
                assert r.status_code == 422, (name, r.text)
                r = httpx.post(f"{svc.url}/api/jobs", timeout=30, files=multipart(
                    {"request": json.dumps({name: value, "lrc": LRC, "style_prompt": "pop"})}))
                assert r.status_code == 422, (name, r.text)
        assert rows(svc) == [] and svc.get("/api/health")["queue"]["new"] == 0
        assert not (svc.data / "jobs").exists() or not any((svc.data / "jobs").iterdir())
        assert svc.submit()  # the server still answers and takes a good job
    finally:
        svc.close()


# ---- 2. serve supervises its worker ---------------------------------------------------------

def test_serve_restarts_a_killed_worker_and_the_job_resumes(files, tmp_path):
    svc = Service(files, tmp_path)
    try:
        svc.serve()  # with its embedded worker
        wait_for("the embedded worker", lambda: svc.get("/api/health")["model_loaded"],
                 timeout=120)
        [pid] = worker_pids(svc)
        job_id = svc.submit(steps=30, seed=5)
        wait_for("step 2", lambda: svc.job(job_id)["progress"]["step"] >= 2, timeout=120,
                 every=0.02)
        os.kill(pid, signal.SIGKILL)
        wait_for("the restart log line", lambda: "restarting it" in svc.log(), timeout=30)
        wait_for("a new worker", lambda: any(p != pid for p in worker_pids(svc)), timeout=30)
        wait_for("the job to resume", lambda: svc.job(job_id)["attempts"] == 2, timeout=60)
        job = svc.done(job_id)
        assert job["attempts"] == 2
        assert svc.statuses(job_id) == ["queued", "running", "queued", "running", "completed"]
        assert health(svc).status_code == 200
    finally:
        svc.close()


def test_the_reaper_runs_with_no_worker_and_health_says_why(files, tmp_path):
    svc = Service(files, tmp_path)
    try:
        svc.serve("--no-worker")
        r = health(svc)
        assert r.status_code == 503 and "no worker alive" in r.json()["reason"]
        worker = svc.worker("w1")
        wait_for("a loaded worker", lambda: svc.get("/api/health")["model_loaded"], timeout=120)
        assert health(svc).status_code == 200
        job_id = svc.submit(steps=30, seed=2)
        wait_for("step 2", lambda: svc.job(job_id)["progress"]["step"] >= 2, timeout=120,
                 every=0.02)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        # no worker is alive: serve's own reaper puts the job back on the queue
        wait_for("the job requeued", lambda: svc.job(job_id)["status"] == "queued", timeout=30)
        wait_for("health to degrade", lambda: health(svc).status_code == 503, timeout=30)
        assert "no worker alive" in health(svc).json()["reason"]
        svc.worker("w2")
        assert svc.done(job_id)["attempts"] == 2
    finally:
        svc.close()


# ---- 3. a full disk ----------------------------------------------------------------------

@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the full-disk test needs root")
    folder.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def fill(folder: Path) -> Path:
    """Write a file until the file system is full (bounded by its size)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for size in (1 << 20, 1 << 12, 1):
            try:
                for _ in range(1 << 16):
                    fh.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_is_survived_and_recovered_from(files, tmp_path):
    with tmpfs(tmp_path / "data", "256m") as data:
        svc = Service(files, tmp_path, data=data)
        try:
            svc.serve()
            wait_for("the embedded worker", lambda: svc.get("/api/health")["model_loaded"],
                     timeout=120)
            done_id = svc.done(svc.submit(steps=3))["id"]
            running = svc.submit(steps=40, seed=9)
            wait_for("step 2", lambda: svc.job(running)["progress"]["step"] >= 2, timeout=120,
                     every=0.02)
            filler = fill(data)
            r = wait_for("health to say the disk is full",
                         lambda: (h := health(svc)).status_code == 503 and h, timeout=30)
            assert "data folder full" in r.json()["reason"]
            assert httpx.get(f"{svc.url}/api/jobs/{done_id}", timeout=10).status_code == 200
            assert httpx.get(f"{svc.url}/api/jobs/{running}", timeout=10).status_code == 200
            assert httpx.get(f"{svc.url}/api/jobs", timeout=10).status_code == 200
            before = rows(svc)
            r = httpx.post(f"{svc.url}/api/jobs", json=job_body(), timeout=30)
            assert r.status_code == 507 and "full" in r.json()["error"]["message"]
            assert str(data) not in r.text
            assert rows(svc) == before
            wait_for("the worker to notice", lambda: "full" in svc.log(), timeout=60)
            filler.unlink()  # space comes back: the service recovers by itself
            wait_for("health to recover", lambda: health(svc).status_code == 200, timeout=60)
            fresh = svc.submit(steps=3, seed=1)
            assert svc.done(fresh, timeout=120)["status"] == "completed"
            job = svc.done(running, timeout=240)  # no job lost
            assert job["status"] == "completed" and len(job["outputs"]) == 1
        finally:
            svc.close()


# ---- 4. cross-site requests and DNS rebinding --------------------------------------------

def test_cross_site_and_rebinding_requests_are_refused(files, tmp_path):
    svc = Service(files, tmp_path, extra_env={"RHYTHMFLOW_ALLOW_ORIGIN": "https://ok.example",
                                              "RHYTHMFLOW_ALLOW_HOST": "songs.example"})
    try:
        svc.serve("--no-worker")
        url = svc.url
        body = json.dumps(job_body())
        r = httpx.post(f"{url}/api/jobs", content=body, timeout=30,
                       headers={"content-type": "text/plain"})
        assert r.status_code == 415
        r = httpx.post(f"{url}/api/jobs", content=body, timeout=30,
                       headers={"content-type": "application/json",
                                "origin": "https://evil.example"})
        assert r.status_code == 403
        job_id = svc.submit()
        for method, path in (("POST", f"/api/jobs/{job_id}/cancel"),
                             ("DELETE", f"/api/jobs/{job_id}")):
            r = httpx.request(method, f"{url}{path}", timeout=30,
                              headers={"origin": "http://evil.example"})
            assert r.status_code == 403, r.text
        assert svc.job(job_id)["status"] == "queued"
        r = httpx.get(f"{url}/api/jobs", headers={"host": "evil.example"}, timeout=10)
        assert r.status_code == 421 and job_id not in r.text
        # the server's own page, an allowed origin, an allowed host
        for origin in (url, "https://ok.example"):
            r = httpx.post(f"{url}/api/validate", json=job_body(), timeout=30,
                           headers={"origin": origin})
            assert r.status_code == 200, r.text
        assert httpx.get(f"{url}/api/jobs", headers={"host": f"songs.example:{svc.port}"},
                         timeout=10).status_code == 200
        assert rows(svc) == [job_id]
    finally:
        svc.close()


# ---- 5. a lost queue ---------------------------------------------------------------------

class Redis:
    """A throw-away ``redis-server`` without persistence that can be stopped and started on
    the same port."""

    def __init__(self, folder: Path) -> None:
        self.exe = shutil.which("redis-server")
        if self.exe is None:
            pytest.fail("redis-server is missing: install the Debian package redis-server")
        self.folder, self.port, self.proc = folder, free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen([self.exe, "--port", str(self.port), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(host="127.0.0.1", port=self.port)
        wait_for("redis", lambda: _ping(client), timeout=30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def test_jobs_lost_with_a_redis_restart_all_run_once(files, tmp_path):
    server = Redis(tmp_path)
    server.start()
    svc = Service(files, tmp_path, queue=server.url)
    try:
        svc.serve("--no-worker")
        ids = [svc.submit(steps=4, seed=i) for i in range(3)]
        server.kill()  # the messages are gone with it
        r = wait_for("health to see the queue down",
                     lambda: (h := health(svc)).status_code == 503 and h, timeout=30)
        assert "queue unreachable" in r.json()["reason"]
        before = rows(svc)
        r = httpx.post(f"{svc.url}/api/jobs", json=job_body(seed=7), timeout=60)
        assert r.status_code in (201, 503), r.text
        if r.status_code == 201:  # an id that will run
            ids.append(r.json()["id"])
        else:  # or nothing left behind
            assert rows(svc) == before
        server.start()
        svc.worker("w1")
        finals = [svc.done(i, timeout=120) for i in ids]
        for j in finals:
            assert j["attempts"] == 1 and svc.statuses(j["id"]).count("completed") == 1
        assert "enqueued again" in svc.log()
    finally:
        svc.close()
        server.kill()


# ---- 6. size limits while reading --------------------------------------------------------

def _peak_rss_reset(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")  # resets the peak resident set size (VmHWM)


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def chunked_post(port: int, path: str, total: int, chunk: int = 1 << 16) -> tuple[int, int]:
    """POST ``total`` bytes with chunked encoding, stopping as soon as the server answers;
    returns (status, bytes sent)."""
    import select

    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                      ).encode())
        piece = f"{chunk:x}\r\n".encode() + b" " * chunk + b"\r\n"
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n" not in data:
                more = sock.recv(4096)
                if not more:
                    break
                data += more
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1") else 0, sent


def test_a_huge_chunked_body_is_refused_while_reading(files, tmp_path):
    svc = Service(files, tmp_path)
    try:
        server = svc.serve("--no-worker")
        _peak_rss_reset(server.pid)
        base = _peak_rss(server.pid)
        status, sent = chunked_post(svc.port, "/api/jobs", 30 * 1024 * 1024)
        assert status == 413
        assert sent < 30 * 1024 * 1024, "the server read the whole body"
        assert _peak_rss(server.pid) - base < 10 * 1024 * 1024
        assert rows(svc) == [] and health(svc).status_code in (200, 503)
        # a multipart "request" field over 256 kB, lyrics over 64 kB
        big = json.dumps(job_body(lyrics="la " * 30000))
        r = httpx.post(f"{svc.url}/api/jobs", files=multipart({"request": big}), timeout=30)
        assert r.status_code == 413 and r.json()["error"]["field"] == "lyrics"
        r = httpx.post(f"{svc.url}/api/jobs", timeout=30,
                       files=multipart({"request": " " * 300_000 + "{}"}))
        assert r.status_code == 413 and "larger than" in r.json()["error"]["message"]
        assert rows(svc) == []
        assert svc.submit(style_embedding=EMBEDDING)
    finally:
        svc.close()
