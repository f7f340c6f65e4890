"""Issue 21's pieces in one process (fast lane): the job table's scheduling (priority, FIFO,
max_running), idempotency and limits, the webhook outbox and its signature, retention, keys,
the webhook allow-list, queue positions and the preview hook. The real processes are in
test_serve_platform_processes.py."""

from __future__ import annotations

import hashlib
import hmac
import time
from types import SimpleNamespace

import pytest
import torch

from rhythmflow.errors import UsageError
from rhythmflow.serve import options
from rhythmflow.serve.keys import admin_key, hash_key, identify, load_keys, new_key
from rhythmflow.serve.preview import Previewer
from rhythmflow.serve.settings import Settings
from rhythmflow.serve.store import IdempotencyConflict, OverLimit, Store
from rhythmflow.serve.views import positions
from rhythmflow.serve.webhooks import backoff, sign

PLAN = {"steps": 4}


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "jobs.sqlite3")
    yield s
    s.close()


def test_the_next_job_is_by_priority_then_age_and_max_running_holds(store):
    store.insert("a1", {}, PLAN, owner="a", priority=0, max_running=1)
    store.insert("a2", {}, PLAN, owner="a", priority=0, max_running=1)
    store.insert("b1", {}, PLAN, owner="b", priority=5)
    store.insert("b2", {}, PLAN, owner="b", priority=5)
    taken = [store.claim_next("w", 30, "cpu")["id"] for _ in range(3)]
    assert taken == ["b1", "b2", "a1"]
    assert store.claim_next("w", 30, "cpu") is None  # a is at its max_running
    assert store.finish("a1", "w", "completed")
    assert store.claim_next("w", 30, "cpu")["id"] == "a2"


def test_a_saved_state_is_only_taken_by_its_runtime_class(store):
    store.insert("j", {}, PLAN)
    store.claim_next("w", 30, "gpu")
    store.finish("j", "w", "queued", has_state=True)
    assert store.claim_next("w2", 30, "cpu") is None
    assert store.claim_next("w3", 30, "gpu")["id"] == "j"


def test_idempotency_and_max_queued_in_one_transaction(store):
    job, created = store.insert("x", {}, PLAN, owner="k", idem=("key", "h1"))
    assert created
    again, created = store.insert("y", {}, PLAN, owner="k", idem=("key", "h1"))
    assert not created and again["id"] == "x" and store.get("y") is None
    with pytest.raises(IdempotencyConflict):
        store.insert("z", {}, PLAN, owner="k", idem=("key", "h2"))
    _, created = store.insert("o", {}, PLAN, owner="other", idem=("key", "h2"))
    assert created  # keys are per owner
    with pytest.raises(OverLimit):
        store.insert("w", {}, PLAN, owner="k", max_queued=1)
    store.delete("x")  # the key expires with its job
    assert store.insert("x2", {}, PLAN, owner="k", idem=("key", "h2"))[1]


def test_the_outbox_gets_the_events_asked_for_and_progress_at_most_every_n_s(store):
    opts = {"webhook_url": "http://h/x", "webhook_events": ["running", "progress", "completed"],
            "progress_every": 3600.0}
    store.insert("j", {}, PLAN, options=opts)
    store.claim("j", "w", 30, "cpu")
    for step in (1, 2, 3):
        store.progress("j", "w", {"event": "sampling_step", "step": step}, step_seconds=0.1)
    store.finish("j", "w", "completed")
    assert [d["event"] for d in store.deliveries("j")] == ["running", "progress", "completed"]
    due = store.due_deliveries(lease=60)
    assert [d["job"]["status"] for d in due] == ["running", "running", "completed"]
    assert store.due_deliveries(lease=60) == []  # leased meanwhile
    store.delivered(due[0]["id"], True, None, None)
    store.delivered(due[1]["id"], False, "HTTP 500", time.time() + 1)
    store.delivered(due[2]["id"], False, "HTTP 500", None)
    assert [(d["status"], d["attempts"]) for d in store.deliveries("j")] == [
        ("delivered", 1), ("pending", 1), ("failed", 1)]
    counters = store.counters()
    assert counters[("rhythmflow_step_seconds", "_count")] == 3
    assert counters[("rhythmflow_webhook_deliveries_total", "failed")] == 1


def test_retention_removes_only_old_finished_jobs(store):
    for jid in ("old", "new", "waiting"):
        store.insert(jid, {}, PLAN)
    for jid in ("old", "new"):
        store.claim(jid, "w", 30, "cpu")
        store.finish(jid, "w", "completed")
    assert store.expire(time.time() + 1, limit=1) == ["old"]
    assert store.expire(time.time() - 3600) == []
    assert {j["id"] for j in store.history()} == {"new", "waiting"}


