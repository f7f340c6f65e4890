"""SongGenerator (the loaded weights and the stages) and ``run(plan, generator)``: the wiring.

request → :func:`~rhythmflow.planner.core.plan` → :func:`run`: LRC → LyricsTrack → style embedding →
SamplingInputs → ``sample`` → latents → VAE → audio. Every decision was made by the plan;
``run`` only executes it and reports :mod:`rhythmflow.events` to one ``on_event`` callable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rhythmflow import __version__, events
from rhythmflow.errors import RhythmflowError, SamplingCancelled, SamplingTimeout, UsageError
from rhythmflow.events import EventSink, emit
from rhythmflow.lyrics.resources import LyricsAssets
from rhythmflow.planner.core import Plan, plan
from rhythmflow.planner.runtime import Runtime
from rhythmflow.request import GenerationRequest
from rhythmflow.specs import DiTConfig

log = logging.getLogger(__name__)


@dataclass
class Song:
    """Generated audio. audio [b, 2, samples] float32, latents [b, n, 64]; one row per seed."""

    audio: torch.Tensor
    sample_rate: int
    latents: torch.Tensor
    seeds: list[int | None]
    metadata: dict[str, Any] = field(default_factory=dict)
    state: Any = None  # the finished SamplerState: saved if writing the song fails (resume decodes)

    def __len__(self) -> int:
        return self.audio.shape[0]


def _fingerprint(*tensors: torch.Tensor, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class SongGenerator:
    """A loaded DiT + VAE on a runtime, and the stages that use them. Holds nothing else."""

    def __init__(self, model, vae, runtime: Runtime, *, identity: dict[str, Any],
                 assets_dir: str | os.PathLike | None = None, offline: bool | None = None,
                 load_seconds: float = 0.0) -> None:
        self.model, self.vae, self.runtime = model, vae, runtime
        self.identity, self.assets_dir, self.offline = identity, assets_dir, offline
        self.lyrics_assets = LyricsAssets.of(assets_dir, offline)
        self.load_seconds = load_seconds

    @property
    def config(self) -> DiTConfig:
        return self.model.config

    @classmethod
    def for_plan(cls, p: Plan, *, assets_dir: str | os.PathLike | None = None,
                 offline: bool | None = None, on_event: EventSink | None = None) -> SongGenerator:
        """Load what plan ``p`` needs (its model, VAE, runtime, quantization)."""
        r = p.request
        return cls.load(r.checkpoint or p.model, p.runtime, config=p.config,
                         vae=r.vae, assets_dir=assets_dir, offline=offline,
                         quantize=r.quantize, chunked=r.chunked, on_event=on_event)

    @classmethod
    def from_pretrained(
        cls, model: str | os.PathLike = "v1.2-base", *,
        model_config: str | os.PathLike | None = None, vae: str | os.PathLike | None = None,
        device: str = "auto", dtype: str = "auto", threads: int | None = None,
        assets_dir: str | os.PathLike | None = None, offline: bool | None = None,
        quantize: str = "none", chunked: bool = True, on_event: EventSink | None = None,
        vae_dtype: str = "auto",
    ) -> SongGenerator:
        """Load an official model by name (``v1.2-base``, ``base``, ``full`` …) or a checkpoint
        path (architecture read from the file), and the VAE, onto the resolved device/dtype.
        ``dtype="auto"`` decides as the CLI does, by measurement: the machine probe (cached per
        machine, a few seconds the first time) picks the CPU dtype, and with ``vae_dtype="auto"``
        the VAE decoder's (``--vae-dtype``). Process-wide settings
        (threads) are left alone: call :func:`rhythmflow.planner.runtime.configure_process` once from
        your entry point if you want them."""
        from rhythmflow.planner.core import Machine, runtime_for
        from rhythmflow.planner.runtime import DTYPES

        # the probe decides auto dtypes (the VAE's only follows a low-precision DiT)
        measure = dtype == "auto" or (vae_dtype == "auto" and DTYPES.get(dtype) != "float32")
        runtime = runtime_for(Machine.detect(measure=measure, threads=threads), device, dtype,
                              threads, vae_dtype)
        for reason in runtime.reasons:
            log.info("%s", reason)
        return cls.load(model, runtime, config=model_config, vae=vae, assets_dir=assets_dir,
                         offline=offline, quantize=quantize, chunked=chunked, on_event=on_event)

    @classmethod
    def load(cls, model: str | os.PathLike, runtime: Runtime, *, config=None, vae=None,
             assets_dir: str | os.PathLike | None = None, offline: bool | None = None,
             quantize: str = "none", chunked: bool = True,
             on_event: EventSink | None = None) -> SongGenerator:
        """Load ``model`` (an official name or a checkpoint path) and the VAE onto ``runtime``
        (e.g. :func:`rhythmflow.planner.core.runtime_for` on a measured :class:`Machine`)."""
        from rhythmflow.assets import resolve
        from rhythmflow.model import load_checkpoint
        from rhythmflow.specs import get_spec
        from rhythmflow.vae.codec import load_vae

        t0 = time.perf_counter()
        name = str(model)
        if Path(name).suffix in (".pt", ".safetensors", ".bin", ".pth") or Path(name).exists():
            path, ident = Path(name), {"checkpoint": str(Path(name).resolve())}
        else:
            key = get_spec(name).name
            path = resolve(f"dit-{key}", assets_dir=assets_dir, offline=offline)
            ident = {"model": key, "checkpoint": str(path)}
        emit(on_event, events.StageStarted("load", f"loading {path.name} ({runtime.describe()})"))
        dit = load_checkpoint(path, dtype=runtime.torch_dtype, device=runtime.device,
                              config=config)
        if quantize == "int8":
            from rhythmflow.machine.process import release_freed_memory
            from rhythmflow.model.quantize import quantize_int8

            dit = quantize_int8(dit, kernel=runtime.int8_kernel)
            release_freed_memory()  # give the replaced float32 weights back to the OS
        elif quantize != "none":
            raise UsageError(f"quantize: unknown value {quantize!r}; choose none or int8",
                             field="quantize")
        ident.update(config=dit.config.to_dict(), quantize=quantize, dtype=runtime.dtype,
                     rhythmflow=__version__)
        vae_model = load_vae(vae, device=runtime.vae_device, assets_dir=assets_dir,
                             offline=offline, chunked=chunked,
                             residual_dtype=getattr(torch, runtime.vae_dtype))
        seconds = time.perf_counter() - t0
        emit(on_event, events.StageFinished("load", "model and VAE ready", round(seconds, 3)))
        return cls(dit, vae_model, runtime, identity=ident, assets_dir=assets_dir,
                   offline=offline, load_seconds=seconds)

    # ---- stages ---------------------------------------------------------------------------

    def lyrics(self, lrc: str, duration: float, keep_last_line: bool = False):
        """LRC text → LyricsTrack, with this generator's G2P resources."""
        from rhythmflow.lyrics import lrc_to_track

        return lrc_to_track(lrc, max_frames=self.config.max_frames, audio_length=duration,
                            keep_last_line=keep_last_line, assets=self.lyrics_assets)

    def style(self, r: GenerationRequest) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(style [1, 512], negative style [1, 512] or None without guidance) of a request."""
        from rhythmflow.style.embed import MuQMuLanEncoder, negative_style, style_embedding

        if r.style_embedding is not None:
            style = torch.tensor(r.style_embedding, dtype=torch.float32).reshape(1, -1)
        elif r.style_embedding_file is not None:
            style = style_embedding(npy=r.style_embedding_file)
        elif r.style_prompt is not None or r.style_audio is not None:
            encoder = MuQMuLanEncoder(  # loads nothing until used (a cache hit never loads it)
                device=self.runtime.device if self.runtime.kind == "cuda" else "cpu",
                assets_dir=self.assets_dir, offline=self.offline)
            style = (style_embedding(audio_path=r.style_audio, encoder=encoder)
                     if r.style_audio is not None
                     else style_embedding(prompt=r.style_prompt, encoder=encoder))
        else:  # the plan refused a request without a style (GenerationRequest.require_style)
            raise AssertionError("a planned request names a style")
        if r.cfg_strength <= 0:
            return style, None
        if r.negative_style_embedding is not None:
            neg = torch.tensor(r.negative_style_embedding, dtype=torch.float32).reshape(1, -1)
        else:
            neg = negative_style(r.negative_style, assets_dir=self.assets_dir,
                                 offline=self.offline)
        return style, neg

    def reference(self, ref_song: str | os.PathLike, edit_frames, frames: int, seed: int):
        """Edit mode: the reference latent [1, n, 64] (VAE posterior sample drawn with ``seed``)
        and the generate-mask [n] (True = regenerate) for the plan's ``edit_frames``."""
        from rhythmflow.sampling.edit import plan_edit
        from rhythmflow.vae.reference import reference_latents

        gen = torch.Generator(device=self.runtime.vae_device).manual_seed(seed)
        edit = plan_edit(reference_latents(ref_song, self.vae, generator=gen), edit_frames,
                         frames)
        return edit.reference, edit.mask

    def decode(self, latents: torch.Tensor, on_event: EventSink | None = None,
               cancel=None) -> torch.Tensor:
        """Latents [b, n, 64] → audio [b, 2, s]; a set ``cancel`` stops after the current chunk
        (StoppedAfterSampling)."""
        from rhythmflow.sampling.keep import decode_cancelled

        t0 = time.perf_counter()

        def on_chunk(done: int, total: int) -> None:
            el = time.perf_counter() - t0
            emit(on_event, events.DecodeChunk(done, total, el,
                                              el / done * (total - done) if done else None))
            decode_cancelled(cancel, done, total)

        audio = self.vae.decode(latents.transpose(1, 2).contiguous(), on_chunk=on_chunk)
        return audio.float().cpu()

    # ---- the Python API's one-call form -----------------------------------------------------

    def generate(self, lrc: str = "", *, style: torch.Tensor | str | os.PathLike | None = None,
                 negative_style: str | os.PathLike | torch.Tensor | None = None,
                 on_progress: EventSink | None = None, cancel=None,
                 resume: str | os.PathLike | None = None,
                 save_state: str | os.PathLike | None = None, **fields: Any) -> Song:
        """Plan and run a request on this generator. ``style``: a tensor, a text prompt or a
        .npy path; other keyword arguments are :class:`GenerationRequest` fields (``steps``,
        ``seed``, ``duration``, ``style_audio``, ``edit_segments`` …)."""
        from rhythmflow.sampling import SamplerState

        if isinstance(style, torch.Tensor):
            fields["style_embedding"] = tuple(style.float().reshape(-1).tolist())
        elif isinstance(style, Path) or (isinstance(style, str) and style.endswith(".npy")):
            fields["style_embedding_file"] = str(style)
        elif style is not None:
            fields["style_prompt"] = style
        if isinstance(negative_style, torch.Tensor):
            fields["negative_style_embedding"] = tuple(negative_style.float().reshape(-1).tolist())
        elif negative_style is not None:
            fields["negative_style"] = str(negative_style)
        for key in ("ref_song",):
            if fields.get(key) is not None:
                fields[key] = str(fields[key])
        state = SamplerState.load(resume) if resume is not None else None
        if state is not None and fields.get("seed") is None:
            fields["seed"] = state.settings.seed
        request = GenerationRequest(lrc=lrc, **fields)
        from rhythmflow.planner.core import Machine

        # the cached probe (measured on first use): the guidance layout and per-forward
        # overhead are those the CLI plans with on this machine
        p = plan(request, Machine.detect(threads=self.runtime.threads), config=self.config,
                 runtime=self.runtime, lyrics_assets=self.lyrics_assets)
        return run(p, self, on_progress, cancel=cancel, resume_state=state,
                   save_state=save_state)


