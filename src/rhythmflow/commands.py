"""What the ``generate`` and ``fetch`` subcommands do with parsed arguments."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rhythmflow import errors
from rhythmflow.console import ProgressView, StageEvent

log = logging.getLogger("rhythmflow")


def _read_text(path: Path, what: str) -> str:
    from rhythmflow.lyrics import decode_lrc

    try:
        return decode_lrc(path.read_bytes(), f"{what} {path}")  # UTF-8, or UTF-16 (BOM or not)
    except FileNotFoundError:
        raise errors.UsageError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise errors.UsageError(f"cannot read {what} {path}: {exc.strerror}") from None


def _validate(args: argparse.Namespace, outputs: list[Path]) -> None:
    """Cheap checks before anything heavy is loaded."""
    from rhythmflow.checks import check_generation_numbers

    check_generation_numbers(
        seed=args.seed, batch=args.batch, steps=args.steps, timeout=args.timeout,
        time_budget=args.time_budget, loudness=args.loudness, cfg_strength=args.cfg_strength,
        guidance_interval=tuple(args.guidance_interval) if args.guidance_interval else None,
        duration=args.duration, threads=args.threads)
    if args.edit and (args.ref_song is None or args.edit_segments is None):
        raise errors.UsageError("--edit needs --ref-song FILE and --edit-segments JSON")
    if not args.edit and (args.ref_song or args.edit_segments):
        raise errors.UsageError("--ref-song / --edit-segments are only used with --edit")
    for flag in ("style_audio", "style_embedding", "ref_song", "resume", "checkpoint",
                 "model_config", "vae", "negative_style"):
        p = getattr(args, flag)
        if p is not None and not Path(p).is_file():
            raise errors.UsageError(f"--{flag.replace('_', '-')} {p}: no such file")
    for flag in ("style_embedding", "negative_style"):  # odd .npy files fail before loading
        if getattr(args, flag) is not None:
            from rhythmflow.style import load_style_npy

            load_style_npy(getattr(args, flag))
    if args.edit_segments is not None:
        from rhythmflow.edit import parse_segments

        parse_segments(args.edit_segments)  # malformed segments fail before any loading
    if args.checkpoint and args.model:
        raise errors.UsageError("use either --model or --checkpoint, not both")
    if args.model_config and not args.checkpoint:
        raise errors.UsageError("--model-config describes a --checkpoint; pass --checkpoint too")
    for out in outputs:
        if not out.parent.exists():
            raise errors.UsageError(f"output folder {out.parent} does not exist; create it first")
    if args.save_state is not None:  # a Ctrl-C or timeout must be able to keep the work
        from rhythmflow.files import check_writable_folder

        state = Path(args.save_state).expanduser()
        if state.is_dir():
            raise errors.UsageError(f"--save-state {state} is a folder; give a file name such "
                                    f"as {state / 'song.resume.pt'}")
        check_writable_folder(state.parent)
    if args.timeout is not None and args.timeout <= 0:
        raise errors.UsageError("--timeout must be a positive number of seconds")


def _model_name(args: argparse.Namespace) -> str:
    if args.checkpoint:
        return str(args.checkpoint)
    if args.model:
        return args.model
    return "full" if args.duration is not None and args.duration > 95 else "base"


def _precheck_memory(args: argparse.Namespace) -> None:
    """Refuse an official model that cannot fit before spending minutes loading it."""
    if args.checkpoint:
        return  # the architecture is known after reading the file; generate() checks then
    from rhythmflow import estimate
    from rhythmflow.api import default_duration
    from rhythmflow.config import preset
    from rhythmflow.lyrics.tokens import end_frame_for
    from rhythmflow.runtime import resolve_runtime

    cfg = preset(_model_name(args))
    duration = args.duration if args.duration is not None else default_duration(cfg)
    frames = end_frame_for(cfg.max_frames, duration)
    rt = resolve_runtime(args.device, args.dtype, args.threads)
    mem = estimate.estimate_memory(cfg, frames, batch=args.batch, cfg=args.cfg_strength > 0,
                                   dtype=rt.dtype, quantize=args.quantize, device=rt.device)
    estimate.refuse_if_too_big(mem, batch=args.batch, frames=frames, dtype=rt.dtype,
                               device=rt.device)


def run_generate(args: argparse.Namespace, view: ProgressView, cancel) -> int:
    from rhythmflow.api import SongGenerator
    from rhythmflow.audio import write_audio, write_sidecar
    from rhythmflow.files import resolve_outputs

    outputs = resolve_outputs(args.output, args.format, args.sample_format, args.batch)
    _validate(args, outputs)
    lrc = _read_text(args.lrc, "lyrics file") if args.lrc else ""
    if not args.lrc:
        log.info("no --lrc given: generating an instrumental")
    from rhythmflow.lyrics import check_lrc

    check_lrc(lrc)  # malformed, untimed or unsingable lyrics fail before the model is loaded
    _precheck_memory(args)
    save_state = args.save_state or outputs[0].with_name(outputs[0].stem + ".resume.pt")
    from rhythmflow.keep import check_cancel

    check_cancel(cancel, "loading the model")  # [issue 14] Ctrl-C while checking inputs
    gen = SongGenerator.from_pretrained(
        _model_name(args), model_config=args.model_config, vae=args.vae, device=args.device,
        dtype=args.dtype, threads=args.threads, assets_dir=args.assets_dir,
        offline=True if args.offline else None, quantize=args.quantize, chunked=args.chunked,
        on_progress=view)
    style = args.style_prompt if args.style_prompt is not None else args.style_embedding
    song = gen.generate(
        lrc, style=style, style_audio=args.style_audio, negative_style=args.negative_style,
        duration=args.duration, steps=args.steps, solver=args.solver, schedule=args.schedule,
        cfg_strength=args.cfg_strength,
        guidance_interval=tuple(args.guidance_interval) if args.guidance_interval else None,
        seed=args.seed, batch=args.batch, timeout=args.timeout, anytime=args.anytime,
        time_budget=args.time_budget, estimate=not args.skip_estimate, on_progress=view,
        cancel=cancel, resume=args.resume, save_state=save_state,
        ref_song=args.ref_song if args.edit else None, edit_segments=args.edit_segments,
        keep_last_line=args.keep_last_line)
    view(StageEvent("write", f"writing {len(outputs)} file(s)"))
    from rhythmflow.keep import StoppedAfterSampling, keep_and_reraise

    try:  # [issue 14] a Ctrl-C or a failed write keeps the finished sampling for --resume
        if cancel.is_set():
            raise StoppedAfterSampling("cancelled before writing the song")
        for i, path in enumerate(outputs):
            write_audio(path, song.audio[i], song.sample_rate, sample_format=args.sample_format,
                        normalize="peak" if args.loudness is None else "loudness",
                        target_lufs=args.loudness if args.loudness is not None else -14.0)
            meta = dict(song.metadata, output=str(path), index=i, seed=song.seeds[i],
                        command=vars(args))
            write_sidecar(path, meta)
            if view.mode == "json":  # stdout stays one JSON object per line
                print(json.dumps({"event": "Output", "path": str(path), "seed": song.seeds[i]}))
            else:
                print(path)
    except BaseException as exc:
        keep_and_reraise(exc, song.state, save_state)
    if args.resume and Path(args.resume).resolve() == Path(save_state).resolve():
        Path(save_state).unlink(missing_ok=True)  # the state is used up
    return errors.EXIT_OK


def run_fetch(args: argparse.Namespace) -> int:
    from rhythmflow.assets import fetch

    def on_progress(event) -> None:
        log.debug("%s", event)

    report = fetch(args.model, with_chinese=args.with_chinese,
                   offline=True if args.offline else None, assets_dir=args.assets_dir,
                   on_progress=on_progress)
    for line in report.lines():
        print(line)
    return report.exit_code
