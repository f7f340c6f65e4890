"""Issue 21 with real processes, each on the SQLite queue and on a throw-away Redis: idempotent
submits (concurrent ones included), keys with limits and priorities (the order one worker runs
them, 429 with Retry-After), queue positions as the jobs drain (GET and SSE), signed webhooks
retried across a server restart, previews before ``completed`` with the final audio unchanged,
``/metrics`` parsed by ``prometheus_client``, retention. Everything binds 127.0.0.1; every wait
is bounded; nothing is timed."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from rhythmflow.serve.keys import hash_key
from tests.servekit import (
    Service,
    build_files,
    job_body,
    sse_blocks,
    start_redis,
    stop,
    wait_for,
)

pytestmark = pytest.mark.slow
ADMIN, LOW, HIGH = "key-admin", "key-low", "key-high"
SECRET = "webhook-test-secret"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_files(tmp_path_factory.mktemp("platform-files"))


@pytest.fixture(params=["sqlite", "redis"])
def queue(request, tmp_path):
    if request.param == "sqlite":
        yield None
        return
    proc, url = start_redis(tmp_path)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture()
def svc(files, tmp_path, queue):
    s = Service(files, tmp_path, queue=queue, extra_env={"RHYTHMFLOW_WEBHOOK_SECRET": SECRET})
    yield s
    s.close()


def keys_file(folder) -> str:
    path = folder / "keys.toml"
    path.write_text(
        f'[[keys]]\nname = "root"\nkey_sha256 = "{hash_key(ADMIN)}"\nadmin = true\n\n'
        f'[[keys]]\nname = "low"\nkey_sha256 = "{hash_key(LOW)}"\nmax_queued = 3\n'
        'max_running = 1\npriority = 0\n\n'
        f'[[keys]]\nname = "high"\nkey_sha256 = "{hash_key(HIGH)}"\nmax_queued = 5\n'
        'priority = 5\n')
    return str(path)


def api(svc: Service, method: str, path: str, key: str | None = None, **kw) -> httpx.Response:
    headers = dict(kw.pop("headers", {}), **({"X-API-Key": key} if key else {}))
    return httpx.request(method, f"{svc.url}{path}", headers=headers, timeout=30, **kw)


def loaded(svc: Service, key: str | None = None) -> None:
    wait_for("a loaded worker", lambda: api(svc, "GET", "/api/health").json()
             .get("model_loaded"), timeout=180)


def finished(svc: Service, job_id: str, key: str | None = None) -> dict:
    return wait_for(f"job {job_id} to complete", lambda: (
        j := api(svc, "GET", f"/api/jobs/{job_id}", key).json())["status"] == "completed" and j,
        timeout=300, every=0.1)


# ---- idempotency -------------------------------------------------------------------------

def test_idempotent_submits_make_one_job_even_concurrently(svc):
    svc.serve("--no-worker")
    body = job_body(seed=21)

    def post(_):
        return api(svc, "POST", "/api/jobs", json=body, headers={"Idempotency-Key": "same-1"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 7 + [201], [r.text for r in answers]
    ids = {r.json()["id"] for r in answers}
    assert len(ids) == 1
    [job_id] = ids
    assert [j["id"] for j in api(svc, "GET", "/api/jobs").json()["jobs"]] == [job_id]
    # the same body in another key order and spacing is the same body (parsed JSON) …
    raw = json.dumps(dict(reversed(list(body.items()))), indent=2)
    r = api(svc, "POST", "/api/jobs", content=raw, headers={
        "Idempotency-Key": "same-1", "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["id"] == job_id
    # … another body is a conflict, and a new key a new job
    r = api(svc, "POST", "/api/jobs", json=job_body(seed=22),
            headers={"Idempotency-Key": "same-1"})
    assert r.status_code == 409 and r.json()["error"]["field"] == "Idempotency-Key"
    r = api(svc, "POST", "/api/jobs", json=body, headers={"Idempotency-Key": "other"})
    assert r.status_code == 201 and r.json()["id"] != job_id
    # the key expires with its job
    assert api(svc, "DELETE", f"/api/jobs/{job_id}").status_code == 204
    r = api(svc, "POST", "/api/jobs", json=job_body(seed=23),
            headers={"Idempotency-Key": "same-1"})
    assert r.status_code == 201 and r.json()["id"] != job_id


# ---- keys, limits, priorities, queue positions, metrics ------------------------------------

def test_keys_limits_priorities_and_queue_positions(svc, tmp_path):
    svc.serve("--no-worker", "--keys", keys_file(tmp_path))
    assert api(svc, "POST", "/api/jobs", json=job_body()).status_code == 401
    low = [api(svc, "POST", "/api/jobs", LOW, json=job_body(steps=40, seed=i)).json()["id"]
           for i in range(3)]
    r = api(svc, "POST", "/api/jobs", LOW, json=job_body(seed=9))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    high = [api(svc, "POST", "/api/jobs", HIGH, json=job_body(steps=40, seed=10 + i))
            .json()["id"] for i in range(2)]
    # higher priority first, FIFO within a priority
    order = high + low
    places = {j: api(svc, "GET", f"/api/jobs/{j}", ADMIN).json()["queue_position"]
              for j in order}
    assert [places[j] for j in order] == [1, 2, 3, 4, 5]
    # a key sees and controls only its own jobs; an admin all
    assert api(svc, "GET", f"/api/jobs/{high[0]}", LOW).status_code == 404
    assert api(svc, "POST", f"/api/jobs/{high[0]}/cancel", LOW).status_code == 404
    assert {j["id"] for j in api(svc, "GET", "/api/jobs", LOW).json()["jobs"]} == set(low)
    assert len(api(svc, "GET", "/api/jobs", ADMIN).json()["jobs"]) == 5
    assert api(svc, "GET", "/metrics", LOW).status_code == 403
    assert api(svc, "GET", "/metrics").status_code == 401

    # the last job's place, from the SSE stream (a status update when it changes) and GET
    streamed: list[dict] = []

    def follow() -> None:
        with httpx.stream("GET", f"{svc.url}/api/jobs/{low[-1]}/events",
                          headers={"X-API-Key": LOW}, timeout=300) as r:
            block: list[str] = []
            for line in r.iter_lines():
                if line:
                    block.append(line)
                    continue
                streamed.extend(sse_blocks("\n".join(block)))
                block = []

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_for("the first place on the stream", lambda: any(
        d.get("queue_position") for _, d in streamed), timeout=30)
    svc.worker("w1")
    seen: list[tuple] = []

    def drained() -> bool:
        j = api(svc, "GET", f"/api/jobs/{low[-1]}", LOW).json()
        seen.append((j["status"], j["queue_position"], j["estimated_start"]))
        return j["status"] == "completed"

    wait_for("the queue to drain", drained, timeout=600, every=0.05)
    reader.join(timeout=60)
    queued = [s for s in seen if s[0] == "queued"]
    places_seen = [p for _, p, _ in queued]
    assert places_seen == sorted(places_seen, reverse=True) and len(set(places_seen)) >= 2
    assert all(p is None for s, p, _ in seen if s != "queued")
    assert any(e is not None and e >= 0 for _, _, e in queued), seen
    updates = [d["queue_position"] for kind, d in streamed
               if kind == "status" and d.get("queue_position")]
    assert updates[0] == 5 and updates == sorted(set(updates), reverse=True)
    assert [d["status"] for kind, d in streamed if kind == "status"][-1] == "completed"

    jobs = {j: api(svc, "GET", f"/api/jobs/{j}", ADMIN).json() for j in order}
    started = sorted(order, key=lambda j: jobs[j]["started_at"])
    assert started == order, "not run by priority, then age"
    assert {jobs[j]["owner"] for j in low} == {"low"} and jobs[high[0]]["priority"] == 5

    from prometheus_client.parser import text_string_to_metric_families

    r = api(svc, "GET", "/metrics", ADMIN)
    assert r.status_code == 200
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    by_status = {s.labels["status"]: s.value for s in fams["rhythmflow_jobs"].samples}
    assert by_status["completed"] == 5 and by_status["queued"] == 0
    assert "new" in {s.labels["queue"] for s in fams["rhythmflow_queue_depth"].samples}
    assert fams["rhythmflow_workers_alive"].samples[0].value == 1
    count = {s.name: s.value for s in fams["rhythmflow_step_seconds"].samples}
    assert count["rhythmflow_step_seconds_count"] == 5 * 40
    jobs_count = {s.name: s.value for s in fams["rhythmflow_job_seconds"].samples}
    assert jobs_count["rhythmflow_job_seconds_count"] == 5
    assert "rhythmflow_webhook_deliveries" in fams and "rhythmflow_previews" in fams


# ---- webhooks ------------------------------------------------------------------------------

class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 500 to the first ``fail`` attempts of
    every delivery and records every request."""

    def __init__(self, fail: int = 2) -> None:
        self.fail, self.seen, self.lock = fail, [], threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    tries = sum(1 for h, _, _ in outer.seen
                                if h["x-rhythmflow-delivery"] == headers["x-rhythmflow-delivery"])
                    code = 500 if tries < outer.fail else 204
                    outer.seen.append((headers, body, code))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ok(self, event: str) -> list:
        with self.lock:
            return [(h, b) for h, b, c in self.seen if c < 300 and
                    h["x-rhythmflow-event"] == event]

    def attempts(self, event: str) -> list:
        with self.lock:
            return [c for h, _, c in self.seen if h["x-rhythmflow-event"] == event]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhooks_signed_retried_and_durable_across_a_restart(svc):
    receiver = Receiver(fail=2)
    try:
        allow = ("--no-worker", "--webhook-allow", f"127.0.0.1:{receiver.port}")
        server = svc.serve(*allow)
        url = f"http://127.0.0.1:{receiver.port}/hook"
        r = api(svc, "POST", "/api/jobs", json=job_body(webhook_url="http://10.0.0.1/x"))
        assert r.status_code == 422 and r.json()["error"]["field"] == "webhook_url"
        job_id = api(svc, "POST", "/api/jobs", json=job_body(webhook_url=url)).json()["id"]
        svc.worker("w1")
        finished(svc, job_id)
        wait_for("a failed attempt of job.completed", lambda: receiver.attempts(
            "job.completed"), timeout=60, every=0.05)
        assert stop(server, signal.SIGTERM) in (0, -signal.SIGTERM)
        svc.serve(*allow)  # the retries go on from the job table
        for event in ("job.queued", "job.running", "job.completed"):
            wait_for(f"{event} delivered", lambda e=event: receiver.ok(e), timeout=120)
        for headers, body, _ in receiver.seen:
            ts = headers["x-rhythmflow-timestamp"]
            mac = hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256)
            assert headers["x-rhythmflow-signature"] == "sha256=" + mac.hexdigest()
            doc = json.loads(body)
            assert doc["event"] == headers["x-rhythmflow-event"]
            assert doc["delivery"] == headers["x-rhythmflow-delivery"]
            assert str(doc["timestamp"]) == ts and doc["job"]["id"] == job_id
        [(_, done)] = receiver.ok("job.completed")
        assert json.loads(done)["job"]["status"] == "completed"
        assert receiver.attempts("job.completed") == [500, 500, 204]
        hooks = {h["event"]: h for h in finished(svc, job_id)["webhooks"]}
        for event in ("queued", "running", "completed"):
            assert hooks[event]["status"] == "delivered" and hooks[event]["attempts"] == 3
        delivered = [h["x-rhythmflow-delivery"] for h, _, c in receiver.seen if c < 300]
        assert len(delivered) == len(set(delivered)) == 3, "a delivery arrived twice"
    finally:
        receiver.close()


