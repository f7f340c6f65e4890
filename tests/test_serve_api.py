"""The HTTP API with FastAPI's TestClient: each route and every 4xx path; a bad request queues
nothing. Jobs run on the tiny model, in Huey's immediate mode through an in-process worker, or
on a real SQLite Huey queue with a worker thread (cancel / resume of a running job)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from rhythmflow.errors import LrcError
from rhythmflow.lyrics import parse_lrc
from rhythmflow.serve.app import create_app
from rhythmflow.serve.queue import JobQueue
from rhythmflow.serve.settings import Limits, Settings
from rhythmflow.serve.store import Store
from rhythmflow.serve.worker import Worker
from tests.servekit import LRC, build_files, env, job_body, service_settings, wait_for


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_files(tmp_path_factory.mktemp("serve-files"))


def settings(files, data_dir, **kw) -> Settings:
    return service_settings(files, data_dir, **kw)


@pytest.fixture(scope="module")
def immediate(files, tmp_path_factory):
    """App + in-process worker; Huey immediate mode runs a job inside POST /api/jobs."""
    s = settings(files, tmp_path_factory.mktemp("immediate"))
    store, queue = Store(s.db_path), JobQueue(None, s.data_dir, immediate=True)
    worker = Worker(s, store, queue)
    queue.set_handler(worker.process)
    worker.load()
    with TestClient(create_app(s, queue=queue, store=store)) as client:
        client.worker = worker
        yield client
    worker.stop.set()


@pytest.fixture()
def idle(files, tmp_path):
    """App on a real SQLite Huey queue with no worker: jobs stay queued."""
    s = settings(files, tmp_path / "data", limits=Limits(lrc_bytes=2000, body_bytes=20000,
                                                         audio_bytes=2_000_000,
                                                         audio_seconds=30))
    with TestClient(create_app(s)) as client:
        yield client


def depth(client) -> int:
    return sum(client.get("/api/health").json()["queue"].values())


def sse(client, job_id: str, headers=None) -> list[tuple[str, dict]]:
    with client.stream("GET", f"/api/jobs/{job_id}/events", headers=headers) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line
                     and not line.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_a_job_runs_and_serves_audio_metadata_and_events(immediate):
    r = immediate.post("/api/jobs", json=job_body())
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    job = immediate.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "completed" and job["attempts"] == 1 and job["error"] is None
    assert job["progress"]["step"] == job["progress"]["total_steps"] == 3
    assert job["plan"]["seed"] == 11 and job["plan"]["frames"] == 2048
    assert job["plan"]["runtime_class"] == "cpu-float32" and job["request"]["seed"] == 11
    assert {"lyrics", "sample", "decode"} <= set(job["timings"])
    [out] = job["outputs"]
    audio = immediate.get(out["url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    data, sr = sf.read(io.BytesIO(audio.content), always_2d=True)
    assert sr == 44100 and data.shape == (2048 * 2048, 2) and np.abs(data).max() > 0.5
    meta = immediate.get(out["metadata_url"]).json()
    assert meta["seed"] == 11 and meta["settings"]["steps"] == 3 and meta["status"] == "completed"

    events = sse(immediate, job_id)
    assert [e["step"] for kind, e in events if kind == "sampling_step"] == [1, 2, 3]
    assert all(kind == e["event"] for kind, e in events)
    stages = {e["stage"] for kind, e in events if kind == "stage_finished"}
    assert {"lyrics", "style", "sample", "decode"} <= stages
    assert [e["outputs"] for kind, e in events if kind == "result"] == [["song.wav"]]
    assert [e["status"] for kind, e in events if kind == "status"] == ["queued", "running",
                                                                       "completed"]
    assert events[-1][0] == "status"  # the stream ends with the final status
    # replay after a given event id (a reconnecting client)
    later = sse(immediate, job_id, headers={"Last-Event-ID": "3"})
    assert len(later) == len(events) - 3


def test_plain_lyrics_are_timed_by_the_plan(immediate):
    body = job_body(lyrics="[verse]\nHello little song\nAnother line of words")
    del body["lrc"]
    r = immediate.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    job = immediate.get(f"/api/jobs/{r.json()['id']}").json()
    assert job["status"] == "completed" and job["request"]["lyrics"].startswith("[verse]")
    assert "]Hello little song" in job["plan"]["lrc"] and job["plan"]["autotime"]["lrc"]
    r = immediate.post("/api/validate", json=dict(body, lrc="[00:01.00]x"))
    assert r.status_code == 422 and r.json()["error"]["field"] == "lyrics"


def test_batch_in_flac_has_one_output_per_song(immediate):
    job_id = immediate.post("/api/jobs", json=job_body(batch=2, format="flac")).json()["id"]
    job = immediate.get(f"/api/jobs/{job_id}").json()
    assert [(o["index"], o["seed"], o["format"]) for o in job["outputs"]] == [
        (0, 11, "flac"), (1, 12, "flac")]
    r = immediate.get(f"/api/jobs/{job_id}/audio?index=1")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/flac"
    assert immediate.get(f"/api/jobs/{job_id}/audio?index=2").status_code == 404


def test_validate_returns_the_plan_with_an_estimate_after_a_job(immediate):
    immediate.post("/api/jobs", json=job_body())
    r = immediate.post("/api/validate", json=job_body(steps=6, seed=None))
    assert r.status_code == 200
    plan = r.json()["plan"]
    assert plan["steps"] == 6 and isinstance(plan["seed"], int) and plan["frames"] == 2048
    assert plan["runtime_class"] == "cpu-float32" and plan["estimate"]["total"] > 0
    assert plan["provisional"] is False and plan["memory"]["available"] > 0


def _lrc_message(text: str) -> str:
    with pytest.raises(LrcError) as exc:
        parse_lrc(text)
    return str(exc.value)


BAD = [
    ({"lrc": "[00:01.00]ok\n[00:0x]bad line"}, 422, "lrc", 2),
    ({"mood": "happy"}, 422, "mood", None),
    ({"checkpoint": "/etc/passwd"}, 422, "checkpoint", None),
    ({"style_audio": "/etc/passwd"}, 422, "style_audio", None),
    ({"vae": "../../x.pt"}, 422, "vae", None),
    ({"vae_dtype": "bfloat16"}, 422, "vae_dtype", None),  # the worker's arithmetic
    ({"style_prompt": "jazz"}, 422, "style_embedding", None),  # two styles
    ({"style_embedding": [0.0] * 511}, 422, "style_embedding", None),
    ({"style_embedding": None}, 422, "style_prompt", None),  # no style
    ({"steps": 0}, 422, "steps", None),
    ({"steps": True}, 422, "steps", None),
    ({"steps": "3"}, 422, "steps", None),
    ({"batch": 99}, 422, "batch", None),
    ({"format": "aiff"}, 422, "format", None),
    ({"solver": "dopri5"}, 422, "solver", None),
    ({"guidance_interval": [0.8, 0.2]}, 422, "guidance_interval", None),
    ({"lrc": "[00:01.00]" + "x" * 3000}, 413, "lrc", None),
]


@pytest.mark.parametrize("change,status,field,line", BAD)
def test_a_bad_request_is_refused_and_nothing_is_queued(idle, change, status, field, line):
    for route in ("/api/validate", "/api/jobs"):
        r = idle.post(route, json=job_body(**change))
        assert r.status_code == status, r.text
        err = r.json()["error"]
        assert err["field"] == field and err["line"] == line and err["message"]
        assert err["errors"][0] == {"field": field, "message": err["message"], "line": line}
    assert idle.get("/api/jobs").json()["jobs"] == [] and depth(idle) == 0


def test_every_problem_is_listed_at_once_and_nothing_is_queued(idle):
    """One pass finds them all: each bad LRC line (by its 1-based line), the missing style, a
    bad field value, an unknown field. The envelope's message/field/line stay the first's."""
    lrc = "[00:01.00]ok\n[00:75.00]bad seconds\n[00:03.00]fine\n[00:0x]bad stamp\n"
    body = {"lrc": lrc, "steps": 0, "format": "aiff", "mood": "happy"}
    for route in ("/api/validate", "/api/jobs"):
        r = idle.post(route, json=body)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        found = [(e["field"], e["line"]) for e in err["errors"]]
        assert sorted(found, key=str) == sorted([("mood", None), ("style_prompt", None),
                                                 ("steps", None), ("format", None),
                                                 ("lrc", 2), ("lrc", 4)], key=str)
        assert (err["field"], err["line"], err["message"]) == (
            err["errors"][0]["field"], err["errors"][0]["line"], err["errors"][0]["message"])
        assert err["field"] == "mood"  # field names are checked first, as before
        by = {(e["field"], e["line"]): e["message"] for e in err["errors"]}
        assert by[("lrc", 2)] == _lrc_message("[00:01.00]ok\n[00:75.00]bad seconds")
        assert by[("lrc", 4)].startswith("LRC line 4: ")
        assert by[("steps", None)].startswith("steps: ")
        assert "give exactly one style" in by[("style_prompt", None)]
    assert idle.get("/api/jobs").json()["jobs"] == [] and depth(idle) == 0


def test_a_bad_lrc_line_and_a_missing_style_are_both_reported(idle):
    """The page's case: typing a bad line while the style is still empty."""
    r = idle.post("/api/validate", json={"lrc": "[00:01.00]ok\n[00:75.00]bad seconds"})
    assert r.status_code == 422
    errors = r.json()["error"]["errors"]
    assert [(e["field"], e["line"]) for e in errors] == [("style_prompt", None), ("lrc", 2)]
    # a single problem is listed too, the same as the envelope
    r = idle.post("/api/validate", json=job_body(steps=0))
    err = r.json()["error"]
    assert err["errors"] == [{"field": "steps", "message": err["message"], "line": None}]


