"""--takes N: N seeds, every take kept and scored (style cosine with a tiny style encoder, lyric
PER with a scripted recogniser), ranked best first in the sidecar and the file names."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from rhythmflow.cli.main import main
from rhythmflow.lyrics.check import Window
from rhythmflow.pipeline import SongGenerator, run
from rhythmflow.planner.core import plan
from rhythmflow.request import GenerationRequest
from rhythmflow.review import review, style_score
from tests.conftest import TINY_LRC
from tests.test_cli import base_args


class TinyStyleEncoder:
    """embed_audio: a fixed random projection of the clip's coarse energy envelope."""

    def __init__(self) -> None:
        self.proj = torch.randn(64, 512, generator=torch.Generator().manual_seed(3))
        self.calls = []

    def embed_audio(self, wav: torch.Tensor) -> torch.Tensor:
        assert wav.shape[0] == 1 and wav.shape[1] == 240000  # 10 s at 24 kHz, mono
        self.calls.append(wav.shape)
        env = wav.reshape(64, -1).abs().mean(1)
        return torch.nn.functional.normalize(env @ self.proj, dim=0)[None]


def test_style_score_is_the_cosine_with_the_style():
    enc = TinyStyleEncoder()
    audio = torch.randn(2, 44100 * 30, generator=torch.Generator().manual_seed(0))
    own = enc.embed_audio(torch.from_numpy(np.zeros((1, 240000), np.float32)) + 0.5)
    enc.calls.clear()
    score = style_score(audio, 44100, own, enc)
    assert -1.0 <= score <= 1.0 and enc.calls
    mono = audio.mean(0, keepdim=True)
    assert style_score(torch.cat([mono, mono]), 44100, enc.embed_audio(torch.from_numpy(
        _clip(mono))), enc) == pytest.approx(1.0, abs=1e-5)


def _clip(mono: torch.Tensor) -> np.ndarray:
    from rhythmflow.audio.io import resample

    n = mono.shape[1]
    a = int((n / 44100 / 2 - 5) * 44100)
    return resample(mono[:, a:a + 441000].numpy(), 44100, 24000).astype(np.float32)


def test_takes_are_scored_and_ranked_best_first(tiny_files):
    r = GenerationRequest(lrc=TINY_LRC, style_embedding_file=str(tiny_files["style"]),
                          checkpoint=str(tiny_files["ckpt"]), vae=str(tiny_files["vae"]),
                          steps=2, seed=5, takes=3, estimate=False, check=True)
    p = plan(r)
    assert p.request.batch == 3 and p.review.takes == 3 and p.review.check
    gen = SongGenerator.for_plan(p)
    song = run(p, gen)
    hear = {5: "", 6: "Another line", 7: None}  # seed → what line 2 is heard as (None: right)

    def ears(wav: np.ndarray, window: Window) -> str:
        seed = ears.seed
        text = {1: "Hello little song", 2: "Another line of words"}[window.line]
        return text if window.line == 1 or hear[seed] is None else hear[seed]

    class PerTake:  # the recogniser is told nothing about takes: follow the review's order
        def __init__(self):
            self.n = 0

        def __call__(self, wav, window):
            ears.seed = 5 + self.n // 2
            self.n += 1
            return ears(wav, window)

    song, items, order = review(p, gen, song, recognizer=PerTake(),
                                style_encoder=TinyStyleEncoder())
    assert [song.seeds[i] for i in order][0] == 7  # heard right: the best take
    assert all(item.style_score is not None and item.per is not None for item in items)
    scores = [items[i].rank_score for i in order]
    assert scores == sorted(scores, reverse=True)
    assert items[0].per > items[1].per > items[2].per == 0.0


@pytest.mark.slow
def test_generate_takes_writes_every_take_best_first(tiny_files, tmp_path):
    ears = tmp_path / "ears.py"  # mis-hears every line of the first take it hears
    ears.write_text("import pathlib, sys\nstate = pathlib.Path(sys.argv[3])\n"
                    "n = int(state.read_text()) if state.exists() else 0\n"
                    "state.write_text(str(n + 1))\n"
                    "print('zzz' if n < 2 else {'1': 'Hello little song', "
                    "'2': 'Another line of words'}[sys.argv[2]])\n", encoding="utf-8")
    out = tmp_path / "song.wav"
    assert main(base_args(tiny_files, out, "--progress", "none", "--takes", "2",
                          "--asr-command", f"{sys.executable} {ears} {{wav}} {{line}} "
                          f"{tmp_path / 'count'}")) == 0
    first = json.loads((tmp_path / "song_0.json").read_text(encoding="utf-8"))
    second = json.loads((tmp_path / "song_1.json").read_text(encoding="utf-8"))
    assert [t["seed"] for t in first["takes"]] == [12, 11]  # seed 11 was mis-heard
    assert first["takes"][0]["file"] == str(tmp_path / "song_0.wav")
    assert first["takes"][0]["per"] == 0.0 and first["takes"][1]["per"] > 0.5
    assert first["seed"] == 12 and second["seed"] == 11 and first["takes"] == second["takes"]
    assert all(t["style_score"] is None for t in first["takes"])  # no MuQ-MuLan in this venv
    assert (tmp_path / "song_0.lrc").is_file() and (tmp_path / "song_1.latents.npy").is_file()
