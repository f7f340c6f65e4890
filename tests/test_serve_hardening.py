"""Issue 20, the HTTP attack suite: each hostile request gets its 4xx (never a 500), nothing is
queued or written, no server path leaks, and the server still answers afterwards."""

from __future__ import annotations

import argparse
import io
import json
import socket

import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from rhythmflow.serve.app import api_key_from_env, create_app
from rhythmflow.serve.commands import settings_from_args
from rhythmflow.serve.settings import Settings
from rhythmflow.serve.store import Store
from tests.servekit import LRC, Service, build_files, job_body, service_settings, wait_for


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_files(tmp_path_factory.mktemp("attack-files"))


def settings(files, data_dir, **kw) -> Settings:
    return service_settings(files, data_dir, **kw)


@pytest.fixture()
def client(files, tmp_path):
    with TestClient(create_app(settings(files, tmp_path / "data"))) as c:
        c.data_dir = tmp_path / "data"
        yield c


def untouched(c: TestClient) -> None:
    """Nothing queued or written, and the server still answers."""
    assert c.get("/api/jobs").json()["jobs"] == []
    h = c.get("/api/health")
    assert h.status_code in (200, 503) and sum(h.json()["queue"].values()) == 0
    jobs = c.data_dir / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir())


def error(r, status: int) -> dict:
    assert r.status_code == status, r.text
    return r.json()["error"]


# ---- private, server-only and look-alike fields ------------------------------------------

@pytest.mark.parametrize("name", ["_style_audio", "_Style_Audio", "\uff3fstyle_audio",
                                  "style_audio", "STYLE_AUDIO", "\uff53tyle_audio",
                                  "checkpoint", "Checkpoint", "device", "model", "vae",
                                  "negative_style", "ref_song", "_x", "\u200b_style_audio"])
def test_a_client_cannot_send_private_or_server_fields(client, name):
    body = dict(job_body(), **{name: "/etc/passwd"})
    e = error(client.post("/api/jobs", json=body), 422)
    assert e["field"] and "/etc/passwd" not in json.dumps(e)
    untouched(client)


def test_the_unknown_field_message_lists_only_client_fields(client):
    e = error(client.post("/api/validate", json=dict(job_body(), colour="blue")), 422)
    assert e["field"] == "colour" and "lrc" in e["message"]
    for server_only in ("checkpoint", "device", "style_embedding_file", "vae_dtype"):
        assert server_only not in e["message"]
    e = error(client.post("/api/validate", json=dict(job_body(), Steps=4)), 422)
    assert "did you mean steps" in e["message"]
    untouched(client)


# ---- bodies ------------------------------------------------------------------------------

def test_json_only_as_application_json(client):
    for ctype in ("text/plain", "application/x-www-form-urlencoded", ""):
        headers = {"content-type": ctype} if ctype else {}
        r = client.post("/api/jobs", content=json.dumps(job_body()), headers=headers)
        assert error(r, 415)["message"].startswith("send the request as application/json")
    untouched(client)


