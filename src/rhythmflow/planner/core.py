"""``plan(request, machine) -> Plan``: every decision and validation of a job, once, before any
weights are loaded.

A plan resolves the model (official name, or a checkpoint's architecture read from its tensor
shapes), the duration and latent frames, device / dtype / threads / VAE device, the step count
(including a ``time_budget``), the seed, the time grid, the memory estimate (refusing a job that
cannot fit, with the settings that would make it fit) and the time estimate of every stage. It
checks every input that can be checked without the model: the LRC (line numbers), the edit
segments, the files a request names. It is pure given the :class:`Machine` (which is where all
measurement lives) and cheap; what it decides is what ``run`` does, what ``--plan`` prints, what
the service stores and what the sidecar records.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rhythmflow import specs
from rhythmflow.errors import UsageError
from rhythmflow.lyrics.resources import DEFAULT_ASSETS, LyricsAssets
from rhythmflow.machine import Gpu, Machine  # noqa: F401  (Gpu re-exported)
from rhythmflow.planner.cost import JobEstimate, MemoryEstimate
from rhythmflow.planner.outputs import WritePolicy
from rhythmflow.planner.review import Review, lint_findings, review_of
from rhythmflow.planner.runtime import DTYPES, Runtime
from rhythmflow.request import SOLVER_EVALS, GenerationRequest, check_device
from rhythmflow.specs import DiTConfig

log = logging.getLogger(__name__)

#: dtype → bytes per weight, for the load-time estimate


@dataclass(frozen=True)
class Plan:
    """Everything ``run`` will do. ``request`` is what was asked; the rest was decided here."""

    request: GenerationRequest
    model: str  # official model name, or the checkpoint path
    config: DiTConfig
    duration: float
    frames: int
    runtime: Runtime
    steps: int
    seed: int
    guided: bool
    memory: MemoryEstimate
    estimate: JobEstimate
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    lrc: str = ""  # the timed lyrics run conditions on: the request's LRC, or its plain
    #                lyrics timed by rhythmflow.lyrics.autotime
    keep_last_line: bool = False
    autotime: dict[str, Any] | None = None  # AutotimeResult.summary() for plain lyrics
    guidance_layout: str = "batched"  # "batched" (one doubled forward) or "split" (two)
    #: edit mode: the ``[start, end)`` latent frames regenerated (from ``edit_segments``)
    edit_frames: tuple[tuple[int, int], ...] | None = None
    #: the LRC lint's findings (``{"line", "kind", "message"}``, line = 1-based line of ``lrc``
    #: as the request gave it); also in ``warnings``
    lint: tuple[dict[str, Any], ...] = ()
    #: after decoding: check / repair / takes (:class:`~rhythmflow.planner.review.Review`)
    review: Review = Review()

    @property
    def write(self) -> WritePolicy:
        """How every front end writes this song's audio (sample format, normalisation)."""
        return WritePolicy.of(self.request.sample_format, self.request.loudness)

    @property
    def device(self) -> str:
        return self.runtime.device

    @property
    def dtype(self) -> str:
        return self.runtime.dtype

    @property
    def runtime_class(self) -> str:
        """Which workers can run (and resume) this job: device kind and dtype, int8 layers, and
        a VAE decoding in low precision (it changes the audio's bytes) — as a worker names its
        own (:func:`runtime_class`)."""
        return runtime_class(self.runtime.kind, self.runtime.dtype, self.runtime.vae_dtype,
                             self.request.quantize)

    @property
    def sway_coef(self) -> float | None:
        return specs.SWAY_COEF if self.request.schedule == "sway" else None

    def grid(self):
        """The float32 time grid tensor ``run`` integrates over (imports torch)."""
        from rhythmflow.sampling import make_grid

        return make_grid(self.steps, self.request.schedule, self.sway_coef)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the request, the decisions, the estimates (no torch needed)."""
        return {
            "request": self.request.to_dict(), "model": self.model,
            "config": self.config.to_dict(), "duration": self.duration, "frames": self.frames,
            "device": self.runtime.device, "dtype": self.runtime.dtype,
            "threads": self.runtime.threads, "vae_device": self.runtime.vae_device,
            "vae_dtype": self.runtime.vae_dtype,
            "runtime_class": self.runtime_class, "steps": self.steps, "seed": self.seed,
            "guided": self.guided, "memory": self.memory.to_dict(),
            "estimate": self.estimate.to_dict(), "reasons": list(self.reasons),
            "warnings": list(self.warnings), "lrc": self.lrc,
            "keep_last_line": self.keep_last_line, "autotime": self.autotime,
            "guidance_layout": self.guidance_layout,
            "edit_frames": None if self.edit_frames is None else [list(f) for f in self.edit_frames],
            "lint": [dict(f) for f in self.lint], "review": self.review.to_dict(),
        }


def runtime_class(kind: str, dtype: str, vae_dtype: str = "float32",
                  quantize: str = "none") -> str:
    """``cpu-bfloat16``, ``cpu-float32-int8``, ``cpu-bfloat16-vae-bfloat16`` …: the work a
    worker can resume bit for bit (a sampler state needs the same arithmetic)."""
    return (f"{kind}-{dtype}" + ("-int8" if quantize == "int8" else "")
            + ("" if vae_dtype == "float32" else f"-vae-{vae_dtype}"))


def plan(request: GenerationRequest, machine: Machine | None = None, *,
         config: DiTConfig | None = None, runtime: Runtime | None = None,
         check_files: bool = True, lyrics_assets: LyricsAssets | None = None) -> Plan:
    """Decide everything about ``request`` on ``machine`` (default: :meth:`Machine.detect`).

    ``config``/``runtime`` pin the architecture and runtime of an already loaded generator.
    ``lyrics_assets``: where plain ``lyrics`` read their G2P files when they are timed.
    ``check_files`` checks that the files the request names exist (off for a service that
    stores uploads elsewhere). Raises UsageError (naming the field) for anything invalid and
    ResourceError when the job cannot fit in memory or the time budget.
    """
    request.require_style()
    if request.takes > 1 and request.batch == 1:  # N takes are sampled as a batch of N seeds
        request = request.replace(batch=request.takes)
    machine = machine if machine is not None else Machine.detect()
    reasons: list[str] = []
    if check_files:
        _check_files(request)
    spec, config, model = _model(request, config, reasons)
    duration = spec.default_seconds if request.duration is None else request.duration
    spec.check_duration(duration)
    frames = specs.frames_for(config.max_frames, duration)
    dtype = model_dtype(request.dtype, request.quantize)
    runtime = runtime or runtime_for(machine, request.device, dtype, request.threads,
                                     request.vae_dtype)
    reasons.extend(runtime.reasons)
    lrc, keep_last, autotime, warnings = _lyrics(request, duration, config.max_frames,
                                                  lyrics_assets or DEFAULT_ASSETS)
    lint = lint_findings(request, duration, spec.name, lyrics_assets or DEFAULT_ASSETS)
    warnings += tuple(f"lint: LRC line {f['line']}: {f['kind']}: {f['message']}" for f in lint)
    edit_frames = None
    if request.edit_segments is not None:
        from rhythmflow.planner.edit import segments_to_frames

        edit_frames = tuple(segments_to_frames(request.edit_segments, frames))
    guided = request.cfg_strength > 0
    layout, layout_why = (_guidance_layout(machine, runtime, frames, request.quantize) if guided
                          else ("batched", ""))
    from rhythmflow.planner import cost as est
    mem = est.estimate_memory(config, frames, batch=request.batch, cfg=guided,
                              dtype=runtime.dtype, quantize=request.quantize, layout=layout,
                              available=_available(machine, runtime))
    est.refuse_if_too_big(mem, batch=request.batch, frames=frames, dtype=runtime.dtype,
                          device=runtime.device)

    def estimate_for(steps: int) -> JobEstimate:
        return _estimate(request, machine, runtime, config, frames, steps, guided, layout)

    if request.time_budget is not None:
        best = est.steps_for_budget(request.time_budget, estimate_for)
        if not estimate_for(1).known:
            raise UsageError("time_budget: this machine's speed is unknown, so no step count "
                             "can be chosen; give steps instead", field="time_budget")
        if request.steps is not None and request.steps > best:
            raise est.ResourceError(
                f"steps {request.steps} does not fit time_budget {request.time_budget:.0f}s "
                f"here; at most {best} steps fit (drop steps to let the budget choose)",
                field="steps")
        steps = request.steps if request.steps is not None else best
        reasons.append(f"steps {steps}: the most that fit time_budget {request.time_budget:g}s")
    elif request.steps is not None:
        steps = request.steps
        reasons.append(f"steps {steps}: requested")
    else:
        steps = runtime.default_steps
        reasons.append(f"steps {steps}: default on {runtime.kind}")
    seed = draw_seed(request)
    if request.seed is None:
        reasons.append(f"seed {seed}: drawn (recorded in the sidecar)")
    if guided:
        reasons.append(layout_why)
    review = review_of(request)
    reasons.extend(review.reasons)
    return Plan(request, model, config, duration, frames, runtime, steps, seed, guided, mem,
                estimate_for(steps), tuple(reasons), warnings, lrc, keep_last, autotime, layout,
                edit_frames, lint, review)


def draw_seed(request: GenerationRequest) -> int:
    """The request's seed, or one drawn now (the one place a seed is drawn; the plan records it
    and every attempt of the job reuses it)."""
    return request.seed if request.seed is not None else secrets.randbelow(2**31)


def model_dtype(dtype: str, quantize: str) -> str:
    """The dtype the DiT is loaded in: ``dtype``, except that int8 layers quantize a float32
    model (UsageError naming ``quantize`` for another explicit dtype)."""
    if quantize != "int8":
        return dtype
    if dtype != "auto" and DTYPES[dtype] != "float32":
        raise UsageError(f"quantize: int8 quantizes a float32 model; drop dtype {dtype} or "
                         "quantize", field="quantize")
    return "float32"


def resolve_runtime(device: str = "auto", dtype: str = "auto",
                    threads: int | None = None) -> Runtime:
    """Choose device (cuda > mps > cpu), dtype, thread count and default steps for this machine
    (:func:`runtime_for` on :meth:`Machine.detect`, without measuring)."""
    return runtime_for(Machine.detect(measure=False), device, dtype, threads)


def runtime_for(machine: Machine, device: str = "auto", dtype: str = "auto",
                threads: int | None = None, vae_dtype: str = "auto") -> Runtime:
    """Device (cuda > mps > cpu), dtype, threads, VAE device and dtype, and default steps on
    ``machine``."""
    reasons: list[str] = []
    if device == "auto":
        device = "cuda" if machine.gpus else "mps" if machine.mps else "cpu"
        why = (f"CUDA device found: {machine.gpus[0].name}" if machine.gpus else
               "Apple MPS device found" if machine.mps else "no CUDA or MPS device found")
        reasons.append(f"device {device}: {why}")
    else:
        reasons.append(f"device {device}: requested")
    kind, _, index = check_device(device).partition(":")
    if kind == "cuda" and (not machine.gpus or int(index or 0) >= len(machine.gpus)):
        raise UsageError(f"device: {device} requested but this machine has no such CUDA device; "
                         "use cpu", field="device")
    if kind == "mps" and not machine.mps:
        raise UsageError("device: mps requested but MPS is not available; use cpu",
                         field="device")
    if dtype == "auto":
        dtype, why = _auto_dtype(machine, kind, int(index or 0))
        reasons.append(f"dtype {why}")  # the policies' reasons start with the dtype
    elif dtype not in DTYPES:
        raise UsageError(f"dtype: unknown value {dtype!r}; choose one of auto, "
                         f"{', '.join(DTYPES)}", field="dtype")
    else:
        dtype = DTYPES[dtype]
        reasons.append(f"dtype {dtype}: requested")
        if kind == "cpu" and dtype == "float16" and machine.cpu_dtype != "float16":
            reasons.append("warning: float16 is emulated on most CPUs and can be far slower "
                           "than float32")
    if threads is not None and threads < 1:
        raise UsageError(f"threads: must be >= 1, got {threads}", field="threads")
    if threads is None:
        threads = machine.cores
        reasons.append(f"threads {threads}: physical cores available to this process")
    vae_device = "cpu" if kind == "mps" else device
    if vae_device != device:
        reasons.append("VAE on cpu: the TorchScript VAE does not run on MPS")
    vae_dtype, why = _vae_dtype(machine, vae_device, dtype, vae_dtype)
    reasons.append(why)
    steps = specs.DEFAULT_STEPS[kind]
    return Runtime(device, dtype, threads, vae_device, steps, tuple(reasons), vae_dtype,
                   machine.int8_kernel)


def _vae_dtype(machine: Machine, vae_device: str, dtype: str, requested: str) -> tuple[str, str]:
    from rhythmflow.machine.vae_probe import choose_vae_dtype
    from rhythmflow.request import VAE_DTYPES

    requested = DTYPES.get(requested, requested)
    if requested not in ("auto", *VAE_DTYPES):
        raise UsageError(f"vae_dtype: unknown value {requested!r}; choose auto, float32 or "
                         "bfloat16", field="vae_dtype")
    try:
        return choose_vae_dtype(vae_device, dtype, machine.vae_gflops, requested)
    except ValueError as exc:
        raise UsageError(f"vae_dtype: {exc}", field="vae_dtype") from None


def _auto_dtype(machine: Machine, kind: str, index: int) -> tuple[str, str]:
    """The automatic dtype and why: the CPU's measured choice, else the GPU policy."""
    from rhythmflow.machine.probe import choose_gpu_dtype

    if kind == "cpu":
        return machine.cpu_dtype, machine.cpu_dtype_reason
    return choose_gpu_dtype(kind, kind == "cuda" and machine.gpus[index].bf16)


