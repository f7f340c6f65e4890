"""What the service costs: a job through ``rhythmflow serve`` (submit → audio downloaded) against
a direct in-process run of the same request (``plan`` → ``run`` on a loaded ``SongGenerator``,
then writing the file), and the latency from a sampler step to its Server-Sent Event reaching a
client.

    PYTHONPATH=src python benchmarks/serve.py [--steps 20] [--repeats 3]

Tiny random model (official checkpoint format) and tiny TorchScript VAE, 95 s songs; ``--steps``
makes one job take ≥ 10 s. Runs alternate (direct, API, API, direct, …) so a busy machine hurts
both sides alike; the table shows every pair and the median overhead. Targets: ≤ 5 % overhead on
a job of ≥ 10 s, events within 0.5 s.

Event latency, per ``sampling_step`` event: "recorded → client" is the client's arrival time minus the time
the worker stored the event (the ``events.at`` column); "step → client" also counts the work
between the end of the step and storing its event (the sampler state saved after every step),
the step's end being the sample stage's start (its ``stage_started``) plus the event's
``elapsed``.
Both clocks are this machine's ``time.time()``.

Previews: the same job through the API with the server's default previews (``preview_every``
absent: as many as fit the worker's budget) and with ``preview_every: 0`` (none), alternating;
the share is the seconds the worker spent making previews (each ``preview`` event records its
own) over the job's worker time (``timings.total`` less the model load). Target ≤ 10 %.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

from common import machine, table
from rhythmflow.audio.io import write_audio
from rhythmflow.pipeline import SongGenerator, run
from rhythmflow.planner.core import Machine, plan
from rhythmflow.request import GenerationRequest
from rhythmflow.testing import TINY, build_tiny_vae, random_dit, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
LRC = "[00:01.00]Hello little song\n[00:03.50]Another line of words\n[00:06.00]The end\n"
CFG = dataclasses.replace(TINY, depth=1, dim=64)
TERMINAL = ("completed", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """Just enough HTTP for the benchmark (stdlib, one connection per call)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            res = conn.getresponse()
            return res.status, res.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: dict | None = None) -> dict:
        status, data = self.call(method, path, body)
        if status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {data[:500]!r}")
        return json.loads(data)

    def events(self, job_id: str, timeout: float):
        """Yield (arrival time.time(), seq, type, data) until the job's final status."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", f"/api/jobs/{job_id}/events")
            res = conn.getresponse()
            seq, kind, data = None, "message", []
            while True:
                line = res.fp.readline()
                if not line:
                    return
                line = line.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        ev = json.loads("\n".join(data))
                        yield time.time(), seq, kind, ev
                        if kind == "status" and ev.get("status") in TERMINAL:
                            return
                    seq, kind, data = None, "message", []
                elif line.startswith("id:"):
                    seq = int(line[3:].strip())
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
        finally:
            conn.close()


def start_server(files: dict, data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    assets = os.environ.get("RHYTHMFLOW_ASSETS_DIR", str(REPO.parent / "shared" / "assets"))
    env = dict(os.environ, PYTHONUNBUFFERED="1", RHYTHMFLOW_ASSETS_DIR=assets)
    cmd = [sys.executable, "-m", "rhythmflow", "serve", "--host", "127.0.0.1", "--port",
           str(port), "--data-dir", str(data_dir), "--checkpoint", str(files["ckpt"]),
           "--vae", str(files["vae"]), "--offline", "--assets-dir", assets]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def wait_model_loaded(client: Client, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if client.json("GET", "/api/health").get("model_loaded"):
                return
        except (OSError, RuntimeError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the worker did not load the model within {timeout:.0f} s")


def cpu_seconds(root: psutil.Process) -> float:
    """User + system CPU seconds of ``root`` and its children (the server and its worker)."""
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def api_job(client: Client, request: dict, out: Path, db: Path, timeout: float,
            server: psutil.Process) -> dict:
    """Submit, follow the events, download the audio. Returns wall and CPU seconds (of the
    server and its worker) and the event latencies."""
    cpu0 = cpu_seconds(server)
    t0 = time.perf_counter()
    job_id = client.json("POST", "/api/jobs", request)["id"]
    arrivals, final = [], None
    for arrived, seq, kind, ev in client.events(job_id, timeout):
        arrivals.append((arrived, seq, kind, ev))
        if kind == "status" and ev.get("status") in TERMINAL:
            final = ev["status"]
    if final is None:  # the stream ended without its final status event: ask the job
        final = client.json("GET", f"/api/jobs/{job_id}")["status"]
    if final != "completed":
        raise RuntimeError(f"job {job_id} ended {final}: {client.json('GET', f'/api/jobs/{job_id}')}")
    status, audio = client.call("GET", f"/api/jobs/{job_id}/audio?index=0")
    if status != 200:
        raise RuntimeError(f"audio of {job_id}: HTTP {status}")
    out.write_bytes(audio)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds(server) - cpu0
    timings = client.json("GET", f"/api/jobs/{job_id}")["timings"]
    generate = timings["total"] - timings.get("load", 0.0)  # the worker's own generate call
    with sqlite3.connect(db) as con:  # when the worker stored each event
        at = dict(con.execute("SELECT seq, at FROM events WHERE job_id=?", (job_id,)).fetchall())
    sample_start = next((at[seq] for _, seq, kind, ev in arrivals
                         if kind == "stage_started" and ev.get("stage") == "sample"), None)
    recorded, stepped = [], []
    for arrived, seq, kind, ev in arrivals:
        if kind == "sampling_step":
            recorded.append(arrived - at[seq])
            if sample_start is not None:
                stepped.append(arrived - (sample_start + ev["elapsed"]))
    return {"seconds": seconds, "cpu": cpu, "outside": seconds - generate, "recorded": recorded,
            "stepped": stepped, "id": job_id}


def direct_job(gen: SongGenerator, request: dict, files: dict, out: Path) -> tuple[float, float]:
    """The same request in this process: plan, run, write the file the API serves. Returns
    (wall seconds, CPU seconds of this process)."""
    me = psutil.Process()
    cpu0 = cpu_seconds(me)
    t0 = time.perf_counter()
    req = GenerationRequest.from_dict(dict(request, checkpoint=str(files["ckpt"]),
                                           vae=str(files["vae"])))
    p = plan(req, Machine.detect(measure=False), config=gen.config, runtime=gen.runtime)
    song = run(p, gen)
    write_audio(out, song.audio[0], song.sample_rate, sample_format="int16", normalize="peak")
    return time.perf_counter() - t0, cpu_seconds(me) - cpu0


def preview_job(client: Client, request: dict, db: Path, timeout: float) -> dict:
    """One API job; its wall seconds, worker seconds and the previews' own seconds."""
    t0 = time.perf_counter()
    job_id = client.json("POST", "/api/jobs", request)["id"]
    for _ in client.events(job_id, timeout):
        pass
    seconds = time.perf_counter() - t0
    job = client.json("GET", f"/api/jobs/{job_id}")
    if job["status"] != "completed":
        raise RuntimeError(f"job {job_id} ended {job['status']}: {job['error']}")
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT data FROM events WHERE job_id=? AND type='preview'",
                           (job_id,)).fetchall()
    took = [json.loads(r[0])["took"] for r in rows]
    worker = job["timings"]["total"] - job["timings"].get("load", 0.0)
    return {"seconds": seconds, "worker": worker, "previews": len(took), "took": sum(took)}


