"""scripts/setup.sh never leaves a broken install behind an exit 0: it ends by importing what
it installed (torch at the pinned version, rhythmflow, transformers for MuQ-MuLan, an espeak-ng
library for English lyrics). Checked on real venvs — the one running the tests and a scratch
one — without downloading anything; and the main path needs no system package."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "scripts" / "setup.sh"


def _setup(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SETUP), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


def test_verify_accepts_the_working_install():
    proc = _setup("verify", VENV=sys.prefix, TORCH_VERSION=torch.__version__.split("+")[0])
    assert proc.returncode == 0, proc.stderr
    assert f"{sys.prefix}: install verified" in proc.stdout
    for name in ("torch", "rhythmflow", "transformers", "espeak-ng"):
        assert name in proc.stdout


def test_verify_names_a_wrong_torch():
    proc = _setup("verify", VENV=sys.prefix, TORCH_VERSION="0.0.1")
    assert proc.returncode == 1
    assert "setup FAILED" in proc.stderr and "this install needs 0.0.1" in proc.stderr


def test_verify_fails_loudly_on_an_empty_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    proc = _setup("verify", VENV=str(venv))
    assert proc.returncode == 1
    assert "setup FAILED" in proc.stderr and "import torch failed" in proc.stderr
    assert "fix: delete" in proc.stderr


def test_verify_fails_on_a_missing_venv(tmp_path):
    proc = _setup("verify", VENV=str(tmp_path / "none"))
    assert proc.returncode == 1 and "does not exist" in proc.stderr


def test_the_main_path_installs_no_system_package():
    """apt is used only inside the test mode (chromium and redis-server for those tests)."""
    text = SETUP.read_text()
    main = text.split('if [ "$MODE" = test ]; then', 1)[0]
    calls = [line for line in main.splitlines()
             if re.search(r"\bapt(-get)?\b|\bapt_install\b", line)
             and not line.lstrip().startswith(("#", "apt_install()", "$SUDO"))]
    assert calls == [], calls
    assert not re.search(r"(apt|brew)[^\n]*espeak", text)  # English G2P: espeak-ng from a wheel
