"""Issue 22, "pip alone works": the rhythmflow wheel, built here, installed with pip into a fresh
venv (no --system-site-packages), runs ``rhythmflow lrc``, ``rhythmflow generate --plan`` and the
English and Chinese G2P with the system espeak-ng hidden (``RHYTHMFLOW_ESPEAK=bundled``, no
``PHONEMIZER_ESPEAK_LIBRARY``), and the install's footprint is measured.

Cheap, as tests/test_setup_script.py builds its environments: torch is not downloaded, its
installed files (and those of the packages it needs) are hard-linked from the environment running
the tests into the scratch venv, so pip finds it installed (the CPU build here; PyPI's default
Linux torch is a CUDA build, see the README for the CPU index). Every other dependency comes
from the package index by ordinary pip resolution (pip's cache makes reruns fast). The wheel is
built without build isolation from a copy of the working tree (setuptools of this environment),
so the tree gets no build/ or egg-info.

Footprints are printed (``pytest -s``) and written to ``footprint.json`` in the test's folder.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
GOLDEN_LYRICS = Path(
    os.environ.get("RHYTHMFLOW_GOLDEN_DIR", REPO.parent / "shared" / "golden")
) / "lyrics"
FOOTPRINT_LIMIT = 1.6e9  # bytes: the full CPU install (issue 22, item 3)
LINUX_X86_64 = sys.platform == "linux" and platform.machine() == "x86_64"
PLAIN_LYRICS = "[verse]\nHello little song\nAnother line of words\n\n[chorus]\nThe floor is ours\n"


def _run(cmd: list, timeout: int = 900, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw
    )
    assert done.returncode == 0, f"{cmd} exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _build_wheel(tmp: Path) -> Path:
    """The rhythmflow wheel of the working tree (a copy: nothing is written into the tree)."""
    tree = tmp / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(
        REPO / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    out = tmp / "dist"
    # this environment's setuptools when it is recent enough, else pip fetches one (isolated)
    isolation = ["--no-build-isolation"] if _has_setuptools(77) else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, tree, *isolation])
    (wheel,) = out.glob("rhythmflow-*.whl")
    return wheel


def _has_setuptools(major: int) -> bool:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= major
    except importlib.metadata.PackageNotFoundError:
        return False


def _closure(name: str) -> dict[str, importlib.metadata.Distribution]:
    """``name`` and every distribution it requires (no extras), as installed here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [name]
    while todo:
        key = canonicalize_name(todo.pop())
        if key in found:
            continue
        dist = importlib.metadata.distribution(key)
        found[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def _site_packages(venv: Path) -> Path:
    out = _run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()"
                "['purelib'])"])
    return Path(out.stdout.strip())


def _link_installed(dists: dict, venv: Path) -> list[str]:
    """Hard-link (else copy) the installed files of ``dists`` into the venv, skipping the ones
    the venv already holds (pip upgrades those if needed) and console scripts (bin/)."""
    site = _site_packages(venv)
    have = {d.metadata["Name"].lower().replace("_", "-") for d in
            importlib.metadata.distributions(path=[str(site)])}
    linked = []
    for key, dist in dists.items():
        if key in have:
            continue
        for rel in dist.files or []:
            if rel.parts[0] == "..":
                continue
            src = Path(dist.locate_file(rel))
            if not src.is_file():
                continue
            dst = site / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        linked.append(f"{key} {dist.version}")
    return linked


