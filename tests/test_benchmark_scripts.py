"""The prepared GPU check must import and exit cleanly (a skip line, exit 0) without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: gpu.py would run")
def test_gpu_script_skips_cleanly_without_a_gpu(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), CUDA_VISIBLE_DEVICES="")
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA GPU on this machine; nothing measured (skip)" in proc.stdout
    assert not out.exists()  # nothing measured, nothing written
    assert "Traceback" not in proc.stderr


def test_gpu_script_imports_only_what_a_bare_gpu_machine_has():
    """Module level: standard library only (torch, numpy and rhythmflow are imported inside)."""
    import ast

    tree = ast.parse((REPO / "benchmarks" / "gpu.py").read_text(encoding="utf-8"))
    top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module.split(".")[0] for n in tree.body
            if isinstance(n, ast.ImportFrom) and n.module}
    assert top <= {"__future__", "argparse", "copy", "dataclasses", "json", "os", "statistics",
                   "subprocess",
                   "sys", "tempfile", "time", "pathlib"}


def test_gpu_script_code_paths_run_as_a_cpu_dry_run(tmp_path):
    """Every measurement of gpu.py (DiT evaluation, guided run, VAE decode, guidance layout) on
    tiny models on the CPU, so the script that waits for a GPU is not first run on one."""
    import json

    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--device", "cpu", "--tiny",
         "--frames", "48", "--steps", "2", "--no-generate", "--no-compile", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert [(r["dtype"], r["frames"], r["evaluations"]) for r in res["dit"]] == [
        ("bfloat16", 48, 2), ("float16", 48, 2)]
    assert all(r["finite"] and r["eval_seconds"] > 0 for r in res["dit"])
    assert [r["dtype"] for r in res["vae"]] == ["float32", "bfloat16"]
    assert res["vae"][0]["geometry"] == {"chunk": 256, "overlap": 32, "per_item": True}
    eager = {r["decoder"]: r for r in res["vae_eager"]}
    assert sorted(eager) == ["eager", "torchscript"]
    assert eager["eager"]["max_abs_diff_eager_vs_torchscript"] <= 1e-4 * eager["eager"][
        "max_abs_audio"]
    assert res["skipped"] == ["CUDA graph (no CUDA)", "torch.compile (--no-compile)"]
    assert "| VAE decode | 40 | bfloat16 |" in proc.stdout
    assert [(r["variant"].split(",")[0], r["frames"], r["dtype"]) for r in res["speedups"]] == [
        ("eager", 48, "bfloat16"), ("eager", 48, "bfloat16")]
    assert res["speedups"][0]["vs_default"] == 1.0 and res["speedups"][1]["seconds"] > 0


def test_song_script_runs_a_song_end_to_end_with_tiny_assets(tmp_path):
    """benchmarks/song.py (the full-size end-to-end run) on tiny assets: the CLI subprocess,
    the sidecar's stage times and the table."""
    import json

    out = tmp_path / "song.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "song.py"), "--tiny", "--json", str(out)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
        timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text())
    song = res["song"]
    assert song["rc"] == 0 and song["wav"] and song["steps"] == 2
    assert set(song["timings"]) >= {"load", "sample", "decode", "total"}
    assert "| decode |" in proc.stdout and "% of sampling + decode" in proc.stdout


@pytest.mark.slow
def test_song_dtype_script_compares_the_three_precisions_on_tiny_assets(tmp_path):
    """benchmarks/song_dtype.py on tiny assets: the three variants planned and run through the
    API on the same weights and noise, the reference decoded by TorchScript, the errors."""
    import json

    out = tmp_path / "dtype.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "song_dtype.py"), "--tiny", "--frames", "32",
         "--steps", "2", "--no-probe", "--json", str(out)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
        timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text())
    rows = {r["variant"]: r for r in res["rows"]}
    assert list(rows) == ["reference", "bfloat16", "float32"]
    assert [(r["dtype"], r["vae_dtype"]) for r in rows.values()] == [
        ("float16", "float32"), ("bfloat16", "bfloat16"), ("float32", "float32")]
    assert rows["reference"]["vae_decoder"] == "torchscript"
    assert rows["float32"]["vae_decoder"].startswith("eager-oobleck")
    assert all(r["finite"] and (r["frames"], r["steps"]) == (32, 2) for r in rows.values())
    assert rows["reference"]["audio_rel_rms"] == 0 == rows["float32"]["audio_rel_rms_vs_float32"]
    assert 0 < rows["float32"]["audio_rel_rms"] < rows["bfloat16"]["audio_rel_rms"] < 0.5
    assert res["machine"]["cpu"] in proc.stdout and res["isa_class"] in proc.stdout
    assert "audio rel. RMS" in proc.stdout and " torchscript |" in proc.stdout


@pytest.mark.slow
def test_review_script_times_the_check_and_one_repair_round_on_tiny_assets(tmp_path):
    """benchmarks/review.py on tiny assets: the initial generation, the check as shipped (a
    random Whisper decodes to its cap), the review's check at a set transcript length, and one
    repair round of the scripted failing line with its parts, side by side."""
    import json
    import re

    out = tmp_path / "review.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "review.py"), "--tiny", "--no-probe",
         "--tokens", "3", "--capped-windows", "2", "--json", str(out)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
        timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text())
    ini, chk, rc, rp = res["initial"], res["check"], res["review_check"], res["repair"]
    assert (ini["frames"], ini["steps"], ini["lines"]) == (2048, 2, 20)
    # a random Whisper never says end-of-text: every window runs to the cap (16 - 4 prompt)
    assert (chk["windows"], chk["lines"], chk["cap"], chk["all_to_cap"]) == (2, 20, 12, True)
    assert chk["decoder_calls"] == [12, 12] and chk["extrapolated"]
    assert (rc["windows"], rc["decoder_calls"], rc["max_tokens"]) == (20, [4, 4], 4)
    assert rp["rounds"] == 1 and rp["passed"] and rp["decodes"] == 1
    assert rp["round"]["lines"] == [res["bad_line"]] == rp["round"]["kept"] == [10]
    assert rp["recheck_windows"] == 1 and 0 < rp["resample"] < rp["seconds"]
    assert res["machine"]["cpu"] in proc.stdout and res["isa_class"] in proc.stdout
    for what in ("one repair round", "re-sampling (edit mask)", "VAE decode", "re-check"):
        assert re.search(rf"\|\s+{re.escape(what)} \|", proc.stdout), what