def test_a_size_limit_makes_it_a_413_listed_first(idle):
    r = idle.post("/api/jobs", json={"lrc": "[00:01.00]" + "x" * 3000, "steps": 0})
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert [(e["field"], e["line"]) for e in err["errors"]] == [
        ("lrc", None), ("style_prompt", None), ("steps", None)]
    assert err["field"] == "lrc" and "larger than" in err["message"]
    assert depth(idle) == 0


def test_duration_is_checked_against_the_model(immediate, tmp_path):
    # the tiny checkpoint is a base (95 s) model; its worker published that
    r = immediate.post("/api/jobs", json=job_body(duration=120))
    assert r.status_code == 422 and "base models generate exactly 95 s" in r.text
    # an official model name is known without any worker
    s = Settings(data_dir=tmp_path, model="full", worker=False, allow_hosts=("testserver",))
    with TestClient(create_app(s)) as client:
        r = client.post("/api/validate", json=job_body(duration=300))
        assert r.status_code == 422 and r.json()["error"]["field"] == "duration"
        plan = client.post("/api/validate", json=job_body(duration=200)).json()["plan"]
        assert plan["frames"] == int(200 * 44100 / 2048) and plan["config"]["max_frames"] == 6144
        assert plan["provisional"] is True


def test_lrc_errors_carry_the_cli_message(idle):
    lrc = "[00:01.00]ok\n[00:0x]bad line"
    r = idle.post("/api/validate", json=job_body(lrc=lrc))
    assert r.json()["error"]["message"] == _lrc_message(lrc)