# ---- previews, retention -------------------------------------------------------------------

def test_previews_arrive_before_completed_and_change_no_byte(svc):
    import io

    import soundfile as sf

    svc.serve()
    loaded(svc)
    with_previews = svc.submit(steps=8, seed=5, preview_every=2)
    blocks = []
    with httpx.stream("GET", f"{svc.url}/api/jobs/{with_previews}/events", timeout=300) as r:
        blocks = sse_blocks("".join(r.iter_text()))
    kinds = [k for k, _ in blocks]
    previews = [d for k, d in blocks if k == "preview"]
    assert [p["step"] for p in previews] == [2, 4, 6, 8]
    done_at = max(i for i, (k, d) in enumerate(blocks)
                  if k == "status" and d["status"] == "completed")
    assert all(i < done_at for i, k in enumerate(kinds) if k == "preview")
    got = api(svc, "GET", previews[0]["url"])
    assert got.status_code == 200 and got.headers["content-type"] == "audio/ogg"
    audio, rate = sf.read(io.BytesIO(got.content))
    assert audio.ndim == 1 and rate < 44100 and previews[0]["seconds"] > 0
    without = svc.submit(steps=8, seed=5, preview_every=0)
    short = svc.submit(steps=2, seed=6, preview_every=50)  # asked: at least one
    for job_id in (without, short):
        svc.done(job_id)
    assert not [k for k, _ in sse_blocks(_events(svc, without)) if k == "preview"]
    assert [d["step"] for k, d in sse_blocks(_events(svc, short)) if k == "preview"] == [2]
    a = api(svc, "GET", f"/api/jobs/{with_previews}/audio").content
    b = api(svc, "GET", f"/api/jobs/{without}/audio").content
    assert a == b, "previews changed the final audio"

    from prometheus_client.parser import text_string_to_metric_families

    fams = {f.name: f for f in text_string_to_metric_families(
        api(svc, "GET", "/metrics").text)}
    assert fams["rhythmflow_previews"].samples[0].value >= 5


def test_retention_removes_finished_jobs_rows_and_files(svc):
    svc.serve("--keep-days", "0.00002")  # 1.7 s
    loaded(svc)
    done = svc.done(svc.submit(steps=3, seed=1, preview_every=1))
    folder = svc.data / "jobs" / done["id"]
    wait_for("the finished job to be removed", lambda: api(
        svc, "GET", f"/api/jobs/{done['id']}").status_code == 404, timeout=120)
    wait_for("its folder (audio, previews) to go", lambda: not folder.exists(), timeout=60)
    assert api(svc, "GET", "/api/jobs").json()["jobs"] == []


def _events(svc: Service, job_id: str) -> str:
    with httpx.stream("GET", f"{svc.url}/api/jobs/{job_id}/events", timeout=60) as r:
        return "".join(r.iter_text())