def _available(machine: Machine, runtime: Runtime) -> int | None:
    if runtime.kind == "cuda":
        return machine.gpus[int(runtime.device.partition(":")[2] or 0)].memory_free
    return machine.memory_available


def _model(request: GenerationRequest, config: DiTConfig | None,
           reasons: list[str]) -> tuple[specs.ModelSpec, DiTConfig, str]:
    from rhythmflow.specs import preset

    if request.checkpoint is not None:
        if config is None:
            from rhythmflow.model.checkpoint import read_config

            config = read_config(request.checkpoint, request.model_config)
        reasons.append(f"model: checkpoint {request.checkpoint} "
                       f"({config.max_frames} frames, read from the file)")
        return specs.spec_for_frames(config.max_frames), config, request.checkpoint
    if config is not None and request.model is None:
        return specs.spec_for_frames(config.max_frames), config, "loaded model"
    spec = (specs.get_spec(request.model) if request.model is not None
            else specs.model_for_duration(request.duration))
    if request.model is None:
        reasons.append(f"model {spec.name}: default for "
                       f"{'95 s' if request.duration is None else f'{request.duration:g} s'}")
    return spec, config or preset(spec.name), spec.name


def _lyrics(request: GenerationRequest, duration: float, max_frames: int,
            assets: LyricsAssets) -> tuple[str, bool, dict | None, tuple[str, ...]]:
    """(LRC to condition on, keep its last line, autotime summary, warnings). An LRC's syntax is
    checked here with line numbers (its G2P runs in the lyrics stage); plain lyrics are timed
    here, so a text that cannot be timed fails before anything is loaded."""
    from rhythmflow.errors import LrcError, LyricsError
    from rhythmflow.lyrics import check_lrc

    if request.lyrics is None:
        check_lrc(request.lrc)  # syntax, at least one timed lyric, singable scripts
        return request.lrc, request.keep_last_line, None, ()
    from rhythmflow.lyrics.autotime import time_lyrics

    try:
        timed = time_lyrics(request.lyrics, duration, max_frames=max_frames, assets=assets)
    except (LrcError, LyricsError) as exc:
        raise type(exc)(f"lyrics: {exc}", field="lyrics", line=exc.line) from exc
    except UsageError as exc:
        raise UsageError(f"lyrics: {exc}", field="lyrics") from exc
    # every line was timed to fit, so none is dropped by the base model's last-line rule; with
    # markers only it is an instrumental (no lyrics at all)
    return timed.lrc if timed.lines else "", True, timed.summary(), timed.warnings