def _bytes(path: Path) -> int:
    """Disk usage of a folder, each hard-linked file once (as du)."""
    seen, total = set(), 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def _env(tmp: Path) -> dict[str, str]:
    """The user's environment with the system espeak-ng hidden from the G2P and nothing that
    would make the venv's Python see this checkout."""
    drop = {"PHONEMIZER_ESPEAK_LIBRARY", "ESPEAK_DATA_PATH", "PYTHONPATH", "PYTHONHOME",
            "VIRTUAL_ENV"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(RHYTHMFLOW_ESPEAK="bundled", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
               RHYTHMFLOW_CACHE_DIR=str(tmp / "cache"))
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv holding the wheel with its [chinese,serve] extras (torch linked in)."""
    tmp = tmp_path_factory.mktemp("pip-install")
    wheel = _build_wheel(tmp)
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", venv], timeout=300)
    linked = _link_installed(_closure("torch"), venv)
    python = venv / "bin" / "python"
    env = _env(tmp)
    _run([python, "-m", "pip", "install", "-q", f"{wheel}[chinese,serve]"], env=env)
    return {"tmp": tmp, "venv": venv, "python": python, "wheel": wheel, "env": env,
            "linked": linked, "bin": venv / "bin"}


def test_the_wheel_is_what_runs(installed):
    out = _run([installed["python"], "-c", "import rhythmflow, sys; print(rhythmflow.__file__);"
                "print(sys.flags.no_site, sys.prefix)"], env=installed["env"],
               cwd=installed["tmp"])
    path = Path(out.stdout.splitlines()[0])
    assert path.is_relative_to(installed["venv"]), path
    cfg = (installed["venv"] / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    check = _run([installed["python"], "-m", "pip", "check"], env=installed["env"])
    assert "No broken requirements" in check.stdout


def test_g2p_english_and_chinese_with_the_system_espeak_hidden(installed, assets_dir):
    en = json.loads((GOLDEN_LYRICS / "english_lines.jsonl").read_text("utf-8").splitlines()[0])
    zh = json.loads((GOLDEN_LYRICS / "chinese_lines.jsonl").read_text("utf-8").splitlines()[1])
    code = (
        "import json, sys\n"
        "from rhythmflow.lyrics import g2p_phonemes, g2p_tokens\n"
        "from rhythmflow.lyrics.g2p import english\n"
        "en, zh = sys.argv[1], sys.argv[2]\n"
        "out = {'en': [g2p_phonemes(en), g2p_tokens(en)], 'zh': [g2p_phonemes(zh), "
        "g2p_tokens(zh)]}\n"
        "info = english.espeak_info()\n"
        "out['source'], out['version'] = info.library.source, list(info.version)\n"
        "out['library'] = info.library.library\n"
        "maps = open('/proc/self/maps').read() if sys.platform == 'linux' else ''\n"
        "out['system_mapped'] = 'libespeak-ng.so.1' in maps\n"
        "print(json.dumps(out))\n"
    )
    env = {**installed["env"], "RHYTHMFLOW_ASSETS_DIR": str(assets_dir)}
    done = _run([installed["python"], "-c", code, en["text"], zh["text"]], env=env,
                cwd=installed["tmp"])
    out = json.loads(done.stdout)
    assert Path(out["library"]).is_relative_to(installed["venv"])
    assert not out["system_mapped"]  # the system libespeak-ng was never loaded
    if LINUX_X86_64:
        assert out["source"] == "espeak-english" and out["version"][:2] == [1, 51]
        assert out["en"] == [en["phonemes"], en["tokens"]]
    else:
        assert out["source"] == "espeakng-loader"
    assert out["zh"] == [zh["phonemes"], zh["tokens"]]


def test_lrc_from_plain_lyrics(installed, assets_dir):
    lyrics = installed["tmp"] / "plain.txt"
    lyrics.write_text(PLAIN_LYRICS, encoding="utf-8")
    out = installed["tmp"] / "timed.lrc"
    done = _run([installed["bin"] / "rhythmflow", "lrc", lyrics, "--duration", "95",
                 "--offline", "--assets-dir", assets_dir, "-o", out],
                env=installed["env"], cwd=installed["tmp"])
    text = out.read_text(encoding="utf-8")
    assert "Hello little song" in text and "The floor is ours" in text, done.stderr
    assert text.count("[00:") >= 3


def test_generate_plan(installed, tiny_files):
    out = installed["tmp"] / "song.wav"
    done = _run([installed["bin"] / "rhythmflow", "generate", "--lrc", tiny_files["lrc"],
                 "--style-embedding", tiny_files["style"], "--checkpoint", tiny_files["ckpt"],
                 "--vae", tiny_files["vae"], "--steps", "3", "--seed", "11", "-o", out,
                 "--plan", "--json", "--time-budget", "100000"],
                env=installed["env"], cwd=installed["tmp"])
    plan = json.loads(done.stdout)
    assert plan["steps"] == 3 and plan["frames"] == 2048
    assert not out.exists()


def test_footprint(installed):
    """The install's size on disk without, then with the mulan extra (transformers,
    tokenizers): at most 1.6 GB for the full CPU install."""
    venv = installed["venv"]
    sizes = {"chinese,serve": _bytes(venv)}
    _run([installed["python"], "-m", "pip", "install", "-q", f"{installed['wheel']}[mulan]"],
         env=installed["env"])
    sizes["mulan,chinese,serve"] = _bytes(venv)
    site = _site_packages(venv)
    biggest = sorted(((_bytes(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True)
    report = {
        "bytes": sizes,
        "torch linked from the test environment": installed["linked"],
        "largest in site-packages (MB)": {n: round(b / 1e6, 1) for b, n in biggest[:12]},
    }
    (installed["tmp"] / "footprint.json").write_text(json.dumps(report, indent=1))
    print("\nfootprint:", json.dumps(report, indent=1))
    assert sizes["mulan,chinese,serve"] <= FOOTPRINT_LIMIT, report


def test_generate_with_a_text_style_prompt(installed, tiny_files, assets_dir):
    """pip alone, the system espeak-ng hidden, with assets present: `generate --style-prompt`
    runs rhythmflow's own MuQ-MuLan (the tiny repos in the official layout) to the song."""
    import shutil

    from tests.test_mulan_own import PROMPT, build_repos

    _run([installed["python"], "-m", "pip", "install", "-q", f"{installed['wheel']}[mulan]"],
         env=installed["env"])
    assets = installed["tmp"] / "assets-with-mulan"
    shutil.copytree(assets_dir, assets)
    build_repos(assets)
    out = installed["tmp"] / "prompted.wav"
    done = _run([installed["bin"] / "rhythmflow", "generate", "--lrc", tiny_files["lrc"],
                 "--style-prompt", PROMPT, "--checkpoint", tiny_files["ckpt"],
                 "--vae", tiny_files["vae"], "--assets-dir", assets, "--offline",
                 "--steps", "2", "--seed", "5", "--progress", "none", "--skip-estimate",
                 "-o", out], env=installed["env"], cwd=installed["tmp"])
    meta = json.loads(out.with_suffix(".json").read_text())
    assert out.stat().st_size > 44, done.stderr
    assert meta["request"]["style_prompt"] == PROMPT