@pytest.mark.parametrize("body,status", [(b"{not json", 422), (b"[1, 2]", 422),
                                         (b'{"lrc": "' + b"x" * 30000 + b'"}', 413)])
def test_malformed_or_oversized_bodies(idle, body, status):
    r = idle.post("/api/jobs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and r.json()["error"]["message"]
    assert depth(idle) == 0


def test_a_job_too_big_for_the_workers_memory_is_refused(immediate):
    worker = immediate.worker
    facts = json.loads(json.dumps(worker.facts))
    facts["machine"]["memory_available"] = 1000  # as a worker with 1 kB free would say
    worker.store.worker_beat(worker.id, model=facts)
    try:
        before = len(immediate.get("/api/jobs?limit=100").json()["jobs"])
        r = immediate.post("/api/jobs", json=job_body())
        assert r.status_code == 422 and "not enough memory" in r.json()["error"]["message"]
        assert len(immediate.get("/api/jobs?limit=100").json()["jobs"]) == before
    finally:
        worker.store.worker_beat(worker.id, model=worker.facts)


def test_queued_job_cancel_resume_delete_and_404s(idle):
    job_id = idle.post("/api/jobs", json=job_body()).json()["id"]
    assert depth(idle) == 1 and idle.get(f"/api/jobs/{job_id}").json()["status"] == "queued"
    assert idle.get(f"/api/jobs/{job_id}/audio").status_code == 409  # not completed
    assert idle.post(f"/api/jobs/{job_id}/resume").status_code == 409  # not cancelled
    r = idle.post(f"/api/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert idle.post(f"/api/jobs/{job_id}/cancel").status_code == 409
    r = idle.post(f"/api/jobs/{job_id}/resume")
    assert r.status_code == 200 and r.json()["status"] == "queued" and depth(idle) == 2
    assert idle.delete(f"/api/jobs/{job_id}").status_code == 204
    for method, path in [("get", ""), ("get", "/events"), ("get", "/audio"),
                         ("get", "/metadata"), ("post", "/cancel"), ("post", "/resume"),
                         ("delete", "")]:
        r = getattr(idle, method)(f"/api/jobs/{job_id}{path}")
        assert r.status_code == 404, (method, path)
    assert idle.get("/api/jobs?limit=0").status_code == 422


def test_history_is_newest_first_and_paginated(idle):
    ids = [idle.post("/api/jobs", json=job_body(seed=i)).json()["id"] for i in range(5)]
    page = idle.get("/api/jobs?limit=2").json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2] and page["next"] == ids[3]
    page2 = idle.get(f"/api/jobs?limit=2&before={page['next']}").json()
    assert [j["id"] for j in page2["jobs"]] == ids[::-1][2:4]
    last = idle.get(f"/api/jobs?limit=2&before={page2['next']}").json()
    assert [j["id"] for j in last["jobs"]] == ids[:1] and last["next"] is None


def _wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(8000 * seconds), np.int16), 8000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_style_audio_upload(idle, files):
    req = json.dumps({"lrc": LRC, "steps": 3, "seed": 1})
    r = idle.post("/api/jobs", data={"request": req},
                  files={"style_audio": ("ref.wav", _wav(12), "audio/wav")})
    assert r.status_code == 201, r.text
    job = idle.get(f"/api/jobs/{r.json()['id']}").json()
    assert job["request"]["style_audio"] == "style_audio.wav"  # no server path leaves
    # one form field per request field works too
    r = idle.post("/api/validate", data={"lrc": LRC, "steps": "4", "anytime": "true"},
                  files={"style_audio": ("ref.flac", _wav(12), "audio/flac")})
    assert r.status_code == 200 and r.json()["plan"]["steps"] == 4
    for name, content, status in [("ref.wav", b"RIFF not audio", 422),
                                  ("ref.exe", _wav(12), 422),
                                  ("long.wav", _wav(40), 422),
                                  ("huge.wav", b"\0" * 2_100_000, 413)]:
        r = idle.post("/api/jobs", data={"request": req},
                      files={"style_audio": (name, content, "audio/wav")})
        assert r.status_code == status, (name, r.text)
        assert r.json()["error"]["field"] in ("style_audio", None)
    r = idle.post("/api/jobs", data={"request": req}, files={"other": ("a.wav", _wav(1))})
    assert r.status_code == 422
    assert len(idle.get("/api/jobs").json()["jobs"]) == 1