def test_signature_and_backoff():
    body = b'{"event":"job.completed"}'
    expected = hmac.new(b"s", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("s", "1700000000", body) == "sha256=" + expected
    assert [backoff(n) for n in range(1, 6)] == [1, 2, 4, 8, 16] and backoff(40) == 300


def test_keys_file_new_key_and_identify(tmp_path):
    key, entry = new_key("studio-a", priority=3)
    path = tmp_path / "keys.toml"
    path.write_text(entry)
    [k] = load_keys(path)
    assert (k.name, k.priority, k.max_queued, k.admin) == ("studio-a", 3, 10, False)
    assert identify((k, admin_key("root")), key) is k
    assert identify((k,), "wrong") is None and k.key_sha256 == hash_key(key)
    path.write_text('[[keys]]\nname = "x"\nkey_sha256 = "00"\n')
    with pytest.raises(UsageError, match="key_sha256"):
        load_keys(path)


@pytest.mark.parametrize("url,ok", [
    ("http://hooks.example/x", True), ("https://hooks.example:8443/x", True),
    ("http://127.0.0.1:9000/x", True), ("http://127.0.0.1:9001/x", False),
    ("http://10.0.0.1/x", False), ("ftp://hooks.example/x", False),
    ("http://user:pw@hooks.example/x", False), ("http://[::1]:9000/x", True)])
def test_the_webhook_allow_list(tmp_path, url, ok):
    s = Settings(data_dir=tmp_path, webhook_secret="s", webhook_allow=(
        "hooks.example", "127.0.0.1:9000", "[::1]:9000"))
    if ok:
        options.check_webhook_url(url, s)
    else:
        with pytest.raises(options.OptionError) as e:
            options.check_webhook_url(url, s)
        assert e.value.field == "webhook_url"


def test_no_allow_list_no_webhooks_and_options_are_checked(tmp_path):
    s = Settings(data_dir=tmp_path)
    with pytest.raises(options.OptionError, match="allowed no webhook hosts"):
        options.split({"webhook_url": "http://h/x"}, s)
    with pytest.raises(options.OptionError) as e:
        options.split({"preview_every": -1}, s)
    assert e.value.field == "preview_every"
    body, opts = options.split({"lrc": "x", "preview_every": 3}, s)
    assert body == {"lrc": "x"} and opts.preview_every == 3
    with pytest.raises(UsageError):
        Settings(data_dir=tmp_path, webhook_allow=("h",))  # no secret to sign with


def test_queue_positions_and_estimated_start():
    est = {"seconds_per_eval": 1.0, "total": 12.0, "load": 2.0, "decode": 1.0}
    snap = {"queued": [{"id": i, "owner": None, "plan": {"estimate": est}} for i in "abc"],
            "running": [{"id": "r", "eta": 4.0, "step": 1, "total_steps": 4,
                         "plan": {"estimate": est}}],
            "completed": [{"plan": {"estimate": est}, "timings": {"total": 22.0, "load": 2.0}}]}
    pos = positions(snap, workers=1)  # measured twice the plan: factor 2
    assert [pos[i]["queue_position"] for i in "abc"] == [1, 2, 3]
    assert [pos[i]["estimated_start"] for i in "abc"] == [6.0, 26.0, 46.0]
    assert positions(snap, workers=2)["c"]["estimated_start"] == 23.0
    unknown = dict(snap, completed=[], queued=[{"id": "x", "owner": None, "plan": {}}])
    assert positions(unknown, workers=1)["x"]["estimated_start"] == 5.0  # factor 1


def _event(step: int, total: int, x: torch.Tensor, t: float, elapsed: float = 1.0):
    return SimpleNamespace(step=step, total=total, t=t, x=x, elapsed=elapsed,
                           sec_per_step=0.1)


def test_previews_estimate_the_end_from_the_last_two_states(tmp_path):
    decoded, made = [], []

    def decode(latents):
        decoded.append(latents.clone())
        return torch.zeros(1, 2, 4410)

    p = Previewer(2, tmp_path, decode, 44100, 21.5, made.append)
    noise, data = torch.randn(1, 8, 4), torch.randn(1, 8, 4)
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    for k in range(1, 5):  # a straight path: the estimate is exact at every step
        t = grid[k]
        p(_event(k, 4, (1 - t) * noise + t * data, t))
    assert [m["step"] for m in made] == [2, 4]
    for x1 in decoded:
        assert torch.allclose(x1, data[:, : p.frames], atol=1e-5)
    assert (tmp_path / made[0]["file"]).is_file() and made[0]["seconds"] == pytest.approx(0.1)


def test_a_job_that_asks_gets_at_least_one_preview_and_none_without(tmp_path):
    made = []
    decode = lambda latents: torch.zeros(1, 2, 441)  # noqa: E731
    p = Previewer(50, tmp_path, decode, 44100, 21.5, made.append)
    p(_event(1, 1, torch.randn(1, 4, 4), 1.0))
    assert [m["step"] for m in made] == [1]
    none = Previewer(0, tmp_path, decode, 44100, 21.5, made.append)
    none(_event(1, 1, torch.randn(1, 4, 4), 1.0))
    assert len(made) == 1
    auto = Previewer(None, tmp_path, decode, 44100, 21.5, made.append, expected=10.0)
    for k in range(1, 9):  # a preview would cost more than the budget allows
        auto(_event(k, 8, torch.randn(1, 4, 4), k / 8, elapsed=k * 1.0))
    assert len(made) == 1


def test_keys_add_prints_the_key_once_and_an_entry_that_loads(tmp_path, capsys):
    from rhythmflow.cli.main import main

    assert main(["keys", "add", "studio-b", "--priority", "2", "--max-running", "3"]) == 0
    out = capsys.readouterr().out
    key = out.splitlines()[1].strip()
    path = tmp_path / "keys.toml"
    path.write_text(out[out.index("[[keys]]"):])
    [k] = load_keys(path)
    assert k.matches(key) and (k.name, k.priority, k.max_running) == ("studio-b", 2, 3)
    assert key not in path.read_text()