def run(p: Plan, gen: SongGenerator, on_event: EventSink | None = None, *, cancel=None,
        resume_state=None, save_state: str | os.PathLike | None = None,
        checkpoint: str | os.PathLike | None = None, on_sample=None) -> Song:
    """Execute plan ``p`` on a loaded generator. Raises SamplingTimeout / SamplingCancelled
    (with the state saved to ``save_state`` when given) unless ``anytime`` finished the song.
    ``checkpoint``: a file the sampler state is saved to after every step. ``on_sample``:
    called after each step's event with the sampler's own
    :class:`~rhythmflow.sampling.progress.SampleEvent` (it carries the state ``x``; read it,
    never modify it), e.g. to decode a preview."""
    from rhythmflow.machine.host import available_memory
    from rhythmflow.sampling import (
        Deadline,
        SampleControl,
        SamplerSpec,
        prepare_inputs,
        sample,
    )
    from rhythmflow.sampling.keep import check_cancel, keep_and_reraise

    if resume_state is not None and resume_state.settings.guidance_layout != p.guidance_layout:
        # the layout changes the GEMM rounding: a resume keeps the one the run started with
        # (the plan may differ after a re-measured probe or on another machine)
        log.info("resuming with the recorded %s guidance layout (the plan chose %s)",
                 resume_state.settings.guidance_layout, p.guidance_layout)
        p = dataclasses.replace(p, guidance_layout=resume_state.settings.guidance_layout)
    r, started = p.request, time.perf_counter()
    deadline = Deadline.after(r.timeout) if r.timeout is not None else None
    timings: dict[str, float] = {"load": round(gen.load_seconds, 3)}

    def stage(name: str, message: str, t0: float | None = None) -> None:
        if t0 is None:
            return emit(on_event, events.StageStarted(name, message))
        timings[name] = round(time.perf_counter() - t0, 3)
        emit(on_event, events.StageFinished(name, message, timings[name]))

    check_cancel(cancel, "the lyrics stage")  # a Ctrl-C before sampling keeps nothing
    t0 = time.perf_counter()
    for message in p.warnings:
        emit(on_event, events.Warning(message))
    track = gen.lyrics(p.lrc, p.duration, p.keep_last_line)
    for d in track.dropped:
        emit(on_event, events.Warning(f"LRC line {d.line.line} ({d.line.text!r}) not sung: "
                                      f"{d.reason}"))
    for line in track.truncated:
        emit(on_event, events.Warning(f"LRC line {line.line} ({line.text!r}) cut at the end of "
                                      "the song"))
    stage("lyrics", f"{len(track.placed)} lines placed on {track.end_frame} frames", t0)
    t0 = time.perf_counter()
    style, neg = gen.style(r)
    stage("style", "style embedding ready", t0)
    reference = mask = None
    if r.edit:
        t0 = time.perf_counter()
        reference, mask = gen.reference(r.ref_song, p.edit_frames, p.frames, p.seed)
        stage("edit", f"{int(mask.sum())} of {p.frames} frames to regenerate", t0)
    dev, dt = gen.runtime.device, gen.model.dtype
    tokens = track.tokens  # [1, n], built once from the track's ids
    inputs = prepare_inputs(
        gen.model, text=tokens.to(dev), style=style.to(dev, dt),
        negative_style=None if neg is None else neg.to(dev, dt), start_time=track.start_time,
        song_duration=track.song_duration, reference=None if reference is None else
        reference.to(dev), edit_mask=mask, batch=r.batch)
    if r.estimate:
        check_cancel(cancel, "the time estimate")
        _calibrated_estimate(p, gen, stage)
    # the decode must fit before sampling starts
    gen.vae.check_fits(p.frames, r.batch, available=available_memory(gen.vae.device))
    check_cancel(cancel, "sampling")
    tag = _fingerprint(tokens, style, neg if neg is not None else style,
                       extra=str(gen.identity.get("checkpoint")))
    t0 = time.perf_counter()
    stage("sample", f"{p.steps} {r.solver} steps, cfg {r.cfg_strength:g}, batch {r.batch}")

    def on_step(e) -> None:
        emit(on_event, events.SamplingStep(e.step, e.total, e.t, e.elapsed, e.eta,
                                           e.sec_per_step, e.evaluations))
        if on_sample is not None:
            on_sample(e)

    spec = SamplerSpec(solver=r.solver, cfg_strength=r.cfg_strength,
                       guidance_interval=r.guidance_interval, guidance_layout=p.guidance_layout,
                       model_dtype=dt, tag=tag)
    control = SampleControl(deadline=deadline, cancel=cancel, anytime=r.anytime,
                            checkpoint=checkpoint)
    start = resume_state if resume_state is not None else p.seed  # the plan drew the seed
    result = sample(gen.model, inputs, p.grid(), spec, start, control, on_step)
    stage("sample", f"{result.status} after {result.steps_done}/{result.total_steps} steps, "
          f"{result.evaluations} evaluations", t0)
    if not result.completed and result.latent is None:
        _interrupt(result, save_state)
    if result.anytime:
        emit(on_event, events.Warning(f"timeout: finished with one jump from step "
                                      f"{result.steps_done}/{result.total_steps} (lower quality)"))
    t0 = time.perf_counter()
    stage("decode", f"decoding {p.frames} frames with the VAE ({gen.vae.decoder_kind})")
    kept = result.final_state if result.completed else result.state
    try:  # a Ctrl-C or any failure from here on keeps the finished sampling (resume decodes)
        audio = gen.decode(result.latent, on_event, cancel=cancel)
    except BaseException as exc:
        keep_and_reraise(exc, kept, save_state)
    stage("decode", f"{audio.shape[-1] / gen.vae.sample_rate:.1f} s of audio", t0)
    timings["total"] = round(time.perf_counter() - started + gen.load_seconds, 3)
    seeds = [p.seed + i for i in range(r.batch)]
    return Song(audio, gen.vae.sample_rate, result.latent.cpu(), seeds,
                _metadata(p, gen, result, track, timings, seeds,
                          resumed=resume_state is not None), state=kept)


