"""The Python API driven directly: request → plan → SongGenerator → run, on the session's tiny
checkpoint and TorchScript VAE."""

from __future__ import annotations

import pytest
import torch

from rhythmflow import events
from rhythmflow.errors import AssetError, SamplingCancelled
from rhythmflow.pipeline import SongGenerator, run
from rhythmflow.planner.core import Machine, plan
from rhythmflow.request import GenerationRequest
from tests.conftest import TINY_LRC

MACHINE = Machine(cores=1, memory_available=8 << 30)


@pytest.fixture(scope="module")
def request_(tiny_files) -> GenerationRequest:
    return GenerationRequest(lrc=TINY_LRC, style_embedding_file=str(tiny_files["style"]),
                             checkpoint=str(tiny_files["ckpt"]), vae=str(tiny_files["vae"]),
                             steps=3, seed=11, estimate=False, device="cpu")


@pytest.fixture(scope="module")
def generator(request_) -> SongGenerator:
    return SongGenerator.for_plan(plan(request_, MACHINE))


def test_run_executes_the_plan_and_reports_typed_events(request_, generator):
    p = plan(request_, MACHINE)
    seen: list = []
    song = run(p, generator, seen.append)
    assert all(type(e) in events.TYPES.values() for e in seen)
    assert [e.step for e in seen if isinstance(e, events.SamplingStep)] == [1, 2, 3]
    finished = [e.stage for e in seen if isinstance(e, events.StageFinished)]
    assert finished == ["lyrics", "style", "sample", "decode"]
    assert any(isinstance(e, events.Warning) and "not sung" in e.message for e in seen)
    assert song.latents.shape == (1, p.frames, 64) and song.seeds == [11]
    assert song.metadata["request"] == request_.to_dict()
    assert song.metadata["plan"]["steps"] == 3 and song.metadata["status"] == "completed"


def test_generate_is_plan_plus_run(request_, generator, tiny_files):
    a = run(plan(request_, MACHINE), generator)
    b = generator.generate(TINY_LRC, style=str(tiny_files["style"]), steps=3, seed=11,
                           estimate=False)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.audio, b.audio)


class StopAfterOneStep:
    """An event sink and cancel token in one: cancels once a sampling step was reported."""

    steps = 0

    def __call__(self, e) -> None:
        if isinstance(e, events.SamplingStep):
            self.steps += 1

    def is_set(self) -> bool:
        return self.steps >= 1


def test_cancel_then_resume_is_bit_identical(request_, generator):
    p = plan(request_, MACHINE)
    whole = run(p, generator)

    stop = StopAfterOneStep()
    with pytest.raises(SamplingCancelled) as info:
        run(p, generator, stop, cancel=stop)
    state = info.value.state
    assert state.step == 1
    resumed = run(p, generator, resume_state=state)
    assert torch.equal(resumed.latents, whole.latents)


def test_loading_does_not_change_process_settings(request_):
    before = torch.get_num_threads()
    SongGenerator.for_plan(plan(request_.replace(threads=before + 1), MACHINE))
    assert torch.get_num_threads() == before


def test_each_generator_reads_its_own_lyrics_resources(request_, generator, tmp_path,
                                                       assets_dir, monkeypatch):
    """No process-wide cache decides where the vocabulary comes from: a generator with an empty
    asset folder fails to find it even after another one has loaded it, and the first keeps
    working afterwards."""
    monkeypatch.setenv("RHYTHMFLOW_ASSETS_DIR", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    good = SongGenerator(generator.model, generator.vae, generator.runtime, identity={},
                         assets_dir=assets_dir, offline=True)
    empty = SongGenerator(generator.model, generator.vae, generator.runtime, identity={},
                          assets_dir=tmp_path / "empty-assets", offline=True)
    line = "[00:01.00]Words nobody has sung in this process before\n"
    assert good.lyrics(line, 95.0, keep_last_line=True).placed
    with pytest.raises(AssetError):
        empty.lyrics(line, 95.0, keep_last_line=True)
    assert good.lyrics(line, 95.0, keep_last_line=True).placed


def test_batch_item_is_the_single_song_bit_for_bit(request_, generator):
    """Same seed, same bytes: item 0 of a batch of 2 is the batch-1 song exactly (latents and
    audio), and item 1 is the batch-1 song of seed + 1."""
    one = run(plan(request_, MACHINE), generator)
    two = run(plan(request_.replace(batch=2), MACHINE), generator)
    nxt = run(plan(request_.replace(seed=12), MACHINE), generator)
    assert torch.equal(two.latents[0], one.latents[0]) and torch.equal(two.audio[0], one.audio[0])
    assert torch.equal(two.latents[1], nxt.latents[0]) and torch.equal(two.audio[1], nxt.audio[0])


def test_a_resume_uses_the_layout_its_state_recorded_not_the_new_plans(request_, generator):
    import dataclasses

    split_machine = dataclasses.replace(MACHINE, layout_timings=((2048, 2.0, 1.0),))
    p = plan(request_, split_machine)
    assert p.guidance_layout == "split"
    whole = run(p, generator)
    assert not torch.equal(whole.latents, run(plan(request_, MACHINE), generator).latents)

    stop = StopAfterOneStep()
    with pytest.raises(SamplingCancelled) as info:
        run(p, generator, stop, cancel=stop)
    state = info.value.state
    assert state.settings.guidance_layout == "split"
    later = plan(request_, MACHINE)  # e.g. the probe was re-measured: batched now
    assert later.guidance_layout == "batched"
    resumed = run(later, generator, resume_state=state)
    assert torch.equal(resumed.latents, whole.latents)
    assert resumed.metadata["plan"]["guidance_layout"] == "split"