def test_deep_nesting_and_lone_surrogates_are_422(client):
    deep = '{"lrc": ' + "[" * 50_000 + "]" * 50_000 + "}"
    error(client.post("/api/jobs", content=deep,
                      headers={"content-type": "application/json"}), 422)
    nested = {"lrc": LRC, "style_embedding": [[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}
    assert error(client.post("/api/jobs", json=nested), 422)["field"] == "style_embedding"
    raw = json.dumps(job_body()).replace('"lrc": "', '"lrc": "\\ud800', 1)
    e = error(client.post("/api/jobs", content=raw,
                          headers={"content-type": "application/json"}), 422)
    assert e["field"] == "lrc"
    untouched(client)


def test_sizes(client):
    e = error(client.post("/api/jobs", json=job_body(lrc=LRC + "x" * 70_000)), 413)
    assert e["field"] == "lrc"
    e = error(client.post("/api/jobs", json=job_body(lyrics="la " * 23_000)), 413)
    assert e["field"] == "lyrics"
    error(client.post("/api/jobs", content=b"{" + b" " * 300_000 + b"}",
                      headers={"content-type": "application/json"}), 413)

    def chunks():  # no Content-Length: counted while read
        for _ in range(100):
            yield b" " * 65536

    error(client.post("/api/jobs", content=chunks(),
                      headers={"content-type": "application/json"}), 413)
    r = client.post("/api/jobs", files={"request": (None, b" " * 300_000 + b"{}")})
    assert "larger than" in error(r, 413)["message"]
    untouched(client)


def _wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, [[0.0, 0.0]] * int(seconds * 8000), 8000, format="WAV")
    return buf.getvalue()


def test_multipart_errors_use_the_envelope(client):
    r = client.post("/api/jobs", files=[("style_audio", ("a.wav", _wav(1))),
                                        ("style_audio", ("b.wav", _wav(1)))])
    assert error(r, 422)["message"]
    r = client.post("/api/jobs", files={"style_audio": ("a.wav", b"not audio")},
                    data={"lrc": LRC})
    e = error(r, 422)
    assert str(client.data_dir) not in e["message"] and e["field"] == "style_audio"
    untouched(client)


# ---- origins, hosts, headers ---------------------------------------------------------------

def test_foreign_origins_and_hosts_are_refused(client, files, tmp_path):
    r = client.post("/api/jobs", json=job_body(), headers={"origin": "https://evil.example"})
    error(r, 403)
    error(client.delete("/api/jobs/abc", headers={"origin": "null"}), 403)
    error(client.get("/api/jobs", headers={"host": "evil.example"}), 421)
    untouched(client)
    s = settings(files, tmp_path / "keyed", api_key="k", allow_origins=("https://ok.example",))
    with TestClient(create_app(s)) as keyed:
        auth = {"authorization": "Bearer k"}
        r = keyed.post("/api/validate", json=job_body(),
                       headers={**auth, "origin": "https://evil.example"})
        error(r, 403)  # with the key too
        r = keyed.post("/api/validate", json=job_body(),
                       headers={**auth, "origin": "https://ok.example"})
        assert r.status_code == 200
        r = keyed.post("/api/validate", json=job_body(),
                       headers={**auth, "origin": "http://testserver"})
        assert r.status_code == 200


def test_security_headers_on_the_page_and_the_api(client):
    page = client.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    for r in (page, client.get("/api/health"), client.get("/api/jobs/nope"),
              client.get("/nope.txt"), client.post("/api/jobs", content="x")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"


def test_unknown_routes_use_the_envelope(client):
    assert error(client.get("/api/nope"), 404)["message"]
    assert error(client.put("/api/jobs"), 405)["message"]
    assert error(client.get("/nope.js"), 404)["message"]


# ---- what goes out -------------------------------------------------------------------------

def test_no_server_path_leaves(client, files):
    plan = client.post("/api/validate", json=job_body()).json()["plan"]
    text = json.dumps(plan)
    for p in (files["checkpoint"], files["vae"], client.data_dir):
        assert str(p) not in text
    assert plan["model"] == files["checkpoint"].name


def test_health_without_a_key_is_status_and_counts(files, tmp_path):
    s = settings(files, tmp_path, api_key="k")
    with TestClient(create_app(s)) as c:
        job = c.post("/api/jobs", json=job_body(), headers={"x-api-key": "k"}).json()["id"]
        h = c.get("/api/health")
        assert h.status_code == 503 and set(h.json()) <= {
            "status", "reason", "reasons", "jobs", "queue", "workers_alive", "model_loaded"}
        assert job not in h.text
        assert c.get("/api/workers").status_code == 401
        assert c.get("/api/workers", headers={"x-api-key": "k"}).json() == {"workers": []}


def test_last_event_id_that_is_not_an_id_is_400(client):
    job = client.post("/api/jobs", json=job_body()).json()["id"]
    for bad in ("abc", "9" * 400, "-1", "1e9"):
        error(client.get(f"/api/jobs/{job}/events", headers={"last-event-id": bad}), 400)
    assert [j["id"] for j in client.get("/api/jobs").json()["jobs"]] == [job]
    client.post(f"/api/jobs/{job}/cancel")  # final: the stream below ends
    r = client.get(f"/api/jobs/{job}/events", headers={"last-event-id": "1"})
    assert r.status_code == 200 and "cancelled" in r.text and "id: 1\n" not in r.text


def test_delete_racing_cancel_and_resume_is_404_not_500(files, tmp_path):
    class Racing(Store):  # the job is deleted between the route's check and the store call
        def cancel(self, job_id):
            self.delete(job_id)
            return super().cancel(job_id)

        def resume(self, job_id):
            out = super().resume(job_id)
            self.delete(job_id)
            return out

    s = settings(files, tmp_path)
    store = Racing(s.db_path)
    with TestClient(create_app(s, store=store), raise_server_exceptions=False) as c:
        a = c.post("/api/jobs", json=job_body()).json()["id"]
        error(c.post(f"/api/jobs/{a}/cancel"), 404)
        b = c.post("/api/jobs", json=job_body()).json()["id"]
        Store.cancel(store, b)
        error(c.post(f"/api/jobs/{b}/resume"), 404)
        assert c.get("/api/jobs").json()["jobs"] == []


def test_the_api_key_from_the_environment_or_a_file(tmp_path, monkeypatch):
    key = tmp_path / "key"
    key.write_text("from-file\n")
    monkeypatch.delenv("RHYTHMFLOW_API_KEY_FILE", raising=False)
    monkeypatch.setenv("RHYTHMFLOW_API_KEY", "from-env")
    assert api_key_from_env(None) == "from-env"
    assert api_key_from_env(None, key) == "from-file"
    monkeypatch.setenv("RHYTHMFLOW_API_KEY_FILE", str(key))
    assert api_key_from_env(None) == "from-file"
    assert api_key_from_env("flag") == "flag"
    args = argparse.Namespace(data_dir=tmp_path, queue=None, model=None, checkpoint=None,
                              model_config=None, vae=None, assets_dir=None, offline=False,
                              device="cpu", dtype="float32", quantize="none",
                              vae_dtype="auto", threads=1, lease=15.0, heartbeat=2.0, poll=0.5,
                              api_key_file=str(key), allow_origin=["https://a.example"])
    s = settings_from_args(args)
    assert s.api_key == "from-file" and s.allow_origins == ("https://a.example",)


@pytest.mark.slow
def test_an_idle_connection_is_closed_before_its_first_request(files, tmp_path):
    svc = Service(files, tmp_path)
    try:
        svc.serve("--no-worker")
        with socket.create_connection(("127.0.0.1", svc.port), timeout=60) as sock:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0")  # and never finish
            assert sock.recv(1024) == b""  # closed by the server (bounded by the timeout)
        wait_for("the server", lambda: svc.get("/api/health")["status"], timeout=30)
    finally:
        svc.close()
