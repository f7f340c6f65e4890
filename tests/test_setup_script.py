"""scripts/setup.sh never leaves a broken install behind an exit 0 (issue 14): it decides per
``.venv`` flavour (cpu / mulan) whether to keep, create or rebuild, and ends by importing what it
installed. The decision is checked with SETUP_PLAN_ONLY=1 and the verification on real venvs
(the one running the tests, and scratch venvs broken the way mixing the two installs broke
them); no package is downloaded."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "scripts" / "setup.sh"


def _setup(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "WITH_MULAN"}
    full.update(env)
    return subprocess.run(["bash", str(SETUP), *args], capture_output=True, text=True,
                          timeout=300, env=full)


def _scratch_venv(path: Path, flavour: str | None = None) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=120)
    if flavour is not None:
        (path / ".rhythmflow-flavour").write_text(flavour + "\n")
    return path


@pytest.mark.parametrize(("have", "with_mulan", "plan"), [
    (None, None, "holds none, cpu wanted: create"),
    (None, "1", "holds none, mulan wanted: create"),
    ("mulan", None, "holds mulan, mulan wanted: keep"),  # `setup.sh test` after WITH_MULAN=1
    ("mulan", "0", "holds mulan, cpu wanted: rebuild"),
    ("cpu", "1", "holds cpu, mulan wanted: rebuild"),
    ("cpu", None, "holds cpu, cpu wanted: keep"),
])
def test_setup_plans_per_flavour(tmp_path, have, with_mulan, plan):
    venv = tmp_path / "venv"
    if have is not None:
        _scratch_venv(venv, have)
    env = {"VENV": str(venv), "SETUP_PLAN_ONLY": "1"}
    if with_mulan is not None:
        env["WITH_MULAN"] = with_mulan
    proc = _setup("test", **env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"plan: {venv} {plan}"


def test_verify_accepts_the_working_install():
    proc = _setup("verify", VENV=sys.prefix, MULAN_VENV=str(REPO / "no-such-venv"),
                  TORCH_VERSION=torch.__version__.split("+")[0])
    assert proc.returncode == 0, proc.stderr
    assert f"{sys.prefix}: " in proc.stdout and "install verified" in proc.stdout


def test_verify_fails_loudly_on_an_empty_venv(tmp_path):
    venv = _scratch_venv(tmp_path / "venv")
    proc = _setup("verify", VENV=str(venv), MULAN_VENV=str(tmp_path / "none"))
    assert proc.returncode == 1
    assert "setup FAILED" in proc.stderr and "import torch failed" in proc.stderr


@pytest.mark.parametrize("torchaudio_init", [
    "raise OSError('libtorchaudio.so: undefined symbol: _ZN3c1017RegisterOperators')\n",
    "__version__ = '2.11.0'\n",
])
def test_verify_catches_torchaudio_built_for_another_torch(tmp_path, torchaudio_init):
    # The state the README's two commands left: torch replaced under an installed torchaudio.
    venv = _scratch_venv(tmp_path / "venv", "mulan")
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    site.mkdir(parents=True, exist_ok=True)
    (site / "host.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch 2.13 etc.
    (site / "torchaudio").mkdir()
    (site / "torchaudio" / "__init__.py").write_text(torchaudio_init)
    proc = _setup("verify", VENV=str(venv), MULAN_VENV=str(tmp_path / "none"))
    assert proc.returncode == 1, proc.stdout
    assert "torchaudio" in proc.stderr and "torch is 2.13" in proc.stderr
    assert "fix: delete" in proc.stderr


def test_unmarked_venv_with_muq_installed_counts_as_mulan(tmp_path):
    # A .venv from before the flavour marker, where `setup.sh test` had replaced torch under
    # muq (so `import muq` fails): it is still recognised by muq's installed metadata.
    venv = _scratch_venv(tmp_path / "venv")
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    site.mkdir(parents=True, exist_ok=True)
    dist = site / "muq-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: muq\nVersion: 0.1.0\n")
    proc = _setup("test", VENV=str(venv), SETUP_PLAN_ONLY="1")
    assert proc.stdout.strip() == f"plan: {venv} holds mulan, mulan wanted: keep"
