"""SongGenerator: the stages wired together, top to bottom.

LRC text → LyricsTrack → style embedding → SamplingInputs (Conditioning) → sample() → latents
→ VAE → audio. Loading and generation are timed separately; every stage reports a
:class:`~rhythmflow.console.StageEvent` to ``on_progress``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rhythmflow import __version__
from rhythmflow.config import FRAME_RATE, DiTConfig, preset
from rhythmflow.console import StageEvent
from rhythmflow.errors import SamplingCancelled, SamplingTimeout, UsageError
from rhythmflow.runtime import Runtime, apply_threads, resolve_runtime

log = logging.getLogger(__name__)
Progress = Callable[[Any], None]
BASE_SECONDS = 95.0
FULL_SECONDS = (96.0, 285.0)


@dataclass(frozen=True)
class DecodeEvent:
    """One VAE chunk decoded."""

    step: int
    total: int
    elapsed: float
    eta: float | None
    chunk: bool = True


@dataclass
class Song:
    """Generated audio. audio [b, 2, samples] float32, latents [b, n, 64]; one row per seed."""

    audio: torch.Tensor
    sample_rate: int
    latents: torch.Tensor
    seeds: list[int | None]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.audio.shape[0]


def default_duration(config: DiTConfig) -> float:
    return BASE_SECONDS if config.max_frames == 2048 else FULL_SECONDS[1]


def check_duration(config: DiTConfig, duration: float) -> None:
    """The base models make 95 s songs; the full models 96-285 s (as the original)."""
    if config.max_frames == 2048 and duration != BASE_SECONDS:
        raise UsageError(f"--duration {duration:g}: base models generate exactly 95 s; use "
                         "--model full for 96-285 s")
    lo, hi = FULL_SECONDS
    if config.max_frames != 2048 and not lo <= duration <= hi:
        raise UsageError(f"--duration {duration:g}: full models generate {lo:.0f}-{hi:.0f} s")


def _emit(on_progress: Progress | None, event: Any) -> None:
    if on_progress is not None:
        on_progress(event)


def _fingerprint(*tensors: torch.Tensor, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class SongGenerator:
    """A loaded model + VAE on a resolved runtime; ``generate`` makes songs."""

    def __init__(self, model, vae, runtime: Runtime, *, identity: dict[str, Any],
                 assets_dir: str | os.PathLike | None = None, offline: bool | None = None,
                 load_seconds: float = 0.0) -> None:
        self.model, self.vae, self.runtime = model, vae, runtime
        self.identity, self.assets_dir, self.offline = identity, assets_dir, offline
        self.load_seconds = load_seconds

    @property
    def config(self) -> DiTConfig:
        return self.model.config

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike = "v1.2-base",
        *,
        model_config: str | os.PathLike | None = None,
        vae: str | os.PathLike | None = None,
        device: str = "auto",
        dtype: str = "auto",
        threads: int | None = None,
        assets_dir: str | os.PathLike | None = None,
        offline: bool | None = None,
        quantize: str = "none",
        chunked: bool = True,
        on_progress: Progress | None = None,
    ) -> SongGenerator:
        """Load an official model by name (``v1.2-base``, ``base``, ``full`` …) or a checkpoint
        path (architecture read from the file), and the VAE, onto the resolved device/dtype."""
        from rhythmflow.assets import resolve
        from rhythmflow.model import load_checkpoint
        from rhythmflow.vae import load_vae

        runtime = resolve_runtime(device, dtype, threads)
        apply_threads(runtime.threads)
        for reason in runtime.reasons:
            log.info("%s", reason)
        t0 = time.perf_counter()
        name = str(model)
        if Path(name).suffix in (".pt", ".safetensors", ".bin", ".pth") or Path(name).exists():
            path, ident = Path(name), {"checkpoint": str(Path(name).resolve())}
        else:
            preset(name)  # validates the name with a clear error
            key = {"base": "v1.2-base", "full": "v1.2-full"}.get(name, name)
            path = resolve(f"dit-{key}", assets_dir=assets_dir, offline=offline)
            ident = {"model": key, "checkpoint": str(path)}
        _emit(on_progress, StageEvent("load", f"loading {path.name} ({runtime.describe()})"))
        dit = load_checkpoint(path, dtype=runtime.torch_dtype, device=runtime.device,
                              config=model_config)
        if quantize == "int8":
            from rhythmflow.model.quantize import quantize_int8
            from rhythmflow.perf import release_freed_memory

            dit = quantize_int8(dit)
            release_freed_memory()  # give the replaced float32 weights back to the OS
        elif quantize != "none":
            raise UsageError(f"unknown quantization {quantize!r}; choose none or int8")
        ident.update(config=dit.config.to_dict(), quantize=quantize, dtype=runtime.dtype,
                     rhythmflow=__version__)
        vae_model = load_vae(vae, device=runtime.vae_device, assets_dir=assets_dir,
                             offline=offline, chunked=chunked)
        seconds = time.perf_counter() - t0
        _emit(on_progress, StageEvent("load", "model and VAE ready", done=True, seconds=seconds))
        return cls(dit, vae_model, runtime, identity=ident, assets_dir=assets_dir,
                   offline=offline, load_seconds=seconds)

    # ---- stages ---------------------------------------------------------------------------

    def lyrics(self, lrc: str, duration: float, keep_last_line: bool = False):
        from rhythmflow import assets
        from rhythmflow.lyrics import lrc_to_track

        with assets.scope(assets_dir=self.assets_dir, offline=self.offline):  # G2P resources
            track = lrc_to_track(lrc, max_frames=self.config.max_frames, audio_length=duration,
                                 keep_last_line=keep_last_line)
        return track  # the lyrics module logs every dropped or truncated line

    def style(self, style: torch.Tensor | str | os.PathLike | None = None, *,
              style_audio: str | os.PathLike | None = None) -> torch.Tensor:
        """[1, 512] from a tensor, a text prompt, a .npy file or (``style_audio``) an audio file."""
        from rhythmflow.style import MuQMuLanEncoder, style_embedding

        if isinstance(style, torch.Tensor):
            return style.float().reshape(1, -1)
        # the encoder loads nothing until it is used (a cache hit never loads it)
        encoder = MuQMuLanEncoder(
            device=self.runtime.device if self.runtime.kind == "cuda" else "cpu",
            assets_dir=self.assets_dir, offline=self.offline,
        )
        if style_audio is not None:
            return style_embedding(audio_path=style_audio, encoder=encoder)
        if isinstance(style, Path) or (isinstance(style, str) and style.endswith(".npy")):
            return style_embedding(npy=style)
        if isinstance(style, str) and style.strip():
            return style_embedding(prompt=style, encoder=encoder)
        raise UsageError("a style is required: a text prompt, a reference audio file or a .npy "
                         "embedding (--style-prompt / --style-audio / --style-embedding)")

    def reference(self, ref_song: str | os.PathLike, segments, frames: int, seed: int):
        """Edit mode: the reference latent [1, n, 64] (VAE posterior sample drawn with ``seed``)
        and the generate-mask [n] (True = regenerate)."""
        from rhythmflow.edit import plan_edit, reference_latents

        gen = torch.Generator(device=self.runtime.vae_device).manual_seed(seed)
        plan = plan_edit(reference_latents(ref_song, self.vae, generator=gen), segments, frames)
        return plan.reference, plan.mask

    def decode(self, latents: torch.Tensor, on_progress: Progress | None = None) -> torch.Tensor:
        t0 = time.perf_counter()

        def on_chunk(done: int, total: int) -> None:
            el = time.perf_counter() - t0
            eta = el / done * (total - done) if done else None
            _emit(on_progress, DecodeEvent(done, total, el, eta))

        audio = self.vae.decode(latents.transpose(1, 2).contiguous(), on_chunk=on_chunk)
        return audio.float().cpu()

    # ---- the whole job --------------------------------------------------------------------

    def generate(
        self,
        lrc: str = "",
        *,
        style: torch.Tensor | str | os.PathLike | None = None,
        style_audio: str | os.PathLike | None = None,
        negative_style: str | os.PathLike | torch.Tensor | None = None,
        duration: float | None = None,
        steps: int | None = None,
        solver: str = "euler",
        schedule: str = "uniform",
        cfg_strength: float = 4.0,
        guidance_interval: tuple[float, float] | None = None,
        seed: int | None = None,
        batch: int = 1,
        timeout: float | None = None,
        anytime: bool = False,
        time_budget: float | None = None,
        estimate: bool = True,
        on_progress: Progress | None = None,
        cancel=None,
        resume: str | os.PathLike | None = None,
        save_state: str | os.PathLike | None = None,
        ref_song: str | os.PathLike | None = None,
        edit_segments=None,
        keep_last_line: bool = False,
        checkpoint: str | os.PathLike | None = None,
    ) -> Song:
        """Generate ``batch`` songs. Raises SamplingTimeout / SamplingCancelled (with the saved
        state's path when ``save_state`` is given) unless ``anytime`` finished the song.
        ``checkpoint``: save the resumable sampler state there after every step (serve workers)."""
        from rhythmflow import estimate as est
        from rhythmflow.sampling import Deadline, SamplerState, prepare_inputs, sample
        from rhythmflow.style import negative_style as load_negative

        started = time.perf_counter()
        deadline = Deadline.after(timeout) if timeout is not None else None
        cfg = self.config
        duration = default_duration(cfg) if duration is None else duration
        check_duration(cfg, duration)
        if batch < 1:
            raise UsageError(f"--batch must be >= 1, got {batch}")
        state = SamplerState.load(resume) if resume is not None else None
        if seed is None and state is None:
            seed = secrets.randbelow(2**31)  # drawn here so the sidecar can reproduce the song
        timings: dict[str, float] = {"load": round(self.load_seconds, 3)}

        def stage(name: str, message: str, t0: float | None = None) -> None:
            if t0 is not None:
                timings[name] = round(time.perf_counter() - t0, 3)
            _emit(on_progress, StageEvent(name, message, done=t0 is not None,
                                          seconds=timings.get(name) if t0 else None))

        t0 = time.perf_counter()
        track = self.lyrics(lrc, duration, keep_last_line)
        n = track.end_frame
        stage("lyrics", f"{len(track.placed)} lines placed on {n} frames "
              f"({n / FRAME_RATE:.1f} s)", t0)
        t0 = time.perf_counter()
        style_vec = self.style(style, style_audio=style_audio)
        if isinstance(negative_style, torch.Tensor):
            neg = negative_style.float().reshape(1, -1)
        else:
            neg = load_negative(negative_style, assets_dir=self.assets_dir, offline=self.offline)
        stage("style", "style embedding ready", t0)
        reference = mask = None
        if ref_song is not None or edit_segments is not None:
            if ref_song is None or edit_segments is None:
                raise UsageError("edit mode needs both --ref-song and --edit-segments")
            t0 = time.perf_counter()
            state_seed = state.settings.seed if state is not None else seed
            reference, mask = self.reference(ref_song, edit_segments, n, state_seed or 0)
            stage("edit", f"{int(mask.sum())} of {n} frames to regenerate", t0)
        dev, dt = self.runtime.device, self.model.dtype
        inputs = prepare_inputs(
            self.model, text=track.tokens.to(dev), style=style_vec.to(dev, dt),
            negative_style=neg.to(dev, dt) if cfg_strength > 0 else None,
            start_time=track.start_time, song_duration=track.song_duration,
            reference=None if reference is None else reference.to(dev), edit_mask=mask,
            batch=batch)
        steps = self._choose_steps(steps, n, batch, cfg_strength, solver, time_budget, estimate,
                                   started, on_progress, timings, est)
        tag = _fingerprint(track.tokens, style_vec, neg, extra=str(self.identity.get("checkpoint")))
        t0 = time.perf_counter()
        stage("sample", f"{steps} {solver} steps, cfg {cfg_strength:g}, batch {batch}")
        result = sample(self.model, inputs, steps=steps, cfg_strength=cfg_strength, solver=solver,
                        schedule=schedule, guidance_interval=guidance_interval, seed=seed,
                        model_dtype=dt, deadline=deadline, cancel=cancel, callback=on_progress,
                        anytime=anytime, resume_state=state, tag=tag, checkpoint=checkpoint)
        stage("sample", f"{result.status} after {result.steps_done}/{result.total_steps} steps, "
              f"{result.evaluations} evaluations", t0)
        if not result.completed and result.latent is None:
            self._interrupt(result, save_state)
        if result.anytime:
            log.warning("timeout: finished with one jump from step %d/%d (lower quality)",
                        result.steps_done, result.total_steps)
        t0 = time.perf_counter()
        stage("decode", f"decoding {n} frames with the VAE")
        audio = self.decode(result.latent, on_progress)
        stage("decode", f"{audio.shape[-1] / self.vae.sample_rate:.1f} s of audio", t0)
        timings["total"] = round(time.perf_counter() - started + self.load_seconds, 3)
        seeds = [None if result.seed is None else result.seed + i for i in range(batch)]
        meta = {
            "rhythmflow": __version__, "model": self.identity, "runtime": self.runtime.describe(),
            "settings": dict(duration=duration, frames=n, steps=steps, solver=solver,
                             schedule=schedule, cfg_strength=cfg_strength,
                             guidance_interval=guidance_interval, batch=batch, timeout=timeout,
                             anytime=result.anytime, keep_last_line=keep_last_line,
                             edit_segments=edit_segments, resumed=resume is not None),
            "seed": result.seed, "seeds": seeds, "status": result.status,
            "evaluations": result.evaluations, "timings": timings,
            "lyrics": {"placed": len(track.placed), "dropped": [
                {"line": d.line.line, "text": d.line.text, "reason": d.reason}
                for d in track.dropped], "truncated": [t.line for t in track.truncated]},
        }
        return Song(audio, self.vae.sample_rate, result.latent.cpu(), seeds, meta)

    def _choose_steps(self, steps, n, batch, cfg_strength, solver, time_budget, estimate,
                      started, on_progress, timings, est) -> int:
        """Print the calibrated estimate; with a time budget, pick (or refuse) the step count."""
        cfg, guided = self.config, cfg_strength > 0
        mem = est.estimate_memory(cfg, n, batch=batch, cfg=guided, dtype=self.runtime.dtype,
                                  device=self.runtime.device)
        _emit(on_progress, StageEvent("estimate", f"memory {mem.describe()}"))
        est.refuse_if_too_big(mem, batch=batch, frames=n, dtype=self.runtime.dtype,
                              device=self.runtime.device)
        chosen = steps if steps is not None else self.runtime.default_steps
        if steps is not None and steps < 1:
            raise UsageError(f"--steps must be >= 1, got {steps}")
        if not (estimate or time_budget):
            return chosen
        t0 = time.perf_counter()
        per_eval = est.calibrate(self.model, n, rows=batch * (2 if guided else 1))
        if time_budget is not None:
            spent = time.perf_counter() - started + self.load_seconds
            decode = 60.0 * n / 2048 if self.runtime.kind == "cpu" else 5.0
            best = est.steps_for_budget(time_budget, per_eval, solver=solver,
                                        overhead=spent + decode)
            if steps is not None and steps > best:
                raise est.ResourceError(
                    f"--steps {steps} does not fit --time-budget {time_budget:.0f}s here; at most "
                    f"{best} steps fit (drop --steps to let the budget choose)")
            chosen = steps if steps is not None else best
        t = est.estimate_time(chosen, per_eval, solver=solver)
        timings["estimate"] = round(time.perf_counter() - t0, 3)
        _emit(on_progress, StageEvent("estimate", f"sampling {t.describe()}", done=True,
                                      seconds=timings["estimate"]))
        return chosen

    def _interrupt(self, result, save_state) -> None:
        path = None
        if save_state is not None and result.state is not None:
            path = result.state.save(save_state)
        where = f"; state saved to {path}" if path else ""
        what = (f"stopped after {result.steps_done}/{result.total_steps} steps "
                f"({result.elapsed:.0f} s){where}")
        if result.status == "timeout":
            raise SamplingTimeout(f"timeout: {what}", result.state, path)
        raise SamplingCancelled(f"cancelled: {what}", result.state, path)
