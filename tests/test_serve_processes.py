"""The service as real processes and signals: a worker killed with SIGKILL mid-job, two workers
on a throw-away Redis, and a server stopped with SIGTERM and started again. Everything binds
127.0.0.1; every wait is bounded."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.servekit import (
    Service,
    build_files,
    pid_alive,
    process_state,
    start_redis,
    stop,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_files(tmp_path_factory.mktemp("proc-files"))


@pytest.fixture()
def service(files, tmp_path):
    svc = Service(files, tmp_path)
    yield svc
    svc.close()


def torch_loaded(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as fh:
        return "libtorch" in fh.read()


def test_a_worker_killed_mid_job_is_resumed_by_the_next_bit_identically(service):
    server = service.serve("--no-worker")
    first = service.worker("worker1")
    wait_for("a loaded worker", lambda: service.get("/api/health")["model_loaded"], timeout=120)
    job_id = service.submit(steps=30, seed=5)
    seen: list[int] = []

    def reached_step_2() -> bool:
        seen.append(service.job(job_id)["progress"]["step"])
        return seen[-1] >= 2

    wait_for("step 2", reached_step_2, timeout=120, every=0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed_at = service.job(job_id)
    assert killed_at["status"] == "running" and killed_at["progress"]["step"] < 30

    service.worker("worker2")

    def finished() -> dict | None:
        job = service.job(job_id)
        seen.append(job["progress"]["step"])
        return job if job["status"] == "completed" else None

    job = wait_for("the job to complete on the second worker", finished, timeout=240, every=0.1)
    assert job["attempts"] == 2 and job["error"] is None
    assert seen == sorted(seen), "progress went backwards"
    assert service.statuses(job_id) == ["queued", "running", "queued", "running", "completed"]
    steps = service.steps(job_id)  # resumed from the saved state: no step is run twice
    assert steps[0] == 1 and steps[-1] == 30 and steps == sorted(set(steps))
    ref = service.done(service.submit(steps=30, seed=5))
    assert ref["attempts"] == 1
    assert np.array_equal(service.latents(job_id), service.latents(ref["id"]))
    assert not torch_loaded(server.pid), "the HTTP process loaded torch"
    assert torch_loaded(service.procs[-1].pid)  # (the check can fail: a worker has it)


def test_a_paused_worker_that_lost_its_lease_writes_nothing(service):
    service.serve("--no-worker")
    first = service.worker("worker1")
    wait_for("a loaded worker", lambda: service.get("/api/health")["model_loaded"], timeout=120)
    job_id = service.submit(steps=20, seed=6)
    wait_for("step 2", lambda: service.job(job_id)["progress"]["step"] >= 2, timeout=120,
             every=0.02)
    freeze_outside_a_store_write(first, service.data / "jobs.sqlite3")
    try:
        service.worker("worker2")  # reaps the expired lease and resumes the job
        job = service.done(job_id)
    finally:
        first.send_signal(signal.SIGCONT)
    wait_for("worker1 to notice", lambda: "lease lost" in service.log("worker1"), timeout=60)
    assert service.job(job_id) == job  # nothing changed after the first worker woke up
    assert job["attempts"] == 2
    assert service.statuses(job_id).count("completed") == 1
    assert stop(first, signal.SIGTERM) == 0


def _store_writable(db: Path, wait: float) -> bool:
    con = sqlite3.connect(db, timeout=wait, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:  # "database is locked": somebody holds the write lock
        return False
    finally:
        con.close()


def freeze_outside_a_store_write(proc: subprocess.Popen, db: Path, tries: int = 20) -> None:
    """SIGSTOP ``proc`` (a hang: no heartbeat, no step) at a moment it holds no write lock on
    the SQLite store. A process frozen inside one of its millisecond write transactions keeps
    SQLite's write lock until it runs again, and every other writer waits: that is SQLite's
    locking (README, *Many machines*), not the hang this test is about. Bounded retries."""
    for _ in range(tries):
        proc.send_signal(signal.SIGSTOP)
        wait_for("the worker to stop", lambda: process_state(proc.pid) == "T", timeout=10,
                 every=0.01)
        if _store_writable(db, wait=2.0):
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    pytest.fail(f"the worker held the store's write lock at each of {tries} SIGSTOPs")


@pytest.fixture()
def redis_url(tmp_path):
    proc, url = start_redis(tmp_path)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_two_workers_on_redis_one_killed_every_job_completes_once(files, tmp_path, redis_url):
    svc = Service(files, tmp_path, queue=redis_url)
    try:
        svc.serve("--no-worker")
        workers = {"w1": svc.worker("w1"), "w2": svc.worker("w2")}
        wait_for("two loaded workers", lambda: sum(
            w["model_loaded"] for w in svc.get("/api/workers")["workers"]) == 2, timeout=180)
        ids = [svc.submit(steps=10, seed=i) for i in range(4)]

        def busy_worker():
            for w in svc.get("/api/workers")["workers"]:
                job = w["current_job"] and svc.job(w["current_job"])
                if job and job["status"] == "running" and job["progress"]["step"] >= 2:
                    return w, job
            return None

        victim, job = wait_for("a worker at step 2", busy_worker, timeout=180, every=0.05)
        pid = int(victim["id"].split("-")[-2])
        [name] = [n for n, p in workers.items() if p.pid == pid]
        workers[name].send_signal(signal.SIGKILL)
        workers[name].wait(timeout=30)

        finals = [svc.done(i, timeout=300) for i in ids]
        for j in finals:
            statuses = svc.statuses(j["id"])
            assert statuses.count("completed") == 1 and statuses[-1] == "completed"
            assert len(j["outputs"]) == 1
        attempts = {j["id"]: j["attempts"] for j in finals}
        assert attempts[job["id"]] == 2
        assert sorted(attempts.values()) == [1, 1, 1, 2]
        assert svc.get("/api/health")["queue"]["new"] == 0
    finally:
        svc.close()


def test_a_server_stopped_with_sigterm_and_started_again_loses_nothing(service):
    server = service.serve()  # with its embedded worker
    wait_for("the embedded worker", lambda: service.get("/api/health")["model_loaded"],
             timeout=120)
    worker_pid = int(service.get("/api/workers")["workers"][0]["id"].split("-")[-2])
    ids = [service.submit(steps=12, seed=i) for i in range(3)]
    wait_for("the first job at step 2", lambda: service.job(ids[0])["progress"]["step"] >= 2,
             timeout=120, every=0.05)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells the truth
    assert stop(server, signal.SIGTERM, timeout=60) in (0, -signal.SIGTERM)
    assert "the running job is saved and requeued" in service.log()
    assert not pid_alive(worker_pid), "the worker outlived the server"

    service.serve()
    finals = [service.done(i, timeout=300) for i in ids]
    assert finals[0]["attempts"] == 2 and [j["attempts"] for j in finals[1:]] == [1, 1]
    # the running job went back to the queue with its state and was resumed, not restarted
    assert service.statuses(ids[0]) == ["queued", "running", "queued", "running", "completed"]
    steps = service.steps(ids[0])
    assert steps[0] == 1 and steps[-1] == 12 and steps == sorted(set(steps))
    assert all(len(j["outputs"]) == 1 for j in finals)
    history = service.get("/api/jobs?limit=10")["jobs"]
    assert [j["id"] for j in history] == ids[::-1]


def test_a_killed_server_leaves_no_orphan_worker(service):
    server = service.serve()
    wait_for("the embedded worker", lambda: service.get("/api/health")["model_loaded"],
             timeout=120)
    worker_pid = int(service.get("/api/workers")["workers"][0]["id"].split("-")[-2])
    server.send_signal(signal.SIGKILL)  # no lifespan shutdown runs
    server.wait(timeout=30)
    wait_for("the worker to exit with its parent", lambda: not pid_alive(worker_pid), timeout=60)
