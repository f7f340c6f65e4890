"""``check``, ``repair``, ``takes`` and ``ref_job`` as job fields (issue 23, the service): jobs
run on the tiny model with the server's scripted recogniser (``--asr-command``: a small program
that reads which calls to mis-hear from a file the test writes). The verdicts, rounds and takes
reach the sidecars and ``GET /api/jobs/{id}``; a client can never name a recogniser; an edit
job refers to a finished job's song by its id only. Every wait is bounded; nothing is timed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from rhythmflow.serve.app import create_app
from rhythmflow.serve.keys import ApiKey, hash_key
from rhythmflow.serve.queue import JobQueue
from rhythmflow.serve.store import Store
from rhythmflow.serve.worker import Worker
from tests.servekit import (
    LRC,
    Service,
    build_files,
    job_body,
    service_settings,
    wait_for,
)

SONG = LRC + "[00:06.00]The end\n"  # the 95 s model drops the last line: lines 1 and 2 are sung
TEXTS = {1: "Hello little song", 2: "Another line of words"}
# call k of the recogniser mis-hears when script[k] is true (the file `script.json`); `n`
# counts the calls; each call is recorded in `calls`
EARS = '''
import json, pathlib, sys
wav, line, state = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
script = json.loads((state / "script.json").read_text())
count = state / "n"
n = int(count.read_text()) if count.exists() else 0
count.write_text(str(n + 1))
with open(state / "calls", "a") as fh:
    fh.write(f"{line}\\n")
print("zzz mumble" if n < len(script) and script[n] else TEXTS[line])
'''
ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789"


def ears(folder: Path) -> tuple[str, Path]:
    """(the --asr-command template, its state folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "ears.py"
    script.write_text(f"TEXTS = {TEXTS!r}\n{EARS}", encoding="utf-8")
    state = folder / "state"
    state.mkdir(exist_ok=True)
    hear(state, [])
    return f"{sys.executable} {script} {{wav}} {{line}} {state}", state


def hear(state: Path, script: list[bool]) -> None:
    """The recogniser's next calls: ``script[k]`` true = call k mis-hears its line."""
    (state / "script.json").write_text(json.dumps(script), encoding="utf-8")
    (state / "n").unlink(missing_ok=True)
    (state / "calls").unlink(missing_ok=True)


def calls(state: Path) -> list[int]:
    path = state / "calls"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_files(tmp_path_factory.mktemp("review-files"))


def keys() -> tuple[ApiKey, ...]:
    return ApiKey("alice", hash_key(ALICE)), ApiKey("bob", hash_key(BOB))


def client_for(files, folder: Path, **kw):
    """App + in-process worker; Huey immediate mode runs a job inside POST /api/jobs."""
    s = service_settings(files, folder / "data", keys=keys(), **kw)
    store, queue = Store(s.db_path), JobQueue(None, s.data_dir, immediate=True)
    worker = Worker(s, store, queue)
    queue.set_handler(worker.process)
    worker.load()
    return TestClient(create_app(s, queue=queue, store=store)), worker


@pytest.fixture(scope="module")
def reviewing(files, tmp_path_factory):
    """A service with the scripted recogniser; ``.state`` is its state folder."""
    folder = tmp_path_factory.mktemp("reviewing")
    template, state = ears(folder / "ears")
    client, worker = client_for(files, folder, asr_command=template)
    with client:
        client.state, client.data = state, folder / "data"
        yield client
    worker.stop.set()


@pytest.fixture(scope="module")
def deaf(files, tmp_path_factory):
    """A service without a recogniser (no job runs: the refusals only)."""
    s = service_settings(files, tmp_path_factory.mktemp("deaf") / "data", keys=keys())
    with TestClient(create_app(s)) as client:
        yield client


def as_(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def submit(client, key: str = ALICE, **kw) -> dict:
    r = client.post("/api/jobs", json=job_body(lrc=SONG, **kw), headers=as_(key))
    assert r.status_code == 201, r.text
    job = client.get(f"/api/jobs/{r.json()['id']}", headers=as_(key)).json()
    assert job["status"] == "completed", job["error"]
    return job


def refused(client, key: str, field: str, status: int = 422, **kw) -> str:
    """Both routes refuse the body, naming ``field``; nothing is queued. The message."""
    before = len(client.get("/api/jobs", headers=as_(key)).json()["jobs"])
    for route in ("/api/validate", "/api/jobs"):
        r = client.post(route, json=job_body(lrc=SONG, **kw), headers=as_(key))
        assert r.status_code == status, r.text
        err = r.json()["error"]
        assert err["field"] == field, err
        assert err["errors"][0]["field"] == field
    assert len(client.get("/api/jobs", headers=as_(key)).json()["jobs"]) == before
    return err["message"]


def sidecar(client, job: dict, index: int = 0, key: str = ALICE) -> dict:
    return client.get(job["outputs"][index]["metadata_url"], headers=as_(key)).json()


# ---- refusals (no job runs) ---------------------------------------------------------------


@pytest.mark.parametrize("field,value", [
    ("asr_command", "python3 /tmp/mine.py {wav}"), ("asr_model", "/srv/whisper"),
    ("ASR_Command", "sh -c 'id' {wav}")])
def test_a_client_cannot_name_a_recogniser(deaf, field, value):
    message = refused(deaf, ALICE, field, check=True, **{field: value})
    assert "chosen by the server" in message


@pytest.mark.parametrize("field", ["check", "repair"])
def test_check_or_repair_needs_the_servers_recogniser(deaf, field):
    message = refused(deaf, ALICE, field, **{field: True})
    assert "no speech recogniser" in message and "asr_command" in message


def test_takes_without_a_recogniser_are_accepted_and_bad_values_refused(deaf):
    r = deaf.post("/api/validate", json=job_body(lrc=SONG, takes=2), headers=as_(ALICE))
    assert r.status_code == 200, r.text  # (provisional: no worker has published its facts)
    for field, value in (("takes", 0), ("takes", 99), ("takes", "2"), ("check", "yes"),
                         ("repair_rounds", 0), ("repair_threshold", 1.5)):
        refused(deaf, ALICE, field, **{field: value})


def test_ref_job_must_be_a_finished_job_of_this_key(deaf):
    assert "no job" in refused(deaf, ALICE, "ref_job", ref_job="0" * 32,
                               edit_segments=[[1, 3]])
    refused(deaf, ALICE, "ref_job", ref_job="../../etc", edit_segments=[[1, 3]])
    refused(deaf, ALICE, "edit_segments", edit_segments=[[1, 3]])  # no ref_job
    queued = deaf.post("/api/jobs", json=job_body(lrc=SONG), headers=as_(ALICE))
    assert queued.status_code == 201  # (no worker: it stays queued)
    job_id = queued.json()["id"]
    assert "queued" in refused(deaf, ALICE, "ref_job", ref_job=job_id, edit_segments=[[1, 3]])
    assert "no job" in refused(deaf, BOB, "ref_job", ref_job=job_id, edit_segments=[[1, 3]])


# ---- jobs that run (the recogniser is a program: one process per line) ---------------------


@pytest.mark.slow
def test_a_checked_job_has_each_lines_verdict_in_its_result(reviewing):
    hear(reviewing.state, [])
    job = submit(reviewing, check=True)
    assert calls(reviewing.state) == [1, 2]
    result = job["result"]
    assert [(x["line"], x["source_line"], x["text"]) for x in result["lines"]] == [
        (1, 1, TEXTS[1]), (2, 2, TEXTS[2])]
    first, second = result["lines"]
    assert first["span"][0] == pytest.approx(first["start_frame"] * 2048 / 44100, abs=1e-3)
    assert first["span"][1] == pytest.approx(second["start_frame"] * 2048 / 44100, abs=1e-3)
    assert [(c["line"], c["verdict"], c["per"]) for c in result["check"]["lines"]] == [
        (1, "sung", 0.0), (2, "sung", 0.0)]
    assert result["repair"] is None and result["takes"] is None
    assert job["outputs"][0]["per"] == 0.0
    assert job["plan"]["review"]["check"] and "ears.py" not in json.dumps(job)
    meta = sidecar(reviewing, job)
    assert meta["check"]["lines"][0]["verdict"] == "sung" and len(meta["lines"]) == 2
    folder = reviewing.data / "jobs" / job["id"]
    assert (folder / "song.lrc").read_text(encoding="utf-8") == (
        "[00:01.00]Hello little song\n[00:03.50]Another line of words\n")
    assert meta["lrc_file"] == "song.lrc" and np.load(folder / "latents.npy").shape[0] == 1


@pytest.mark.slow
def test_a_repair_job_records_its_rounds(reviewing):
    hear(reviewing.state, [False, True])  # line 2 is mis-heard once, then heard right
    job = submit(reviewing, repair=True, seed=21)
    assert calls(reviewing.state) == [1, 2, 2]  # only the failing line is heard again
    repair = job["result"]["repair"]
    (round1,) = repair["rounds"]
    assert round1["lines"] == [2] and round1["kept"] == [2] and repair["passed"]
    assert round1["per_before"]["2"] > 0.5 and round1["per_after"] == {"2": 0.0}
    assert [c["verdict"] for c in job["result"]["check"]["lines"]] == ["sung", "sung"]
    assert sidecar(reviewing, job)["repair"] == repair


@pytest.mark.slow
def test_takes_come_back_best_first_with_their_scores(reviewing):
    hear(reviewing.state, [True, True])  # every line of the first take heard is mis-heard
    job = submit(reviewing, takes=2, seed=11)
    assert [o["seed"] for o in job["outputs"]] == [12, 11]  # seed 11 was mis-heard
    takes = job["result"]["takes"]
    assert [(t["index"], t["seed"]) for t in takes] == [(0, 12), (1, 11)]
    assert takes[0]["per"] == 0.0 and takes[1]["per"] > 0.5
    assert all(t["style_score"] is None for t in takes)  # no MuQ-MuLan here: PER ranks
    for t in takes:
        r = reviewing.get(t["url"], headers=as_(ALICE))
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    first, second = sidecar(reviewing, job, 0), sidecar(reviewing, job, 1)
    assert [t["file"] for t in first["takes"]] == ["song_0.wav", "song_1.wav"]
    assert first["takes"] == second["takes"] and first["seed"] == 12
    latents = np.load(reviewing.data / "jobs" / job["id"] / "latents.npy")
    assert latents.shape[0] == 2


@pytest.mark.slow
def test_regenerating_a_line_is_an_edit_job_on_the_finished_song(reviewing):
    hear(reviewing.state, [])
    song = submit(reviewing, check=True, seed=31)
    line = song["result"]["lines"][1]
    assert "no job" in refused(reviewing, BOB, "ref_job", ref_job=song["id"],
                               edit_segments=[line["span"]])
    hear(reviewing.state, [])
    edit = submit(reviewing, ref_job=song["id"], edit_segments=[line["span"]], check=True,
                  seed=32)
    assert edit["request"]["ref_job"] == song["id"]
    assert edit["request"]["edit_segments"] == [line["span"]]
    assert "ref_song" not in edit["request"]
    (frames,) = edit["plan"]["edit_frames"]  # the line's region (the last: 10 s at most)
    assert abs(frames[0] - line["start_frame"]) <= 1
    assert abs(frames[1] - line["span"][1] * 44100 / 2048) <= 1
    assert [c["verdict"] for c in edit["result"]["check"]["lines"]] == ["sung", "sung"]
    folder = reviewing.data / "jobs" / edit["id"]
    ref, _ = sf.read(folder / "ref_song.wav")
    orig, _ = sf.read(reviewing.data / "jobs" / song["id"] / "song.wav")
    assert np.array_equal(ref, orig)  # the finished song, copied in as the reference


# ---- a real `serve` process -----------------------------------------------------------------


@pytest.mark.slow
def test_serve_with_asr_command_checks_and_ranks_takes(files, tmp_path):
    template, state = ears(tmp_path / "ears")
    svc = Service(files, tmp_path)
    try:
        svc.serve("--asr-command", template)
        hear(state, [True, True])
        r = httpx.post(f"{svc.url}/api/jobs", json=job_body(lrc=SONG, takes=2, check=True),
                       timeout=30)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        job = wait_for("the job", lambda: (j := svc.get(f"/api/jobs/{job_id}"))["status"]
                       in ("completed", "failed", "cancelled") and j, timeout=240)
        assert job["status"] == "completed", job["error"]
        assert [t["seed"] for t in job["result"]["takes"]] == [12, 11]
        assert [c["verdict"] for c in job["result"]["check"]["lines"]] == ["sung", "sung"]
        r = httpx.post(f"{svc.url}/api/jobs", json=job_body(
            lrc=SONG, asr_command=template, check=True), timeout=30)
        assert r.status_code == 422 and r.json()["error"]["field"] == "asr_command"
        assert len(svc.get("/api/jobs")["jobs"]) == 1
    finally:
        svc.close()
