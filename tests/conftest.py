"""Shared fixtures. Golden data comes from RHYTHMFLOW_GOLDEN_DIR (default ../shared/golden);
model-release assets from RHYTHMFLOW_ASSETS_DIR (default ../shared/assets)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(os.environ.get("RHYTHMFLOW_GOLDEN_DIR", REPO.parent / "shared" / "golden"))
ASSETS_DIR = Path(os.environ.get("RHYTHMFLOW_ASSETS_DIR", REPO.parent / "shared" / "assets"))

# The asset resolver reads this; tests never touch the network.
os.environ.setdefault("RHYTHMFLOW_ASSETS_DIR", str(ASSETS_DIR))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Checksum markers and style-embedding caches go to a per-session folder, never ~/.cache.
os.environ.setdefault("RHYTHMFLOW_CACHE_DIR", tempfile.mkdtemp(prefix="rhythmflow-test-cache-"))


# tests/mulan/ needs the rhythmflow[mulan] install (.venv-mulan); test_mulan_env.py runs it
# there with RHYTHMFLOW_MULAN_SUITE=1. Elsewhere it is not collected.
collect_ignore = [] if os.environ.get("RHYTHMFLOW_MULAN_SUITE") == "1" else ["mulan"]


def golden_subdir(name: str) -> Path:
    """A golden sub-folder; missing golden data is a failure, never a skip."""
    path = GOLDEN_DIR / name
    if not path.is_dir():
        pytest.fail(f"golden data folder {path} is missing (set RHYTHMFLOW_GOLDEN_DIR)")
    return path


@pytest.fixture(scope="session")
def golden_model_dir() -> Path:
    return golden_subdir("model")


@pytest.fixture(scope="session")
def golden_lyrics_dir() -> Path:
    return golden_subdir("lyrics")


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    if not ASSETS_DIR.is_dir():
        pytest.fail(f"assets folder {ASSETS_DIR} is missing (set RHYTHMFLOW_ASSETS_DIR)")
    return ASSETS_DIR


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    """A tiny random DiT checkpoint in the official format, a tiny TorchScript VAE, a style
    embedding and an LRC file, built once for the whole test session."""
    import numpy as np

    from rhythmflow.testing import build_tiny_vae, random_dit, save_checkpoint

    d = tmp_path_factory.mktemp("tiny")
    cfg = tiny_config()
    style = d / "style.npy"
    np.save(style, np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32))
    lrc = d / "song.lrc"
    lrc.write_text(TINY_LRC, encoding="utf-8")
    return {"ckpt": save_checkpoint(random_dit(cfg, seed=7), d / "cfm_model.pt"),
            "vae": build_tiny_vae(d / "vae_model.pt"), "style": style, "lrc": lrc, "dir": d}


def tiny_config():
    """The architecture of the session's tiny checkpoint (one layer, width 64)."""
    import dataclasses

    from rhythmflow.testing import TINY

    return dataclasses.replace(TINY, depth=1, dim=32 * 2)


TINY_LRC = "[00:01.00]Hello little song\n[00:03.50]Another line of words\n[00:06.00]The end\n"