def _calibrated_estimate(p: Plan, gen: SongGenerator, stage, calibrate=None) -> float:
    """Time the loaded model and report the sampling time on that basis (the rest of the job
    keeps the plan's figures); returns the predicted sampling seconds.

    It times the forwards the run will make: items one at a time, a guided evaluation as one
    forward of 2 rows (batched layout) or two of 1 row (split layout), an unguided one (outside
    the guidance interval) as one forward of 1 row. ``calibrate(model, frames, rows=…)``
    defaults to :func:`rhythmflow.planner.cost.calibrate`."""
    from rhythmflow.planner.cost import evaluations
    from rhythmflow.request import SOLVER_EVALS
    from rhythmflow.sampling.progress import format_seconds

    if calibrate is None:
        from rhythmflow.planner.cost import calibrate
    t0, r = time.perf_counter(), p.request
    evals, share = evaluations(p.steps, SOLVER_EVALS[r.solver], p.guided, r.guidance_interval)
    split = p.guidance_layout == "split"
    single = calibrate(gen.model, p.frames, rows=1) if share < 1 or split else 0.0
    guided = (0.0 if share == 0 else 2 * single if split
              else calibrate(gen.model, p.frames, rows=2))
    per_eval = r.batch * (share * guided + (1 - share) * single)
    decode = f", decode ~{format_seconds(p.estimate.decode)}" if p.estimate.decode else ""
    stage("estimate", f"memory {p.memory.describe()}; sampling ~"
          f"{format_seconds(evals * per_eval)} for {p.steps} steps ({evals} evaluations of "
          f"{per_eval:.3g} s){decode}", t0)
    return evals * per_eval