def preview_rows(client: Client, request: dict, db: Path, repeats: int, timeout: float
                 ) -> tuple[list[list], list[float]]:
    rows, shares = [], []
    for i in range(repeats):
        order = ("default", "none") if i % 2 == 0 else ("none", "default")
        got = {}
        for side in order:
            body = request if side == "default" else dict(request, preview_every=0)
            got[side] = preview_job(client, body, db, timeout)
        d, n = got["default"], got["none"]
        share = 100 * d["took"] / d["worker"]
        shares.append(share)
        rows.append([i + 1, " → ".join(order), d["previews"], d["took"], d["worker"],
                     f"{share:.1f} %", n["worker"],
                     f"{100 * (d['worker'] - n['worker']) / n['worker']:+.1f} %"])
    return rows, shares


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="solver steps of one job")
    ap.add_argument("--repeats", type=int, default=3, help="pairs of runs")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one job may take")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rhythmflow-bench-serve-"))
    files = {"ckpt": save_checkpoint(random_dit(CFG, seed=7), tmp / "cfm_model.pt"),
             "vae": build_tiny_vae(tmp / "vae_model.pt")}
    vector = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    request = {"lrc": LRC, "style_embedding": [float(v) for v in vector], "steps": args.steps,
               "cfg_strength": 4.0, "seed": 11, "format": "wav"}
    port, log, data_dir = free_port(), tmp / "serve.log", tmp / "data"
    proc = start_server(files, data_dir, port, log)
    client = Client(port)
    try:
        wait_model_loaded(client, proc, log, timeout=300)
        assets = os.environ.get("RHYTHMFLOW_ASSETS_DIR", str(REPO.parent / "shared" / "assets"))
        gen = SongGenerator.from_pretrained(str(files["ckpt"]), vae=str(files["vae"]),
                                            assets_dir=assets, offline=True)
        db = data_dir / "jobs.sqlite3"
        warm = dict(request, steps=2)  # first runs pay one-off costs (lyrics front end, caches)
        server = psutil.Process(proc.pid)
        api_job(client, warm, tmp / "warm_api.wav", db, args.timeout, server)
        direct_job(gen, warm, files, tmp / "warm_direct.wav")
        rows, recorded, stepped, overheads, cpu_overheads = [], [], [], [], []
        for i in range(args.repeats):
            order = ("direct", "api") if i % 2 == 0 else ("api", "direct")
            got: dict[str, float] = {}
            for side in order:
                if side == "direct":
                    got["direct"], got["direct_cpu"] = direct_job(gen, request, files,
                                                                  tmp / f"direct_{i}.wav")
                else:
                    r = api_job(client, request, tmp / f"api_{i}.wav", db, args.timeout, server)
                    got["api"], got["api_cpu"], got["outside"] = r["seconds"], r["cpu"], r["outside"]
                    recorded += r["recorded"]
                    stepped += r["stepped"]
            over = 100 * (got["api"] - got["direct"]) / got["direct"]
            cpu_over = 100 * (got["api_cpu"] - got["direct_cpu"]) / got["direct_cpu"]
            overheads.append(over)
            cpu_overheads.append(cpu_over)
            rows.append([i + 1, " → ".join(order), got["direct"], got["api"], f"{over:+.1f} %",
                         got["outside"], got["direct_cpu"], got["api_cpu"], f"{cpu_over:+.1f} %"])
        same = np.array_equal(sf.read(tmp / "direct_0.wav")[0], sf.read(tmp / "api_0.wav")[0])
        prev_rows, shares = preview_rows(client, request, db, args.repeats, args.timeout)
    finally:
        stop_server(proc)

    m = machine()
    print(f"machine: {m['cpu']} ({m['cores']} cores, {', '.join(m['isa']) or 'no AVX'}), "
          f"torch {m['torch']}, {m['threads']} threads; tiny model {CFG.depth} layer(s), "
          f"dim {CFG.dim}; {args.steps} euler steps, cfg 4, 95 s song")
    print(table("Job through the API (submit → audio downloaded) vs direct generate + write",
                ["pair", "order", "direct s", "API s", "overhead", "API s outside generate",
                 "direct CPU s", "API CPU s", "CPU overhead"], rows))
    med = statistics.median(overheads)
    print(f"\nmedian overhead {med:+.1f} % wall, {statistics.median(cpu_overheads):+.1f} % CPU "
          f"(target ≤ 5 % on a job ≥ 10 s); "
          f"same audio samples from both paths: {same}\n'API s outside generate': submit, "
          "queue pick-up, writing the file and the download — the service's own time, which a "
          "busy machine disturbs less than the difference of two runs. CPU: user + system "
          "seconds of the server and its worker vs of this process")
    lat_rows = [[name, len(v), pct(v, 50), pct(v, 95), max(v) if v else float("nan")]
                for name, v in (("recorded → client", recorded), ("step → client", stepped))]
    print(table("sampling_step event latency to the SSE client (s)",
                ["from", "events", "median", "p95", "max"], lat_rows))
    worst = max(stepped or recorded or [float("nan")])
    print(f"\nworst event latency {worst:.3f} s (target ≤ 0.5 s)")
    print(table("Previews at the server's default (preview_every absent) vs none",
                ["pair", "order", "previews", "preview s", "job s (worker)", "share",
                 "job s without", "difference"], prev_rows))
    print(f"\nmedian preview share {statistics.median(shares):.1f} % of the job's worker time "
          "(target ≤ 10 %); 'difference': the job with previews vs without, noise included")


if __name__ == "__main__":
    main()
