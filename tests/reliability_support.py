"""Shared pieces of the reliability tests (issue 14): the tiny official-format checkpoint, tiny
TorchScript VAE, style embedding and LRC of tests/test_cli.py, built into a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rhythmflow.testing import build_tiny_vae, random_dit, save_checkpoint
from tests.test_cli import CFG, LRC


def make_files(d: Path) -> dict[str, Path]:
    """The tiny model files of tests/test_cli.py's ``files`` fixture, built in ``d``."""
    ckpt = save_checkpoint(random_dit(CFG, seed=7), d / "cfm_model.pt")
    vae = build_tiny_vae(d / "vae_model.pt")
    style = d / "style.npy"
    np.save(style, np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32))
    lrc = d / "song.lrc"
    lrc.write_text(LRC, encoding="utf-8")
    return {"ckpt": ckpt, "vae": vae, "style": style, "lrc": lrc, "dir": d}
