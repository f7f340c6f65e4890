"""After decoding: check every line, repair the lines that failed, rank takes (plan.review).

``review(p, gen, song, recognizer=...)`` runs what :class:`~rhythmflow.planner.review.Review`
decided on each item of a :class:`~rhythmflow.pipeline.Song` and returns the song (repaired
latents and audio) with one :class:`ItemReview` per item and the items' order, best first.

Repair works in latent space: round r samples again with the song's own latents as the edit
reference and the mask over the failing lines' regions (:func:`rhythmflow.lyrics.check.regions`)
plus :data:`~rhythmflow.planner.review.REPAIR_MARGIN_FRAMES` on each side, from the seed
:func:`~rhythmflow.planner.review.repair_seed` (song seed, r). The sampler's edit mode copies
every frame outside the mask from the reference, so those latents stay bit-identical. The
re-sampled lines are checked again; each line keeps the better of its best take so far and the
new one (its own frames: its region and the margin frames no other failing line owns), so a line
never gets worse. Rounds stop when every line passes or after ``repair_rounds``.

The files beside a reviewed song (``<stem>.lrc``, ``<stem>.latents.npy``, the sidecar's
``check``/``repair``/``takes``) are written by :func:`write_sung_lrc`, :func:`write_latents`
and :func:`review_metadata`, for the CLI and the service alike.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rhythmflow import events
from rhythmflow.events import EventSink, emit
from rhythmflow.lyrics.check import CheckReport, Recognizer, SungLine, check_audio, merge, regions
from rhythmflow.planner.core import Plan
from rhythmflow.planner.review import repair_seed

log = logging.getLogger(__name__)


@dataclass
class ItemReview:
    """What the review found for one item (take): the final ``check``, the ``repair`` rounds,
    the ``style_score`` (cosine with the style it was conditioned on)."""

    check: CheckReport | None = None
    repair: dict[str, Any] | None = None
    style_score: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def per(self) -> float | None:
        return None if self.check is None else self.check.per

    @property
    def rank_score(self) -> float:
        """Higher is better: style score (cosine, -1..1) plus 1 - PER, each where known."""
        return ((self.style_score or 0.0) + (0.0 if self.per is None else 1.0 - self.per))


def owners(lines: list[SungLine], failing: list[int], frames: int, margin: int) -> np.ndarray:
    """``[frames]`` int array: the ``.lrc`` line that owns each regenerated frame, 0 elsewhere.
    A failing line owns its region, then the margin frames on each side no other failing line
    owns; the mask is ``owners(...) > 0``."""
    own = np.zeros(frames, dtype=np.int64)
    spans = [(x.line, a, b) for x, (a, b) in zip(lines, regions(lines, frames), strict=True)
             if x.line in failing]
    for line, a, b in spans:
        own[a:b] = line
    for line, a, b in spans:
        for lo, hi in ((max(0, a - margin), a), (b, min(frames, b + margin))):
            part = own[lo:hi]
            part[part == 0] = line
    return own


class _Resampler:
    """Samples the plan's song again on a loaded generator with an edit mask over latents."""

    def __init__(self, p: Plan, gen, on_event: EventSink | None, cancel) -> None:
        from rhythmflow.sampling import SampleControl, SamplerSpec

        self.p, self.gen, self.on_event = p, gen, on_event
        self.track = gen.lyrics(p.lrc, p.duration, p.keep_last_line)
        self.style, self.neg = gen.style(p.request)
        r = p.request
        self.spec = SamplerSpec(solver=r.solver, cfg_strength=r.cfg_strength,
                                guidance_interval=r.guidance_interval,
                                guidance_layout=p.guidance_layout, model_dtype=gen.model.dtype)
        self.control = SampleControl(cancel=cancel)

    def __call__(self, reference: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
        """[1, n, 64] latents: ``reference`` outside ``mask`` [n] bool, new frames inside."""
        from rhythmflow.errors import SamplingCancelled
        from rhythmflow.sampling import prepare_inputs, sample

        dev, dt = self.gen.runtime.device, self.gen.model.dtype
        inputs = prepare_inputs(
            self.gen.model, text=self.track.tokens.to(dev), style=self.style.to(dev, dt),
            negative_style=None if self.neg is None else self.neg.to(dev, dt),
            start_time=self.track.start_time, song_duration=self.track.song_duration,
            reference=reference.to(dev), edit_mask=mask, batch=1)
        result = sample(self.gen.model, inputs, self.p.grid(), self.spec, seed, self.control)
        if not result.completed:
            raise SamplingCancelled(f"repair {result.status} after {result.steps_done} steps",
                                    None, None)
        return result.latent.cpu()


def repair_item(p: Plan, gen, latents: torch.Tensor, audio: torch.Tensor, song_seed: int,
                lines: list[SungLine], report: CheckReport, recognizer: Recognizer,
                resample, on_event: EventSink | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, CheckReport, dict[str, Any]]:
    """Repair one song (latents [1, n, 64], audio [2, s]) whose check is ``report``: the
    module docstring's rounds. Returns (latents, audio, final check, ``{"rounds": [...]}``)."""
    review, sr = p.review, gen.vae.sample_rate
    rounds: list[dict[str, Any]] = []
    for r in range(1, review.repair_rounds + 1):
        failing = [c.line for c in report.lines if c.per > review.repair_threshold]
        if not failing:
            break
        seed = repair_seed(song_seed, r)
        own = owners(lines, failing, latents.shape[1], review.margin_frames)
        mask = torch.from_numpy(own > 0)
        emit(on_event, events.StageStarted("repair", f"round {r}: lines {failing}, "
                                           f"{int(mask.sum())} frames, seed {seed}"))
        t0 = time.perf_counter()
        candidate = resample(latents, mask, seed)
        new_audio = gen.decode(candidate)[0]
        redo = check_audio(new_audio.numpy(), sr, lines, recognizer, only=failing,
                           assets=gen.lyrics_assets)
        before = {c.line: c.per for c in report.lines if c.line in failing}
        kept = [c.line for c in redo.lines if c.per < before[c.line]]
        keep = torch.from_numpy(np.isin(own, kept))[None, :, None]  # [1, n, 1]
        latents = torch.where(keep, candidate, latents)
        report = merge(report, CheckReport(tuple(c for c in redo.lines if c.line in kept)))
        if kept:
            audio = new_audio if set(kept) == set(failing) else gen.decode(latents)[0]
        rounds.append({"round": r, "lines": failing, "seed": seed,
                       "frames": int(mask.sum()),
                       "per_before": {str(k): round(v, 4) for k, v in before.items()},
                       "per_after": {str(c.line): round(c.per, 4) for c in redo.lines},
                       "kept": kept})
        emit(on_event, events.StageFinished("repair", f"round {r}: kept the new take of "
                                            f"lines {kept or 'none'}",
                                            round(time.perf_counter() - t0, 3)))
    passed = all(c.per <= review.repair_threshold for c in report.lines)
    return latents, audio, report, {"rounds": rounds, "threshold": review.repair_threshold,
                                    "passed": passed}


def style_score(audio: torch.Tensor, sample_rate: int, style: torch.Tensor, encoder) -> float:
    """Cosine between the MuQ-MuLan audio embedding of ``audio`` [2, s] (its middle 10 s, as
    the style encoder embeds a reference song) and ``style`` [1, 512]."""
    from rhythmflow.audio.io import resample
    from rhythmflow.style.embed import CLIP_SECONDS, MULAN_SAMPLE_RATE

    mono = audio.float().mean(0, keepdim=True).numpy()
    total = mono.shape[1] / sample_rate
    start = max(0.0, total / 2 - CLIP_SECONDS / 2)
    clip = mono[:, int(start * sample_rate):int((start + CLIP_SECONDS) * sample_rate)]
    wav = torch.from_numpy(np.ascontiguousarray(resample(clip, sample_rate, MULAN_SAMPLE_RATE)))
    emb = encoder.embed_audio(wav.float()).float().reshape(1, -1)
    return float(torch.nn.functional.cosine_similarity(emb, style.float().reshape(1, -1))[0])


def review(p: Plan, gen, song, *, recognizer: Recognizer | None = None, style_encoder=None,
           on_event: EventSink | None = None, cancel=None) -> tuple[Any, list[ItemReview],
                                                                  list[int]]:
    """Run ``p.review`` on every item of ``song``: (song with repaired latents/audio, one
    :class:`ItemReview` per item, item indices best first). ``recognizer`` is needed when the
    plan checks; ``style_encoder`` (with ``embed_audio``) scores takes, None = MuQ-MuLan (a
    missing MuQ-MuLan leaves the style score out, with a warning)."""
    rv, sr = p.review, gen.vae.sample_rate
    lines = [SungLine.from_dict(x) for x in song.metadata.get("lines", [])]
    resample = _Resampler(p, gen, on_event, cancel) if rv.repair_rounds else None
    latents, audio, items = song.latents.clone(), song.audio.clone(), []
    for i in range(len(song)):
        item = ItemReview()
        if rv.check and lines:
            assert recognizer is not None, "the plan checks: give a recognizer"
            t0 = time.perf_counter()
            emit(on_event, events.StageStarted("check", f"transcribing {len(lines)} lines"))
            item.check = check_audio(audio[i].numpy(), sr, lines, recognizer,
                                     assets=gen.lyrics_assets)
            item.seconds["check"] = round(time.perf_counter() - t0, 3)
            emit(on_event, events.StageFinished("check", f"PER {item.check.per:.2f}",
                                                item.seconds["check"]))
            if resample is not None:
                t0 = time.perf_counter()
                new, a, item.check, item.repair = repair_item(
                    p, gen, latents[i:i + 1], audio[i], song.seeds[i], lines, item.check,
                    recognizer, resample, on_event)
                latents[i:i + 1], audio[i] = new, a
                item.seconds["repair"] = round(time.perf_counter() - t0, 3)
        items.append(item)
    if rv.takes > 1:
        _score_styles(p, gen, audio, items, style_encoder, on_event)
    song.latents, song.audio = latents, audio
    order = sorted(range(len(items)), key=lambda k: -items[k].rank_score) if rv.takes > 1 \
        else list(range(len(items)))
    return song, items, order


def _score_styles(p: Plan, gen, audio: torch.Tensor, items: list[ItemReview], encoder,
                  on_event: EventSink | None) -> None:
    from rhythmflow.errors import AssetError

    style, _ = gen.style(p.request)
    if encoder is None:
        from rhythmflow.style.embed import MuQMuLanEncoder

        encoder = MuQMuLanEncoder(device="cpu", assets_dir=gen.assets_dir, offline=gen.offline)
    try:
        for i, item in enumerate(items):
            item.style_score = style_score(audio[i], gen.vae.sample_rate, style, encoder)
    except AssetError as exc:  # MuQ-MuLan not installed (DependencyError) or not fetched
        emit(on_event, events.Warning(f"takes are not scored by style: {exc}"))


# ---- what is written beside a reviewed song (CLI and service alike) --------------------------


def review_metadata(items: list[ItemReview], order: list[int], outputs: list,
                    seeds: list) -> tuple[list[dict], list[dict]]:
    """(per output: its ``check``/``repair`` sidecar entries; the ``takes`` table best first).
    ``outputs``: the files in writing order (best first), each named as the table shows it."""
    per_output = []
    for k in range(len(outputs)):
        item = items[order[k]]
        entry: dict[str, Any] = {}
        if item.check is not None:
            entry["check"] = item.check.to_dict()
        if item.repair is not None:
            entry["repair"] = item.repair
        if item.seconds:
            entry["review_seconds"] = item.seconds
        per_output.append(entry)
    takes = [{"file": str(outputs[k]), "seed": seeds[order[k]],
              "style_score": None if items[order[k]].style_score is None
              else round(items[order[k]].style_score, 4),
              "per": None if items[order[k]].per is None else round(items[order[k]].per, 4)}
             for k in range(len(outputs))]
    return per_output, takes


def latents_path(output) -> Path:
    """``<stem>.latents.npy`` beside ``output``."""
    return Path(output).with_suffix(".latents.npy")


def write_latents(output, latents: torch.Tensor) -> Path:
    """``<stem>.latents.npy`` beside ``output``: the song's latents [n, 64] float32, which
    ``rhythmflow repair`` edits (kept frames stay bit-identical)."""
    import io

    from rhythmflow.audio.io import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, latents.float().cpu().numpy())
    return atomic_write_bytes(latents_path(output), buf.getvalue())


def write_sung_lrc(output, lines: list[dict], source=None) -> Path:
    """Write ``<stem>.lrc`` beside ``output``: the lines the song was conditioned on, one per
    line (after any drop), as the sidecar's ``lines`` number them. Where that is the ``--lrc``
    file itself (``source``), ``<stem>.sung.lrc`` instead: the user's file is never replaced."""
    from rhythmflow.audio.io import atomic_write_bytes
    from rhythmflow.lyrics.check import sung_lrc

    target = Path(output).with_suffix(".lrc")
    if source is not None and target.resolve() == Path(source).resolve():
        target = target.with_suffix(".sung.lrc")
    text = sung_lrc([SungLine.from_dict(x) for x in lines])
    return atomic_write_bytes(target, text.encode("utf-8"))
