
"""`rhythmflow diagnose` and the seed's `diagnose_ode_stall.py`, plus the progress view."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rhythmflow.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def test_diagnose_json_report_with_smoke_run(capsys):
    assert main(["diagnose", "--json", "--smoke", "--bench-frames", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    sysinfo = report["system"]
    assert sysinfo["physical_cores"] >= 1 and sysinfo["ram_gb"] > 0 and sysinfo["torch"]
    assert sysinfo["runtime"]["dtype"] == "float32" and sysinfo["espeak_ng"]
    base = report["model"]["v1.2-base"]
    assert base["parameters"] == 1_109_315_648 and base["frames"] == 2048
    assert 4.5 < base["tflop_per_eval"] < 5.5  # ≈ 5 TFLOP per evaluation of a 95 s song
    assert report["model"]["v1.2-full"]["frames"] == 6136
    est = report["estimates_seconds"]["v1.2-base"]
    assert est["8"] < est["16"] < est["32"]
    assert report["benchmark"]["gemm_gflops"] > 0
    assert any("--steps 8" in r for r in report["recommendations"])
    assert report["smoke"]["ok"] and report["smoke"]["audio_seconds"] > 90


@pytest.mark.slow
def test_diagnose_ode_stall_script_runs_from_repo_root():
    proc = subprocess.run([sys.executable, "diagnose_ode_stall.py", "--json", "--bench-frames",
                           "0"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "recommendations" in json.loads(proc.stdout)


def test_diagnose_reports_the_cached_probe_and_refresh_measures_again(capsys, monkeypatch,
                                                                      tmp_path):
    from rhythmflow.machine import probe as pr
    from tests.test_probe import AMX

    monkeypatch.setenv("RHYTHMFLOW_CACHE_DIR", str(tmp_path))
    measured = []
    monkeypatch.setattr(pr, "measure_cpu", lambda t, **kw: measured.append(t) or AMX)
    assert main(["diagnose", "--json", "--bench-frames", "0"]) == 0
    report = json.loads(capsys.readouterr().out)["probe"]
    assert report["chosen"] == "bfloat16" and "(AMX)" in report["reason"]
    assert report["cache"].startswith(str(tmp_path)) and len(measured) == 1
    assert main(["diagnose", "--json", "--bench-frames", "0"]) == 0  # cached: not measured
    assert len(measured) == 1
    assert main(["diagnose", "--bench-frames", "0", "--refresh"]) == 0
    assert len(measured) == 2
    assert "bfloat16 2.80x" in capsys.readouterr().out