def test_api_key_guards_every_route_but_health(files, tmp_path):
    s = settings(files, tmp_path, api_key="s3cret")
    with TestClient(create_app(s)) as client:
        assert client.get("/api/health").json()["status"] == "degraded"  # (no worker)
        for method, path in [("get", "/api/jobs"), ("post", "/api/jobs"),
                             ("post", "/api/validate"), ("get", "/api/jobs/x"),
                             ("get", "/api/jobs/x/events"), ("post", "/api/jobs/x/cancel"),
                             ("get", "/api/workers")]:
            r = getattr(client, method)(path)
            assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
            r = getattr(client, method)(path, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
        assert client.get("/api/jobs", headers={"X-API-Key": "s3cret"}).status_code == 200
        r = client.post("/api/jobs", json=job_body(),
                        headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 201


def test_binding_beyond_loopback_without_a_key_warns(files, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="rhythmflow.serve.app"):
        create_app(settings(files, tmp_path, host="0.0.0.0"))
    assert "without an API key" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rhythmflow.serve.app"):
        create_app(settings(files, tmp_path / "b", host="0.0.0.0", api_key="k"))
    assert "without an API key" not in caplog.text


def test_health_reports_workers_model_and_queue(immediate, idle):
    r = immediate.get("/api/health")
    h = r.json()
    assert r.status_code == 200 and h["status"] == "ok"
    assert h["workers_alive"] == 1 and h["model_loaded"] is True and "workers" not in h
    assert immediate.get("/api/workers").json()["workers"][0]["runtime_class"] == "cpu-float32"
    assert set(h["queue"]) == {"new", "cpu_float32"}
    r = idle.get("/api/health")  # no worker: degraded, with the reason
    h = r.json()
    assert r.status_code == 503 and "no worker alive" in h["reason"]
    assert h["workers_alive"] == 0 and h["model_loaded"] is False and h["queue"] == {"new": 0}


@pytest.mark.slow
def test_the_http_process_never_imports_torch(files, tmp_path):
    code = f"""
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from rhythmflow.serve.app import create_app
from rhythmflow.serve.settings import Settings
s = Settings(data_dir=Path({str(tmp_path)!r}), checkpoint=Path({str(files['checkpoint'])!r}),
             worker=False, allow_hosts=("testserver",))
body = json.loads({json.dumps(json.dumps(job_body()))})
with TestClient(create_app(s)) as c:
    codes = [c.post('/api/validate', json=body).status_code,
             c.post('/api/jobs', json=body).status_code,
             c.post('/api/jobs', json=dict(body, lrc='[00:0x]bad')).status_code,
             c.get('/api/jobs').status_code, c.get('/api/health').status_code]
print(json.dumps({{'codes': codes, 'torch': 'torch' in sys.modules}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env(), timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"codes": [200, 201, 422, 200, 503], "torch": False}  # 503: no worker


@pytest.fixture()
def threaded(files, tmp_path):
    """App + a worker thread on a real SQLite Huey queue."""
    s = settings(files, tmp_path / "data")
    store = Store(s.db_path)
    worker = Worker(s, store, JobQueue(None, s.data_dir))
    worker.load()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    with TestClient(create_app(s, store=store)) as client:
        client.worker = worker
        yield client
    worker.stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive()


def test_cancel_a_running_job_then_resume_it_bit_identically(threaded):
    c = threaded
    job_id = c.post("/api/jobs", json=job_body(steps=12, seed=3)).json()["id"]
    wait_for("step 2", lambda: c.get(f"/api/jobs/{job_id}").json()["progress"]["step"] >= 2)
    assert c.post(f"/api/jobs/{job_id}/cancel").json()["cancel_requested"] is True
    job = wait_for("cancelled", lambda: (j := c.get(f"/api/jobs/{job_id}").json())["status"]
                   == "cancelled" and j)
    stopped_at = job["progress"]["step"]
    assert 2 <= stopped_at < 12 and job["resumable"] and job["outputs"] == []
    assert c.post(f"/api/jobs/{job_id}/resume").json()["status"] in ("queued", "running")
    job = wait_for("completed", lambda: (j := c.get(f"/api/jobs/{job_id}").json())["status"]
                   == "completed" and j)
    assert job["attempts"] == 2
    steps = [e["step"] for kind, e in sse(c, job_id) if kind == "sampling_step"]
    assert steps[0] == 1 and steps[-1] == 12 and steps == sorted(steps)
    assert steps.count(stopped_at + 1) == 1  # resumed from the state it stopped at
    ref_id = c.post("/api/jobs", json=job_body(steps=12, seed=3)).json()["id"]
    wait_for("reference", lambda: c.get(f"/api/jobs/{ref_id}").json()["status"] == "completed")
    jobs = c.worker.settings.jobs_dir
    assert np.array_equal(np.load(jobs / job_id / "latents.npy"),
                          np.load(jobs / ref_id / "latents.npy"))
    assert not (jobs / job_id / "state.pt").exists()  # used up


def test_deleting_a_running_job_stops_its_worker_and_leaves_nothing(threaded):
    c = threaded
    job_id = c.post("/api/jobs", json=job_body(steps=12, seed=4)).json()["id"]
    wait_for("step 1", lambda: c.get(f"/api/jobs/{job_id}").json()["progress"]["step"] >= 1)
    assert c.delete(f"/api/jobs/{job_id}").status_code == 204
    wait_for("the worker to let go", lambda: c.get("/api/workers").json()["workers"][0][
        "current_job"] is None and c.worker._token is None, timeout=60)
    assert c.get(f"/api/jobs/{job_id}").status_code == 404
    assert not (c.worker.settings.jobs_dir / job_id).exists()
    # the worker is still serving
    other = c.post("/api/jobs", json=job_body()).json()["id"]
    wait_for("the next job", lambda: c.get(f"/api/jobs/{other}").json()["status"] == "completed")


def test_reads_never_wait_for_a_held_write_lock(tmp_path):
    """A worker frozen inside a write transaction holds SQLite's write lock; the HTTP side's
    reads are WAL snapshots and still answer (they used to wait 30 s, then fail)."""
    import sqlite3

    store = Store(tmp_path / "jobs.sqlite3")
    store.create("j1", {"lrc": ""}, {"steps": 4})
    holder = sqlite3.connect(tmp_path / "jobs.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE jobs SET step=3 WHERE id='j1'")  # uncommitted: not visible
    try:
        assert store.get("j1")["step"] == 0
        assert store.counts() == {"queued": 1}
        assert [j["id"] for j in store.history()] == ["j1"]
        assert store.events_after("j1")[0]["data"]["status"] == "queued"
        assert store.workers_alive(within=60) == []
        assert [q["id"] for q in store.queued()] == ["j1"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_the_worker_plans_with_the_measured_layout_of_its_machine(files, tmp_path, monkeypatch):
    """The HTTP side plans with the machine facts a worker published (its probe); the worker's
    own plan, the one that runs, reads the same cached probe: same guidance layout."""
    import types

    from rhythmflow.lyrics.resources import LyricsAssets
    from rhythmflow.machine import probe as pr
    from rhythmflow.machine.forward import LayoutTiming
    from rhythmflow.planner.core import Machine, runtime_for
    from rhythmflow.serve.core import worker_plan
    from tests.servekit import CFG

    monkeypatch.setenv("RHYTHMFLOW_CACHE_DIR", str(tmp_path / "cache"))
    measured = pr.Probe("cpu", "recorded CPU", threads=1,
                        candidates=(pr.Candidate("float32", 0.1, 1.0, 0.0, "exact"),),
                        layout_dtype="float32", layouts=(LayoutTiming(2048, 2.0, 1.0),))
    monkeypatch.setattr(pr, "measure_cpu", lambda t, **kw: measured)
    s = settings(files, tmp_path / "data")
    machine = Machine.detect(threads=1)  # what Worker.load measures and publishes
    generator = types.SimpleNamespace(config=CFG, runtime=runtime_for(machine, "cpu", "float32", 1),
                                      lyrics_assets=LyricsAssets.of(None, True))
    p = worker_plan({"request": job_body()}, s, generator)
    assert p.guidance_layout == "split"
    assert any(r.startswith("split guidance (two forwards): 2.00x faster") for r in p.reasons)