def _metadata(p: Plan, gen: SongGenerator, result, track, timings, seeds: list[int], *,
              resumed: bool) -> dict:
    from rhythmflow.lyrics.check import sung_lines

    r = p.request
    return {
        "rhythmflow": __version__, "model": gen.identity, "runtime": gen.runtime.describe(),
        "request": r.to_dict(), "plan": p.to_dict(),
        "settings": dict(duration=p.duration, frames=p.frames, steps=p.steps, solver=r.solver,
                         schedule=r.schedule, cfg_strength=r.cfg_strength,
                         guidance_interval=r.guidance_interval, batch=r.batch, timeout=r.timeout,
                         anytime=result.anytime, keep_last_line=p.keep_last_line,
                         edit_segments=r.edit_segments, resumed=resumed),
        "seed": p.seed, "seeds": seeds, "status": result.status,
        "evaluations": result.evaluations, "timings": timings, "autotime": p.autotime,
        "vae_decode": {**gen.vae.geometry().to_dict(), "decoder": gen.vae.decoder_kind},
        # each sung line as conditioned; "line" is its line in the song's .lrc: the LRC the
        # plan timed (plain lyrics), else one line per sung line (lyrics.check.sung_lrc)
        "lines": [x.to_dict() for x in sung_lines(track, renumber=p.autotime is None)],
        "lyrics": {"placed": len(track.placed), "dropped": [
            {"line": d.line.line, "text": d.line.text, "reason": d.reason}
            for d in track.dropped], "truncated": [t.line for t in track.truncated]},
    }


def _interrupt(result, save_state) -> None:
    path, where = None, ""
    if save_state is not None and result.state is not None:
        try:  # a failed save must not turn a Ctrl-C/timeout into a crash
            path = result.state.save(save_state)
            where = f"; state saved to {path}"
        except RhythmflowError as exc:
            where = f"; the resume state could NOT be saved ({exc}); nothing was kept"
    what = (f"stopped after {result.steps_done}/{result.total_steps} steps "
            f"({result.elapsed:.0f} s){where}")
    if result.status == "timeout":
        raise SamplingTimeout(f"timeout: {what}", result.state, path)
    raise SamplingCancelled(f"cancelled: {what}", result.state, path)
