"""Runs the comparison of rhythmflow's own MuQ-MuLan with the real ``muq`` package (tests/mulan/)
in ``.venv-mulan``, the test-only environment ``bash scripts/setup.sh test`` builds for it:
torch/torchaudio 2.11, muq 0.1.0 and transformers 4.x. Nothing else needs ``muq``."""

from __future__ import annotations

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MULAN_PYTHON = Path(os.environ.get("RHYTHMFLOW_MULAN_PYTHON", REPO / ".venv-mulan" / "bin" / "python"))


def test_real_muq_mulan_suite_in_the_mulan_environment(tmp_path):
    if not MULAN_PYTHON.is_file():
        pytest.fail(f"{MULAN_PYTHON} is missing: run `bash scripts/setup.sh test` (or set "
                    "RHYTHMFLOW_MULAN_PYTHON to a python with 'rhythmflow[mulan]' installed)")
    env = dict(os.environ, RHYTHMFLOW_MULAN_SUITE="1", HF_HUB_OFFLINE="1")
    report = tmp_path / "mulan.xml"
    proc = subprocess.run(
        [str(MULAN_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W",
         "ignore::DeprecationWarning", f"--junitxml={report}", "tests/mulan"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1500,
    )
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    cases = ET.parse(report).getroot().iter("testcase")
    passed = {c.get("name").split("[")[0] for c in cases if not len(c)}  # no failure/skip child
    expected = {
        m for f in (REPO / "tests" / "mulan").glob("test_*.py")
        for m in re.findall(r"^def (test_\w+)", f.read_text(), flags=re.M)
    }
    assert len(expected) >= 9 and expected <= passed, (sorted(expected - passed), tail)
    assert not re.search(r"\d+ (skipped|xfailed|deselected)", proc.stdout), tail
