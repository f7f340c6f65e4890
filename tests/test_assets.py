"""Asset table, resolution order, checksums, offline mode, fetch — on real files, a fake HF cache
and a local HTTP server standing in for the Hub (no test touches the network)."""

from __future__ import annotations

import hashlib
import http.server
import importlib
import os
import re
import shutil
import socket
import threading
from pathlib import Path

import pytest

from rhythmflow import assets
from rhythmflow.assets import ASSETS, MODELS, SPACE, fetch, resolve, verify_file
from rhythmflow.errors import AssetError, UsageError

SMALL_SPACE_ASSETS = [n for n, a in ASSETS.items() if a.repo_type == "space"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Own cache folders per test, offline by default, and a cwd that must stay empty."""
    monkeypatch.setenv("RHYTHMFLOW_CACHE_DIR", str(tmp_path / "rf-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RHYTHMFLOW_ASSETS_DIR", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield
    assert not any(cwd.iterdir()), "something was written relative to the current directory"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fake_cache(hub: Path, asset, content: bytes, rev: str = "c" * 40) -> Path:
    kind = {"model": "models", "space": "spaces"}[asset.repo_type]
    repo = hub / f"{kind}--{asset.repo_id.replace('/', '--')}"
    file = repo / "snapshots" / rev / asset.path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(content)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    return file


def test_table_checksums_match_the_shared_assets_readme_and_files(assets_dir):
    readme = (assets_dir / "README.md").read_text(encoding="utf-8")
    for path, sha in re.findall(r"\|\s*([\w/.\-]+)\s*\|[^|\n]*\|\s*([0-9a-f]{64})\s*\|", readme):
        matches = [a for a in ASSETS.values() if a.path == path or a.path.endswith("/" + path)]
        assert matches and all(a.sha256 == sha for a in matches), path
    for name in SMALL_SPACE_ASSETS:  # every file in the local copy has, and matches, a checksum
        asset = ASSETS[name]
        assert asset.sha256, name
        assert _sha(assets_dir / asset.path) == asset.sha256, name


def test_models_map_to_dit_assets():
    assert {"base", "full", "v1.2-base", "v1.2-full"} <= set(MODELS)
    for name in MODELS.values():
        assert name.startswith("dit-") and ASSETS[name].path == "cfm_model.pt"


def test_unknown_names_and_explicit_paths(tmp_path):
    with pytest.raises(AssetError, match="unknown asset"):
        resolve("no-such-asset")
    with pytest.raises(AssetError, match="does not exist"):
        resolve("vae", path=tmp_path / "nope.pt")
    mine = tmp_path / "my_vae.pt"
    mine.write_bytes(b"user's own file")
    assert resolve("vae", path=mine) == mine  # explicit files are taken as given
    with pytest.raises(UsageError, match="unknown model"):
        fetch("v9-huge", offline=True)


def test_local_root_layouts(tmp_path, assets_dir, no_network):
    # the shared copy uses the Space's own paths
    p = resolve("negative-style", assets_dir=assets_dir, offline=True)
    assert p == assets_dir / "src" / "negative_prompt.npy"
    # <root>/<repo_id>/<path> works for every repo
    root = tmp_path / "root"
    target = root / SPACE / "src" / "negative_prompt.npy"
    target.parent.mkdir(parents=True)
    shutil.copy(p, target)
    assert resolve("negative-style", assets_dir=root, offline=True) == target
    # a bare cfm_model.pt is ambiguous between the four DiT repos and is not picked up
    (root / "cfm_model.pt").write_bytes(b"x")
    with pytest.raises(AssetError, match="ASLP-lab/DiffRhythm-1_2"):
        resolve("dit-v1.2-base", assets_dir=root, offline=True)
    dit = root / "ASLP-lab" / "DiffRhythm-1_2" / "cfm_model.pt"
    dit.parent.mkdir(parents=True)
    dit.write_bytes(b"weights")
    assert resolve("dit-v1.2-base", assets_dir=root, offline=True) == dit


def test_env_assets_dir_is_used(assets_dir, monkeypatch, no_network):
    monkeypatch.setenv("RHYTHMFLOW_ASSETS_DIR", str(assets_dir))
    assert resolve("g2p-vocab").is_relative_to(assets_dir)


def test_offline_finds_files_in_the_hf_cache(tmp_path, assets_dir, no_network):
    hub = tmp_path / "hub"
    neg = _fake_cache(
        hub, ASSETS["negative-style"], (assets_dir / "src/negative_prompt.npy").read_bytes()
    )
    dit = _fake_cache(hub, ASSETS["dit-v1.2-full"], b"dit weights")
    assert resolve("negative-style", assets_dir=tmp_path / "empty", offline=True) == neg
    assert resolve("dit-v1.2-full", offline=True) == dit


def test_offline_missing_fails_fast_without_network(tmp_path, no_network):
    with pytest.raises(AssetError) as err:  # no_network: any Hub call would fail the test
        resolve("vae", assets_dir=tmp_path / "empty")  # offline from HF_HUB_OFFLINE=1
    msg = str(err.value)
    for part in (
        "vae_model.pt",
        "ASLP-lab/DiffRhythm-vae",
        "offline",
        "rhythmflow fetch",
        "assets_dir=DIR",  # the library's words; the command line shows its flag
    ):
        assert part in msg
    from rhythmflow.cli.flags import in_flags

    assert "--assets-dir DIR" in in_flags(msg)
    with pytest.raises(AssetError) as err:
        resolve("zh-lexicon", assets_dir=tmp_path / "empty", offline=True)
    assert "with_chinese=1" in str(err.value) and "chinese_lexicon.txt" in str(err.value)
    with pytest.raises(AssetError) as err:
        resolve("dit-v1.0-full", offline=True)
    assert "model=v1.0-full" in str(err.value)
    assert "--model v1.0-full" in in_flags(str(err.value))


def test_corrupt_files_are_reported_never_returned(tmp_path, assets_dir, no_network):
    root = tmp_path / "root"
    shutil.copytree(assets_dir / "src", root / "src")
    bad = root / "src" / "negative_prompt.npy"
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(AssetError, match=r"corrupt asset negative-style.*expected 6cb7d74e") as err:
        resolve("negative-style", assets_dir=root, offline=True)
    assert "ASLP-lab/DiffRhythm" in str(err.value) and "delete it" in str(err.value)
    # the same in the HF cache, offline
    _fake_cache(tmp_path / "hub", ASSETS["g2p-vocab"], b"{}")
    with pytest.raises(AssetError, match="corrupt"):
        resolve("g2p-vocab", offline=True)


def test_verified_marker_skips_rehash_until_the_file_changes(tmp_path, assets_dir):
    root = tmp_path / "root"
    shutil.copytree(assets_dir / "src", root / "src")
    events = []
    resolve("negative-style", assets_dir=root, on_progress=events.append)
    assert [e.stage for e in events] == ["verify"] and events[-1].done == events[-1].total == 2176
    assert list((tmp_path / "rf-cache" / "verified").glob("*.json"))  # marker outside the cwd
    events.clear()
    resolve("negative-style", assets_dir=root, on_progress=events.append)
    assert events == []  # marker hit: not hashed again
    f = root / "src" / "negative_prompt.npy"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    resolve("negative-style", assets_dir=root, on_progress=events.append)
    assert [e.stage for e in events] == ["verify"]  # new mtime: hashed again
    # verify_file with force always hashes; unknown checksum means "not verified"
    events.clear()
    assert verify_file(f, ASSETS["negative-style"].sha256, force=True, on_progress=events.append)
    assert events and verify_file(f, None) is False


def test_fetch_offline_reports_each_asset(tmp_path, assets_dir, no_network):
    report = fetch("v1.2-base", with_chinese=True, offline=True, assets_dir=assets_dir)
    by_name = {i.name: i for i in report.items}
    assert set(by_name) == set(assets.required_assets("v1.2-base", with_chinese=True))
    for name in SMALL_SPACE_ASSETS:
        assert by_name[name].status == "ok" and by_name[name].verified, name
    for name in ("dit-v1.2-base", "vae", "mulan-weights", "xlmr-tokenizer"):
        assert by_name[name].status == "missing"
        assert ASSETS[name].repo_id in by_name[name].message
    assert not report.ok and report.exit_code == 3
    text = "\n".join(report.lines())
    assert "MISSING" in text and "sha256 ok" in text
    # everything present → ok, exit 0
    root = tmp_path / "root"
    shutil.copytree(assets_dir, root)
    (root / "ASLP-lab" / "DiffRhythm-1_2").mkdir(parents=True)
    (root / "ASLP-lab" / "DiffRhythm-1_2" / "cfm_model.pt").write_bytes(b"dit")
    report = fetch("v1.2-base", offline=True, assets_dir=root, with_mulan=False)
    missing = {i.name for i in report.problems}
    assert missing == {"vae"}  # the only large file with a checksum we cannot fake
    assert {i.name for i in report.items if not i.verified and i.status == "ok"} == {
        "dit-v1.2-base"
    }


# --- MuQ-MuLan files: exactly the five the encoder reads, checked against the Hub's record ---

REMOVED_MULAN = ("muq-weights", "xlmr-weights", "xlmr-sentencepiece")


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _hub_cache(hub: Path, asset, content: bytes, blob: str, rev: str = "e" * 40) -> Path:
    """What hf_hub_download leaves: snapshots/<rev>/<path> → ../../blobs/<etag>."""
    repo = hub / f"models--{asset.repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "blobs" / blob).write_bytes(content)
    link = repo / "snapshots" / rev / asset.path
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(repo / "blobs" / blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    return link


def test_mulan_assets_are_the_five_files_the_encoder_reads():
    from rhythmflow.style.embed import MuQMuLanEncoder

    assert set(assets.MULAN_ASSETS) == set(MuQMuLanEncoder.FILES)
    assert {(ASSETS[n].repo_id, ASSETS[n].path) for n in assets.MULAN_ASSETS} == {
        ("OpenMuQ/MuQ-MuLan-large", "config.json"),
        ("OpenMuQ/MuQ-MuLan-large", "pytorch_model.bin"),
        ("OpenMuQ/MuQ-large-msd-iter", "config.json"),
        ("xlm-roberta-base", "config.json"),
        ("xlm-roberta-base", "tokenizer.json"),
    }
    for name in REMOVED_MULAN:
        assert name not in ASSETS
    for model in MODELS:
        names = assets.required_assets(model, with_chinese=True, with_asr=True)
        assert not set(REMOVED_MULAN) & set(names)
        assert set(assets.MULAN_ASSETS) <= set(names)
    assert not set(assets.MULAN_ASSETS) & set(assets.required_assets("base", with_mulan=False))


def test_hub_record_checks_lfs_and_small_files(tmp_path, no_network):
    hub = tmp_path / "hub"  # HF_HUB_CACHE (the isolated fixture)
    weights = b"\x80\x02 pretend MuQ-MuLan tensors" * 100
    good = _hub_cache(hub, ASSETS["mulan-weights"], weights, hashlib.sha256(weights).hexdigest())
    config = b'{"architectures": ["MuQMuLan"]}'
    small = _hub_cache(hub, ASSETS["mulan-config"], config, _git_sha1(config))
    assert assets._hub_record(good) == ("sha256", hashlib.sha256(weights).hexdigest())
    assert assets._hub_record(small) == ("git-sha1", _git_sha1(config))
    assert assets.git_blob_sha1(small) == _git_sha1(config)
    events = []
    assert resolve("mulan-weights", on_progress=events.append) == good
    assert [e.stage for e in events] == ["verify"]  # hashed against the blob's name...
    events.clear()
    assert resolve("mulan-weights", on_progress=events.append) == good
    assert events == []  # ...once: the verified marker skips it after that
    assert resolve("mulan-config") == small
    # a tampered LFS blob (content changed, name kept) is refused, naming the file
    damaged = bytearray(weights)
    damaged[7] ^= 0x01
    good.resolve().write_bytes(bytes(damaged))
    with pytest.raises(AssetError) as err:
        resolve("mulan-weights", offline=True)
    msg = str(err.value)
    assert "corrupt asset mulan-weights" in msg and "pytorch_model.bin" in msg
    assert "OpenMuQ/MuQ-MuLan-large" in msg and "Hub's record" in msg
    assert str(good.resolve()) in msg  # the blob to delete, not just the link
    # a tampered small file (git blob sha1 record) too
    small.resolve().write_bytes(config.replace(b"MuQ", b"MuX"))
    with pytest.raises(AssetError, match=r"corrupt asset mulan-config.*git blob sha1"):
        resolve("mulan-config", offline=True)
    # files outside the blob layout (an asset folder) have no record: taken as present
    plain = tmp_path / "root" / "xlm-roberta-base" / "config.json"
    plain.parent.mkdir(parents=True)
    plain.write_text("{}")
    assert assets._hub_record(plain) is None
    assert resolve("xlmr-config", assets_dir=tmp_path / "root") == plain


def test_fetch_offline_reports_the_five_mulan_files(tmp_path, assets_dir, no_network):
    hub = tmp_path / "hub"
    weights = b"mulan weights" * 1000
    _hub_cache(hub, ASSETS["mulan-weights"], weights, hashlib.sha256(weights).hexdigest())
    mulan_cfg = b'{"model": "mulan"}'
    _hub_cache(hub, ASSETS["mulan-config"], mulan_cfg, _git_sha1(mulan_cfg))
    tok = b'{"version": "1.0", "model": {"type": "Unigram"}}'
    _hub_cache(hub, ASSETS["xlmr-tokenizer"], tok, hashlib.sha256(b"other").hexdigest())
    report = fetch("v1.2-base", offline=True, assets_dir=assets_dir)
    by_name = {i.name: i for i in report.items}
    assert set(assets.MULAN_ASSETS) <= set(by_name)
    assert not set(REMOVED_MULAN) & set(by_name)
    lines = {ln.split()[0]: ln for ln in report.lines() if not ln.startswith("error:")}
    assert by_name["mulan-weights"].status == "ok" and by_name["mulan-weights"].verified
    assert lines["mulan-weights"].endswith("(hf-cache, sha256 ok (Hub record))")
    assert by_name["mulan-config"].status == "ok" and by_name["mulan-config"].check == "hub-git-sha1"
    assert lines["mulan-config"].endswith("(hf-cache, git sha1 ok (Hub record))")
    assert by_name["xlmr-tokenizer"].status == "corrupt"
    assert "tokenizer.json" in by_name["xlmr-tokenizer"].message
    for name in ("muq-config", "xlmr-config"):
        assert by_name[name].status == "missing" and lines[name].endswith("MISSING")
    # the offline error lists every missing MuQ-MuLan file, and only those, with one command
    msg = by_name["muq-config"].message
    listed = set(re.findall(r"^  (\S+)", msg, re.M))
    assert listed == {"OpenMuQ/MuQ-large-msd-iter/config.json", "xlm-roberta-base/config.json"}
    assert "rhythmflow fetch" in msg and "sentencepiece" not in msg
    # with nothing in the cache the error names all five
    shutil.rmtree(hub)
    with pytest.raises(AssetError) as err:
        resolve("xlmr-tokenizer", offline=True)
    listed = set(re.findall(r"^  (\S+)", str(err.value), re.M))
    assert listed == {f"{ASSETS[n].repo_id}/{ASSETS[n].path}" for n in assets.MULAN_ASSETS}
    assert "2.8 GB" in str(err.value)


def test_download_is_checked_against_the_hub_record(tmp_path, fake_hub):
    data = b"pretend weights" * 50
    fake_hub.put(ASSETS["mulan-weights"], data)  # the fake Hub's ETag is the sha256
    report = fetch("v1.2-base", with_mulan=True)
    item = next(i for i in report.items if i.name == "mulan-weights")
    assert item.status == "ok" and item.source == "download" and item.check == "hub-sha256"
    assert item.local_path.resolve().name == hashlib.sha256(data).hexdigest()
    assert item.local_path.read_bytes() == data


class _FakeHub:
    """A local HTTP server answering the Hub's resolve URLs from a dict."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, body: bool):
                data = hub.files.get(self.path.lstrip("/").split("?")[0])
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", "d" * 40)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self):
                self._reply(False)

            def do_GET(self):
                self._reply(True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def put(self, asset, data: bytes):
        prefix = "spaces/" if asset.repo_type == "space" else ""
        self.files[f"{prefix}{asset.repo_id}/resolve/main/{asset.path}"] = data


@pytest.fixture
def fake_hub(monkeypatch):
    hf_constants = pytest.importorskip("huggingface_hub.constants")
    hub = _FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    # huggingface_hub < 1.0 caches an HTTP session with offline adapters mounted
    reset = getattr(importlib.import_module("huggingface_hub.utils"), "reset_sessions", None)
    if reset:
        reset()
    yield hub
    hub.server.shutdown()
    if reset:
        monkeypatch.undo()
        reset()


def test_download_verifies_and_caches(tmp_path, assets_dir, fake_hub):
    neg = (assets_dir / "src" / "negative_prompt.npy").read_bytes()
    fake_hub.put(ASSETS["negative-style"], neg)
    events = []
    p = resolve("negative-style", assets_dir=tmp_path / "empty", on_progress=events.append)
    assert p.read_bytes() == neg and p.is_relative_to(tmp_path / "hub")
    assert {e.stage for e in events} == {"download", "verify"}
    assert events[-1].done == len(neg)
    # now offline, from the cache
    assert resolve("negative-style", offline=True) == p


def test_corrupt_download_is_an_error(tmp_path, fake_hub):
    fake_hub.put(ASSETS["g2p-vocab"], b'{"vocab": {}}')
    with pytest.raises(AssetError, match="corrupt asset g2p-vocab"):
        resolve("g2p-vocab")
    report = fetch("v1.2-base", with_mulan=False)
    status = {i.name: i.status for i in report.items}
    assert status["g2p-vocab"] == "corrupt" and status["vae"] == "missing"  # vae: 404 here
    assert "404" in next(i.message for i in report.items if i.name == "vae")
    assert report.exit_code == 3


def test_corrupted_cache_file_is_downloaded_again_online(tmp_path, assets_dir, fake_hub):
    good = (assets_dir / "diffrhythm/g2p/g2p/vocab.json").read_bytes()
    fake_hub.put(ASSETS["g2p-vocab"], good)
    p = resolve("g2p-vocab")
    blob = p.resolve()
    damaged = bytearray(good)
    damaged[100] ^= 0x20
    blob.write_bytes(bytes(damaged))  # bit rot after a verified download
    with pytest.raises(AssetError, match="corrupt"):
        resolve("g2p-vocab", offline=True)  # offline: reported, not used
    assert resolve("g2p-vocab").read_bytes() == good  # online: fetched again
