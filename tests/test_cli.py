"""End-to-end command-line runs on a tiny checkpoint in the official format and a tiny
TorchScript VAE, both built here. Real espeak-ng, real files, real subprocesses."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rhythmflow import errors
from rhythmflow.cli.main import main
from rhythmflow.testing import random_dit, save_checkpoint
from tests.conftest import TINY_LRC as LRC
from tests.conftest import tiny_config

REPO = Path(__file__).resolve().parents[1]
CFG = tiny_config()


@pytest.fixture(scope="module")
def files(tiny_files):
    return tiny_files


def base_args(files, out: Path, *extra: str) -> list[str]:
    return ["generate", "--lrc", str(files["lrc"]), "--style-embedding", str(files["style"]),
            "--checkpoint", str(files["ckpt"]), "--vae", str(files["vae"]), "--steps", "3",
            "--seed", "11", "--skip-estimate", "-o", str(out), *extra]


def run_cli(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "rhythmflow", *args], capture_output=True,
                          text=True, env=env, timeout=300, **kw)


def test_generate_writes_song_and_sidecar(files, tmp_path):
    out = tmp_path / "song.wav"
    assert main(base_args(files, out, "--progress", "none")) == 0
    data, sr = sf.read(out, always_2d=True)
    assert sr == 44100 and data.shape == (2048 * 2048, 2)
    assert np.abs(data).max() > 0.9  # peak-normalised like the original
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["seed"] == 11 and meta["settings"]["steps"] == 3
    assert meta["model"]["config"]["depth"] == 1 and meta["status"] == "completed"
    assert {"load", "lyrics", "style", "sample", "decode"} <= set(meta["timings"])
    assert [d["reason"] for d in meta["lyrics"]["dropped"]] and meta["lyrics"]["placed"] == 2
    # the fixed VAE window geometry the bytes depend on (never free memory or batch size)
    assert meta["vae_decode"] == {"chunk": 256, "overlap": 32, "per_item": True,
                                  "decoder": "torchscript"}  # the tiny VAE is not Oobleck


def test_batch_writes_every_song_and_item_matches_single_run(files, tmp_path):
    single, multi = tmp_path / "one.wav", tmp_path / "many.flac"
    assert main(base_args(files, single, "--progress", "none")) == 0
    assert main(base_args(files, multi, "--progress", "none", "--batch", "2")) == 0
    a, _ = sf.read(single)
    b0, _ = sf.read(tmp_path / "many_0.flac")
    b1, _ = sf.read(tmp_path / "many_1.flac")
    # seed + 0: the batch size does not change a song, bit for bit
    assert np.array_equal(a, b0)
    assert not np.array_equal(b0, b1)
    assert json.loads((tmp_path / "many_1.json").read_text())["seed"] == 12


@pytest.mark.slow
def test_progress_json_events_in_order(files, tmp_path):
    proc = run_cli(base_args(files, tmp_path / "s.wav", "--progress", "json"))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    stages = [e["stage"] for e in events if e["event"] == "stage_started"]
    order = [s for i, s in enumerate(stages) if s not in stages[:i]]
    assert order == ["load", "sample", "decode", "write"]  # lyrics/style report when done
    done = [e["stage"] for e in events if e["event"] == "stage_finished"]
    assert done == ["load", "lyrics", "style", "sample", "decode"]  # --skip-estimate
    steps = [e for e in events if e["event"] == "sampling_step"]
    assert [e["step"] for e in steps] == [1, 2, 3] and all(e["total"] == 3 for e in steps)
    assert steps[-1]["eta"] == 0 and all(e["elapsed"] >= 0 for e in steps)
    assert any(e["event"] == "decode_chunk" for e in events)
    assert all(line.startswith("{") for line in proc.stdout.splitlines())
    assert events[-1]["event"] == "result" and events[-1]["status"] == "completed"
    assert events[-1]["outputs"] == [str(tmp_path / "s.wav")] and events[-1]["seeds"] == [11]


@pytest.mark.slow
def test_timeout_saves_state_and_resume_finishes_identically(files, tmp_path):
    ref = tmp_path / "ref.wav"
    assert main(base_args(files, ref, "--progress", "none")) == 0
    out = tmp_path / "song.wav"
    state = tmp_path / "song.resume.pt"
    proc = run_cli(base_args(files, out, "--timeout", "0.001"))
    assert proc.returncode == errors.EXIT_TIMEOUT, proc.stderr
    assert "timeout" in proc.stderr and f"--resume {state}" in proc.stderr
    assert state.is_file() and not out.exists()
    assert main(base_args(files, out, "--progress", "none", "--resume", str(state))) == 0
    assert np.array_equal(sf.read(out)[0], sf.read(ref)[0])
    assert not state.exists()  # used up


@pytest.mark.slow
def test_ctrl_c_mid_run_saves_state_then_resume_equals_uninterrupted(files, tmp_path):
    ref = tmp_path / "ref.wav"
    assert main(base_args(files, ref, "--progress", "none")) == 0
    out, state = tmp_path / "song.wav", tmp_path / "st.pt"
    args = base_args(files, out, "--progress", "json", "--save-state", str(state))
    proc = subprocess.Popen([sys.executable, "-m", "rhythmflow", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if '"sampling_step"' in line and '"step": 1' in line:
            proc.send_signal(signal.SIGINT)
            break
    proc.stdout.read()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == errors.EXIT_CANCELLED, stderr
    assert state.is_file() and not out.exists() and "cancelled" in stderr
    assert main(base_args(files, out, "--progress", "none", "--resume", str(state))) == 0
    assert np.array_equal(sf.read(out)[0], sf.read(ref)[0])


@pytest.mark.slow
def test_seed_compatible_command_line(files, tmp_path):
    outdir = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "infer.infer", "--lrc-path", str(files["lrc"]), "--steps", "2",
         "--audio-length", "95", "--timeout", "1800", "--output-dir", str(outdir),
         "--style-embedding", str(files["style"]), "--checkpoint", str(files["ckpt"]),
         "--vae", str(files["vae"]), "--skip-estimate", "--progress", "none"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (outdir / "output.wav").is_file() and (outdir / "output.json").is_file()


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"--lrc": "missing.lrc"}, errors.EXIT_USAGE, "no such file|does not exist"),
        ({"lrc_text": "[00:01.00]ok\n[00:75.00]bad seconds\n"}, errors.EXIT_USAGE, "line 2"),
        ({"--duration": "120"}, errors.EXIT_USAGE, "base models generate exactly 95 s"),
        ({"--steps": "0"}, errors.EXIT_USAGE, "--steps: must be between 1 and"),
        ({"--solver": "magic"}, errors.EXIT_USAGE, "magic"),
        ({"-o": "no/such/folder/x.wav"}, errors.EXIT_USAGE, "does not exist"),
        ({"--checkpoint": "vae"}, errors.EXIT_USAGE, "not a PyTorch checkpoint|does not match|not a DiffRhythm"),
    ],
)
def test_bad_input_gives_clear_error_and_writes_nothing(files, tmp_path, change, code, message,
                                                        capsys):
    out = tmp_path / "x.wav"
    args = base_args(files, out, "--progress", "none")
    for flag, value in change.items():
        if flag == "lrc_text":
            bad = tmp_path / "bad.lrc"
            bad.write_text(value, encoding="utf-8")
            args[args.index("--lrc") + 1] = str(bad)
        elif flag in args:
            target = str(files[value]) if value in files else value
            args[args.index(flag) + 1] = target if flag != "-o" else str(tmp_path / value)
        else:
            args += [flag, value]
    assert main(args) == code
    err = capsys.readouterr().err
    import re

    assert re.search(message, err), err
    assert not list(tmp_path.glob("*.wav")) and not list(tmp_path.glob("*.json"))


def test_unknown_model_is_usage_error(capsys):
    assert main(["generate", "--style-prompt", "pop", "--model", "v9"]) == errors.EXIT_USAGE
    assert "invalid choice" in capsys.readouterr().err


def test_offline_without_assets_is_asset_error(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("RHYTHMFLOW_ASSETS_DIR", str(tmp_path / "empty"))
    rc = main(["generate", "--lrc", str(files["lrc"]), "--style-embedding", str(files["style"]),
               "--model", "base", "--offline", "--skip-estimate", "-o", str(tmp_path / "o.wav")])
    assert rc == errors.EXIT_ASSET
    err = capsys.readouterr().err
    assert "ASLP-lab/DiffRhythm-1_2" in err and "cfm_model.pt" in err and "fetch" in err


def test_insufficient_memory_is_refused_before_loading(files, tmp_path, monkeypatch, capsys):
    import rhythmflow.machine as planning

    monkeypatch.setattr(planning, "_detect",  # a machine with 1 GB free
                        lambda measure, threads: planning.Machine(memory_available=1 << 30))
    rc = main(["generate", "--lrc", str(files["lrc"]), "--style-prompt", "pop", "--model", "base",
               "--offline", "-o", str(tmp_path / "o.wav")])
    assert rc == errors.EXIT_RESOURCES
    err = capsys.readouterr().err
    assert "not enough memory" in err and "--quantize int8" in err


def test_plan_prints_json_and_loads_nothing(files, tmp_path, capsys):
    out = tmp_path / "o.wav"
    assert main(base_args(files, out, "--plan", "--json", "--time-budget", "100000")) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["steps"] == 3 and p["seed"] == 11 and p["frames"] == 2048
    assert p["grid"] == [0.0, 0.33333334, 0.66666663, 1.0]
    assert p["request"]["checkpoint"] == str(files["ckpt"]) and p["runtime_class"]
    assert set(p["estimate"]) >= {"load", "lyrics", "style", "sampling", "decode", "total"}
    assert not out.exists()
    assert main(base_args(files, out, "--plan")) == 0
    table = capsys.readouterr().out
    assert "sampler" in table and "3 euler steps" in table and "memory" in table


@pytest.fixture(scope="module")
def ref_song(files):
    path = files["dir"] / "reference.wav"
    rng = np.random.default_rng(3)
    sf.write(path, 0.3 * rng.standard_normal((96 * 44100, 2)).astype(np.float32), 44100)
    return path


def test_edit_mode_keeps_reference_frames(files, ref_song, tmp_path):
    import torch

    from rhythmflow.pipeline import SongGenerator
    from rhythmflow.vae.reference import reference_latents

    gen = SongGenerator.from_pretrained(files["ckpt"], vae=files["vae"], device="cpu")
    song = gen.generate(LRC, style=str(files["style"]), steps=2, seed=5, estimate=False,
                        ref_song=ref_song, edit_segments="[[10, 20], [80, -1]]")
    ref = reference_latents(ref_song, gen.vae, generator=torch.Generator().manual_seed(5))[:, :2048]
    frames = torch.arange(2048)
    regenerate = ((frames >= int(10 * 44100 / 2048)) & (frames < int(20 * 44100 / 2048))) | (
        frames >= int(80 * 44100 / 2048))
    assert torch.equal(song.latents[0, ~regenerate], ref[0, ~regenerate])
    assert not torch.allclose(song.latents[0, regenerate], ref[0, regenerate])
    assert song.metadata["settings"]["edit_segments"] == ((10.0, 20.0), (80.0, -1.0))


@pytest.mark.parametrize(("segments", "message"), [
    ("[[20, 10]]", "segment"), ("not json", "segment"), ("[]", "empty|segment"),
    ("[[0, 10], [5, 15]]", "overlap")])
def test_bad_edit_segments(files, ref_song, tmp_path, capsys, segments, message):
    out = tmp_path / "e.wav"
    rc = main(base_args(files, out, "--progress", "none", "--edit", "--ref-song", str(ref_song),
                        "--edit-segments", segments))
    assert rc == errors.EXIT_USAGE
    import re

    assert re.search(message, capsys.readouterr().err, re.I)
    assert not out.exists()


def test_edit_needs_reference_and_segments(files, tmp_path, capsys):
    assert main(base_args(files, tmp_path / "e.wav", "--edit")) == errors.EXIT_USAGE
    assert "--ref-song" in capsys.readouterr().err


def test_fetch_offline_verifies_local_assets(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    rc = main(["fetch", "--model", "base", "--offline", "--assets-dir", str(tmp_path / "none")])
    assert rc == errors.EXIT_ASSET
    out = capsys.readouterr().out
    assert "MISSING" in out and "cfm_model.pt" in out


def test_nan_weights_stop_with_numerical_error(files, tmp_path, capsys):
    import torch

    model = random_dit(CFG, seed=1)
    with torch.no_grad():
        model.proj_out.bias[0] = float("nan")
    ckpt = save_checkpoint(model, tmp_path / "nan.pt")
    args = base_args(files, tmp_path / "n.wav", "--progress", "none")
    args[args.index("--checkpoint") + 1] = str(ckpt)
    assert main(args) == errors.EXIT_NUMERICAL
    assert "NaN" in capsys.readouterr().err
    assert not (tmp_path / "n.wav").exists()


def test_style_prompt_without_the_mulan_files_says_how_to_fetch(files, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.setenv("RHYTHMFLOW_CACHE_DIR", str(tmp_path / "cache"))  # no cached embedding
    args = base_args(files, tmp_path / "p.wav", "--progress", "none", "--offline")
    i = args.index("--style-embedding")
    args[i:i + 2] = ["--style-prompt", "jazzy nightclub vibe"]
    assert main(args) == errors.EXIT_ASSET
    err = capsys.readouterr().err
    assert "OpenMuQ/MuQ-MuLan-large/pytorch_model.bin" in err and "rhythmflow fetch" in err


def test_quantize_int8_runs_and_is_recorded(files, tmp_path):
    out = tmp_path / "q.wav"
    assert main(base_args(files, out, "--progress", "none", "--quantize", "int8")) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["model"]["quantize"] == "int8"


def test_quantize_needs_float32(files, tmp_path, capsys):
    rc = main(base_args(files, tmp_path / "q.wav", "--quantize", "int8", "--dtype", "bfloat16"))
    assert rc == errors.EXIT_USAGE
    assert "float32" in capsys.readouterr().err


def test_output_formats_and_loudness(files, tmp_path):
    from rhythmflow.audio.io import integrated_loudness

    out = tmp_path / "hi.wav"
    assert main(base_args(files, out, "--progress", "none", "--sample-format", "int24",
                          "--loudness", "-20")) == 0
    info = sf.info(out)
    assert info.subtype == "PCM_24"
    data, sr = sf.read(out, always_2d=True)
    assert abs(integrated_loudness(data.T, sr) - (-20)) < 0.5
    mp3 = tmp_path / "song.mp3"
    assert main(base_args(files, mp3, "--progress", "none")) == 0
    assert sf.info(mp3).format == "MP3" and mp3.with_suffix(".json").is_file()


def test_anytime_timeout_still_writes_a_song(files, tmp_path):
    out = tmp_path / "a.wav"
    assert main(base_args(files, out, "--progress", "none", "--timeout", "0.001",
                          "--anytime")) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["settings"]["anytime"] is True and meta["status"] == "timeout"
    assert sf.info(out).frames == 2048 * 2048


def test_instrumental_without_lyrics(files, tmp_path):
    out = tmp_path / "inst.wav"
    args = base_args(files, out, "--progress", "none")
    i = args.index("--lrc")
    del args[i:i + 2]
    assert main(args) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["lyrics"]["placed"] == 0 and sf.info(out).frames == 2048 * 2048


def test_full_model_song_length_follows_duration(files, tmp_path):
    full = save_checkpoint(random_dit(dataclasses.replace(CFG, max_frames=6144), seed=2),
                           tmp_path / "full.pt")
    out = tmp_path / "long.wav"
    args = base_args(files, out, "--progress", "none", "--duration", "150", "--steps", "1")
    args[args.index("--checkpoint") + 1] = str(full)
    args.remove("3")  # the --steps 3 of base_args; the later --steps 1 is used
    args.remove("--steps")
    assert main(args) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["settings"]["frames"] == int(150 * 44100 / 2048) == 3229
    assert meta["lyrics"]["placed"] == 3  # no last-line rule for full models
    assert sf.info(out).frames == 3229 * 2048
    assert main(args[:-2] + ["--duration", "300"]) == errors.EXIT_USAGE


def test_in_process_run_restores_signal_handlers(tmp_path):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(["generate", "--style-prompt", "x", "--lrc", str(tmp_path / "none.lrc")]) == 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