def _check_files(request: GenerationRequest) -> None:
    for name in ("style_embedding_file", "style_audio", "negative_style", "checkpoint",
                 "model_config", "vae", "ref_song"):
        value = getattr(request, name)
        if value is not None and not Path(value).is_file():
            raise UsageError(f"{name}: no such file {value}", field=name)
    for name in ("style_embedding_file", "negative_style"):  # odd .npy files fail here
        if getattr(request, name) is not None:
            from rhythmflow.style.embed import load_style_npy

            try:
                load_style_npy(getattr(request, name))
            except UsageError as exc:
                raise UsageError(f"{name}: {exc}", field=name) from None


def _guidance_layout(machine: Machine, runtime: Runtime, frames: int,
                     quantize: str) -> tuple[str, str]:
    """The guidance layout of a guided job and why: measured on the CPU in the job's dtype
    (:func:`rhythmflow.machine.probe.choose_guidance_layout`), else one doubled batch."""
    from rhythmflow.machine.probe import LayoutTiming, choose_guidance_layout

    if runtime.kind != "cpu":
        return "batched", (f"batched guidance (one doubled forward): not measured on "
                           f"{runtime.kind}, where one launch on the doubled batch is the rule")
    what = f"{runtime.dtype} with int8 layers" if quantize == "int8" else runtime.dtype
    if machine.layout_timings and what != machine.layout_dtype:
        return "batched", ("batched guidance (one doubled forward): the layout was measured "
                           f"in {machine.layout_dtype}, not {what}")
    return choose_guidance_layout(frames, [LayoutTiming(*t) for t in machine.layout_timings])


def _estimate(request: GenerationRequest, machine: Machine, runtime: Runtime,
              config: DiTConfig, frames: int, steps: int, guided: bool,
              layout: str = "batched") -> JobEstimate:
    from rhythmflow.planner.cost import estimate_job, forward_overhead

    return estimate_job(
        config, frames, steps=steps, evals_per_step=SOLVER_EVALS[request.solver],
        batch=request.batch, guided=guided, guidance_interval=request.guidance_interval,
        gflops=machine.rate(runtime.kind, runtime.dtype),
        weight_bytes=config.param_count * specs.DTYPE_BYTES[runtime.dtype],
        style_encoder=request.style_source in ("style_prompt", "style_audio"),
        overhead_per_forward=(forward_overhead(config, machine.eval_overhead)
                              if runtime.kind == "cpu" else 0.0),
        split_guidance=layout == "split", vae_gflops=machine.vae_gflops,
        vae_dtype=runtime.vae_dtype)
