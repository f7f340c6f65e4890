"""Messages (issue 14): a missing-asset error is one short block listing every missing file and
the one command that fetches them all; Hub retry lines are printed once; library text never
reaches the user; ``diagnose --smoke`` never needs the Hub and ``diagnose`` takes --assets-dir /
--offline; ``python -m infer.infer`` leaves no output folder behind when it fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rhythmflow import errors
from rhythmflow.cli.main import main
from tests.reliability_support import make_files
from tests.test_cli import base_args

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("messages-cli"))


def _env(**extra) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def test_missing_assets_are_one_block_naming_every_file(files, tmp_path, monkeypatch, capsys):
    import rhythmflow.machine as planning

    monkeypatch.setattr(planning, "_detect",  # plenty of memory: not the point here
                        lambda measure, threads: planning.Machine(memory_available=1 << 40))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    (tmp_path / "assets" / "ASLP-lab" / "DiffRhythm-vae").mkdir(parents=True)
    build = (tmp_path / "assets" / "ASLP-lab" / "DiffRhythm-vae" / "vae_model.pt")
    build.write_bytes(b"present")  # one file is there: it must not be listed
    rc = main(["generate", "--lrc", str(files["lrc"]), "--style-embedding", str(files["style"]),
               "--model", "full", "--offline", "--skip-estimate", "--assets-dir",
               str(tmp_path / "assets"), "-o", str(tmp_path / "o.wav")])
    assert rc == errors.EXIT_ASSET
    err = capsys.readouterr().err
    listed = [line.strip() for line in err.splitlines() if line.startswith("  ")]
    assert listed == ["ASLP-lab/DiffRhythm-1_2-full/cfm_model.pt (2.2 GB)",
                      "ASLP-lab/DiffRhythm/diffrhythm/g2p/g2p/vocab.json (small)",
                      "ASLP-lab/DiffRhythm/src/negative_prompt.npy (small)"]
    assert err.count("rhythmflow fetch --model full") == 1
    assert max(len(line) for line in err.splitlines()) < 200


@pytest.mark.slow
def test_hub_retry_lines_are_printed_once(tmp_path):
    # The real hub logger and its own handler; the download itself is replaced by one that
    # logs a retry the way huggingface_hub's http_backoff does, then fails to connect.
    code = textwrap.dedent("""
        import huggingface_hub
        from huggingface_hub.utils import logging as hub_logging
        from rhythmflow.cli.console import setup_logging
        from rhythmflow import assets
        from rhythmflow.errors import AssetError

        def download(*args, **kwargs):
            hub_logging.get_logger("huggingface_hub.utils._http").warning(
                "Retrying in 1s [Retry 1/5].")
            raise ConnectionRefusedError(111, "Connection refused")

        huggingface_hub.hf_hub_download = download
        setup_logging(0)
        try:
            assets.resolve("vae", offline=False)
        except AssetError as exc:
            print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=_env(HF_HUB_CACHE=str(tmp_path / "hf"),
                                                RHYTHMFLOW_ASSETS_DIR=str(tmp_path / "none")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("Retrying in 1s [Retry 1/5].") == 1, proc.stderr
    assert "(Connection refused; check the network" in proc.stdout
    assert "rhythmflow fetch" in proc.stdout


def _damaged(files, tmp_path: Path) -> dict[str, Path]:
    vae = tmp_path / "vae.pt"
    vae.write_bytes(files["vae"].read_bytes()[:-100])
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(files["ckpt"].read_bytes()[:5000])
    audio = tmp_path / "ref.wav"
    audio.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(40))
    state = tmp_path / "st.pt"
    state.write_bytes(b"PK\x03\x04" + bytes(100))
    return {"--vae": vae, "--checkpoint": ckpt, "--style-audio": audio, "--resume": state}


@pytest.mark.parametrize("flag", ["--vae", "--checkpoint", "--style-audio", "--resume"])
def test_library_text_never_reaches_the_user(files, tmp_path, capsys, flag):
    bad = _damaged(files, tmp_path)[flag]
    args = base_args(files, tmp_path / "o.wav", "--progress", "none")
    if flag == "--style-audio":
        i = args.index("--style-embedding")
        args[i:i + 2] = [flag, str(bad)]
    elif flag in args:
        args[args.index(flag) + 1] = str(bad)
    else:
        args += [flag, str(bad)]
    assert main(args) == errors.EXIT_USAGE
    err = capsys.readouterr().err
    assert str(bad) in err
    for library_text in ("PytorchStreamReader", "miniz", "enforce fail", "Error opening",
                         "Traceback", "(101)", "weights_only"):
        assert library_text not in err, err


@pytest.mark.slow
def test_diagnose_smoke_never_needs_the_hub(tmp_path):
    env = _env(HF_HUB_CACHE=str(tmp_path / "hf"), RHYTHMFLOW_ASSETS_DIR=str(tmp_path / "none"),
               HF_ENDPOINT="http://127.0.0.1:9")  # any Hub request would be refused
    env.pop("HF_HUB_OFFLINE", None)
    args = [sys.executable, "-m", "rhythmflow", "diagnose", "--smoke", "--json",
            "--bench-frames", "0"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Retrying" not in proc.stderr and "127.0.0.1" not in proc.stderr
    smoke = json.loads(proc.stdout)["smoke"]
    assert smoke["ok"] and smoke["lyrics"].startswith("skipped (instrumental)")


@pytest.mark.slow
def test_diagnose_smoke_sings_with_assets_dir_offline(assets_dir, tmp_path):
    env = _env(HF_HUB_CACHE=str(tmp_path / "hf"), RHYTHMFLOW_ASSETS_DIR=str(tmp_path / "none"))
    args = [sys.executable, "-m", "rhythmflow", "diagnose", "--smoke", "--json",
            "--bench-frames", "0", "--assets-dir", str(assets_dir), "--offline"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["smoke"]["lyrics"] == "sung"


@pytest.mark.slow
def test_failed_infer_shim_leaves_no_output_folder(files, tmp_path):
    style = tmp_path / "style.npy"
    np.save(style, np.zeros((1, 512), np.float32))
    proc = subprocess.run(
        [sys.executable, "-m", "infer.infer", "--lrc-path", str(tmp_path / "missing.lrc"),
         "--style-embedding", str(style)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=_env(PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'src'}"))
    assert proc.returncode == errors.EXIT_USAGE, proc.stderr
    assert "missing.lrc" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["style.npy"]  # no infer/example/output


def test_g2p_library_failure_is_reported_in_plain_words(monkeypatch):
    # A failure inside the G2P library (here the kind of IndexError a tokenizer raises on odd
    # input); the user sees the line and what to do, not the library's text.
    from rhythmflow.errors import LyricsError
    from rhythmflow.lyrics import g2p
    from rhythmflow.lyrics.g2p import english

    def broken(text):
        raise IndexError("pop from empty list")

    monkeypatch.setattr(english, "english_phonemes", broken)
    g2p.clear_cache()
    try:
        with pytest.raises(LyricsError) as info:
            g2p.g2p_tokens("odd words here")
    finally:
        g2p.clear_cache()
    msg = str(info.value)
    assert "pop from empty list" not in msg
    assert "unexpected IndexError in the G2P" in msg and "rephrase or remove" in msg
